import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheDir } from '@avatar/core';
import { recallFacts, rememberFacts, toolIdentity } from './facts.js';

const run = promisify(execFile);
const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));
let dir: string;
let log: string;
let ffmpeg: string;
let ffprobe: string;

/** A wrapper that notes each time it is started, then runs the real tool. */
async function countingWrapper(name: 'ffmpeg' | 'ffprobe'): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\necho "${name} $1 $2" >> "${log}"\nexec ${name} "$@"\n`);
  await chmod(path, 0o755);
  return path;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-facts-'));
  log = join(dir, 'starts.log');
  ffmpeg = await countingWrapper('ffmpeg');
  ffprobe = await countingWrapper('ffprobe');
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=64x48', '-frames:v', '1', join(dir, 'still.png')]);
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'sine=duration=0.5', join(dir, 'tone.wav')]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * One fresh process: warms the encoder up (as a run does) and encodes a still, with the given cache
 * folder. Returns the tool starts it made, as the wrappers noted them.
 */
async function freshRun(cache: string, out: string): Promise<string[]> {
  await writeFile(log, '');
  const script = `
const { warmUp, encodeVideo } = await import(${JSON.stringify(DIST)});
const paths = { ffmpegPath: ${JSON.stringify(ffmpeg)}, ffprobePath: ${JSON.stringify(ffprobe)} };
await warmUp(paths);
await encodeVideo({ kind: 'still', imagePath: ${JSON.stringify(join(dir, 'still.png'))}, audioPath: ${JSON.stringify(join(dir, 'tone.wav'))},
  outputPath: ${JSON.stringify(out)}, settings: { fps: 25, size: 64, crf: 30, preset: 'ultrafast', format: 'mp4', audioBitrateKbps: 64 } }, paths);
`;
  await run(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, AVATAR_CACHE_DIR: cache } });
  return (await readFile(log, 'utf8')).split('\n').filter(Boolean).sort();
}

describe('what ffmpeg says about itself, kept between runs', () => {
  it('asks once, then starts only the encode itself until the binary changes', async () => {
    const cache = join(dir, 'cache');
    const first = await freshRun(cache, join(dir, 'a.mp4'));
    // the encode itself, and ffprobe's look at the still image, are the work; the rest are questions
    const work = ['ffmpeg -framerate 25', 'ffprobe -v error'];
    expect(first).toEqual([...work, 'ffmpeg -encoders ', 'ffmpeg -formats ', 'ffmpeg -hide_banner -version', 'ffprobe -hide_banner -version'].sort());
    // the second run finds every answer on disk
    expect(await freshRun(cache, join(dir, 'b.mp4'))).toEqual(work);
    // a changed binary (here: a new modification time) is asked again; ffprobe is not
    const later = new Date(Date.now() + 5000);
    await utimes(ffmpeg, later, later);
    const third = await freshRun(cache, join(dir, 'c.mp4'));
    expect(third).toContain('ffmpeg -hide_banner -version');
    expect(third).toContain('ffmpeg -formats ');
    expect(third).not.toContain('ffprobe -hide_banner -version');
  });

  it('works without a cache folder it can write, asking each time', async () => {
    const blocked = join(dir, 'not-a-folder');
    await writeFile(blocked, 'a file where the cache folder would be');
    for (const out of ['d.mp4', 'e.mp4']) {
      const starts = await freshRun(blocked, join(dir, out));
      expect(starts).toContain('ffmpeg -hide_banner -version');
    }
  });

  it('keys the facts by the binary found on PATH, and forgets nothing it was not asked to', async () => {
    const id = await toolIdentity(ffmpeg);
    expect(id).toContain(ffmpeg);
    expect(await toolIdentity(join(dir, 'missing-ffmpeg'))).toBeUndefined();
    // a bare name resolves through PATH, as a spawn would
    const onPath = await toolIdentity('ffmpeg');
    expect(onPath).toMatch(/^\/.*ffmpeg\|/);

    const previous = process.env.AVATAR_CACHE_DIR;
    process.env.AVATAR_CACHE_DIR = join(dir, 'direct');
    try {
      expect(cacheDir()).toBe(join(dir, 'direct'));
      await rememberFacts(id, { version: '9.9' });
      await rememberFacts(id, { encoders: { libx264: { type: 'video', description: 'x264', frameMT: false, sliceMT: false, experimental: false, drawHorizBand: false, directRendering: false } } });
      const kept = await recallFacts(id);
      expect(kept.version).toBe('9.9');
      expect(kept.encoders?.libx264?.type).toBe('video');
      expect(await recallFacts(undefined)).toEqual({});
      // a torn or foreign file is treated as empty, then replaced whole
      await writeFile(join(dir, 'direct', 'ffmpeg-tools.json'), '{"format":1,"tools":');
      await rememberFacts(id, { version: '1.0' });
      expect(JSON.parse(await readFile(join(dir, 'direct', 'ffmpeg-tools.json'), 'utf8')).tools[id as string].version).toBe('1.0');
    } finally {
      if (previous === undefined) delete process.env.AVATAR_CACHE_DIR;
      else process.env.AVATAR_CACHE_DIR = previous;
    }
  });
});
