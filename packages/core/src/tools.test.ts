import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findExecutable } from './child-guard.js';
import { isAvatarError } from './errors.js';
import { decodeAudio, loadOnce, runTool, whichTool } from './tools.js';

const fail = (said: string, code: number | null): Error => new Error(`failed ${code}: ${said}`);

describe('tools several engines share', () => {
  it('runTool collects output, feeds stdin, maps a missing tool and a failure, and kills on abort', async () => {
    expect(await runTool('cat', [], { tool: 'cat', install: 'x', failure: fail, stdin: 'hello' })).toMatchObject({ stdout: 'hello' });
    const missing = await runTool('no-such-tool-here', [], { tool: 'thing', install: 'apt-get install thing', failure: fail }).catch((e: unknown) => e);
    expect(isAvatarError(missing, 'AVATAR_ERR_TOOL_MISSING')).toBe(true);
    expect((missing as Error).message).toContain('thing (no-such-tool-here)');
    await expect(runTool('sh', ['-c', 'echo bad >&2; exit 3'], { tool: 'sh', install: '', failure: fail })).rejects.toThrow('failed 3: bad');
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(new Error('stop')), 50);
    await expect(runTool('sleep', ['10'], { tool: 'sleep', install: '', failure: fail, signal: controller.signal })).rejects.toThrow('stop');
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('a cancelled runTool settles only once its child is gone', async () => {
    for (let round = 0; round < 20; round++) {
      const controller = new AbortController();
      let pid = 0;
      const running = runTool('sleep', ['10'], { tool: 'sleep', install: '', failure: fail, signal: controller.signal, onSpawn: (p) => { pid = p; } });
      while (pid === 0) await new Promise((r) => setTimeout(r, 1));
      controller.abort(new Error('stop'));
      await expect(running).rejects.toThrow('stop');
      // signal 0 reaches a zombie too: only a reaped child throws
      expect(() => process.kill(pid, 0), `round ${round}`).toThrow();
    }
  });

  it('decodeAudio gives mono samples at the asked rate, as integers or floats, and names what is not audio', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-tools-'));
    const wav = join(dir, 'tone.wav');
    expect(spawnSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:duration=1.5:sample_rate=44100', '-ac', '2', wav]).status).toBe(0);
    const ints = await decodeAudio(wav, { sampleRate: 16000 });
    expect(ints.samples).toBeInstanceOf(Int16Array);
    expect(ints.durationSeconds).toBeCloseTo(1.5, 2);
    const floats = await decodeAudio(wav, { sampleRate: 8000, format: 'f32', maxSeconds: 1 });
    expect(floats.samples).toBeInstanceOf(Float32Array);
    expect(floats.samples.length).toBe(8000);
    expect(Math.max(...floats.samples)).toBeLessThanOrEqual(1);
    const text = join(dir, 'notes.txt');
    await writeFile(text, 'not a sound at all\n');
    const error = await decodeAudio(text, { sampleRate: 16000, input: 'recording' }).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_NOT_AUDIO')).toBe(true);
    expect((error as Error).message).toContain('recording is not audio');
  });

  it('decodeAudio\'s time limit and a cancel hold against an ffmpeg that ignores SIGTERM (as ffmpeg does with a first one while it reads)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-tools-'));
    const stubborn = join(dir, 'ffmpeg');
    await writeFile(stubborn, "#!/bin/sh\ntrap '' TERM\nexec sleep 5\n");
    await chmod(stubborn, 0o755);
    const before = process.env.AVATAR_FFMPEG;
    process.env.AVATAR_FFMPEG = stubborn;
    try {
      let started = performance.now();
      const late = await decodeAudio(join(dir, 'any.wav'), { sampleRate: 16000, timeoutMs: 300 }).catch((e: unknown) => e);
      expect(isAvatarError(late, 'AVATAR_ERR_INPUT_NOT_AUDIO'), String(late)).toBe(true);
      expect((late as Error).message).toMatch(/longer than/);
      expect(performance.now() - started).toBeLessThan(2000);
      started = performance.now();
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('stop')), 200);
      const cancelled = await decodeAudio(join(dir, 'any.wav'), { sampleRate: 16000, signal: controller.signal }).catch((e: unknown) => e);
      expect((cancelled as Error).name).toBe('AbortError');
      expect(performance.now() - started).toBeLessThan(2000);
    } finally {
      if (before === undefined) delete process.env.AVATAR_FFMPEG;
      else process.env.AVATAR_FFMPEG = before;
    }
  });

  it('whichTool finds tools on PATH and does not remember a miss; loadOnce loads once', async () => {
    expect(await whichTool('sh')).toMatch(/\/sh$/);
    const dir = await mkdtemp(join(tmpdir(), 'avatar-which-'));
    const before = process.env.PATH;
    process.env.PATH = `${dir}:${before ?? ''}`;
    try {
      expect(findExecutable('avatar-late-tool')).toBeUndefined();
      await writeFile(join(dir, 'avatar-late-tool'), '#!/bin/sh\n', { mode: 0o755 });
      expect(findExecutable('avatar-late-tool')).toBe(join(dir, 'avatar-late-tool'));
    } finally {
      process.env.PATH = before;
    }
    let loads = 0;
    const load = loadOnce(async () => ++loads);
    expect(await Promise.all([load(), load()])).toEqual([1, 1]);
    expect(loads).toBe(1);
  });
});
