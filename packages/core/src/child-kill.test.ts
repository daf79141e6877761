import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { killChild, killOnAbort } from './child-kill.js';

/**
 * Runs `body` (an ES module's code, with the built core as `core`) in a node process of its own process
 * group, so that a kill of "the whole group" would take that process and nothing here; answers with its
 * exit and what it printed. Whether Node's kill of a child that did not start signals pid 0 depends on
 * memory it never set, so that process also stops with exit code 3 at any such kill, before it is sent.
 */
async function inOwnGroup(body: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }> {
  const core = JSON.stringify(new URL('../dist/index.js', import.meta.url).href);
  const script = `const core = await import(${core}); const { spawn, ChildProcess } = await import('node:child_process');
    const kill = ChildProcess.prototype.kill;
    ChildProcess.prototype.kill = function (...args) {
      if (this.pid === undefined && this.exitCode === null) { console.log('kill of a child that did not start'); process.exit(3); }
      return kill.apply(this, args);
    };\n${body}`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    detached: true, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, AVATAR_FFMPEG: '/nonexistent/bin/ffmpeg' },
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout: stdout.trim() })));
}

describe('killing children', () => {
  it('a child whose start failed is never signalled (Node would signal pid 0: the whole process group)', async () => {
    const ran = await inOwnGroup(`
      const child = spawn('/nonexistent/bin/tool', []);
      child.on('error', () => {});
      console.log(core.killChild(child, 'SIGKILL'));
      await new Promise((r) => setTimeout(r, 100));
      console.log('alive');`);
    expect(ran).toEqual({ code: 0, signal: null, stdout: 'false\nalive' });
  });

  it('a tool that cannot be found and is cancelled at once is missing or cancelled, and the caller lives on', async () => {
    const ran = await inOwnGroup(`
      const stop = new AbortController();
      const tool = core.runTool('/nonexistent/bin/tool', [], { tool: 'tool', install: 'apt-get install tool', signal: stop.signal, failure: (said) => new Error(said) });
      stop.abort(new Error('cancelled'));
      console.log(await tool.then(() => 'ran', (e) => e.code ?? e.message));
      const decode = core.decodeAudio('/nonexistent/a.wav', { sampleRate: 16000, signal: stop.signal });
      console.log(await decode.then(() => 'decoded', (e) => e.code ?? e.message));
      const again = new AbortController();
      const late = core.decodeAudio('/nonexistent/a.wav', { sampleRate: 16000, signal: again.signal });
      again.abort();
      console.log(await late.then(() => 'decoded', (e) => e.code ?? e.message));
      console.log('alive');`);
    expect(ran.signal).toBeNull();
    expect(ran.code).toBe(0);
    const [tool, decode, late, alive] = ran.stdout.split('\n');
    expect(tool).toMatch(/^(cancelled|AVATAR_ERR_TOOL_MISSING)$/);
    expect(decode).toBe('ABORT_ERR');
    expect(late).toMatch(/^(ABORT_ERR|AVATAR_ERR_TOOL_MISSING)$/);
    expect(alive).toBe('alive');
  });

  it('killOnAbort kills a running child when the signal fires, at once when it has fired, and not once removed', async () => {
    const sleeper = (): ReturnType<typeof spawn> => spawn('sleep', ['20'], { stdio: 'ignore' });
    const exited = (child: ReturnType<typeof spawn>): Promise<NodeJS.Signals | null> => new Promise((resolve) => child.once('exit', (_code, signal) => resolve(signal)));

    const stop = new AbortController();
    const first = sleeper();
    killOnAbort(first, stop.signal, 'SIGKILL');
    const firstGone = exited(first);
    stop.abort();
    expect(await firstGone).toBe('SIGKILL');
    expect(killChild(first)).toBe(false); // gone: nothing more to signal

    const second = sleeper();
    const secondGone = exited(second);
    killOnAbort(second, stop.signal); // (already aborted)
    expect(await secondGone).toBe('SIGTERM');

    const later = new AbortController();
    const third = sleeper();
    const remove = killOnAbort(third, later.signal);
    remove();
    later.abort();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(third.exitCode === null && third.signalCode === null).toBe(true);
    const thirdGone = exited(third);
    expect(killChild(third, 'SIGKILL')).toBe(true);
    expect(await thirdGone).toBe('SIGKILL');
  });
});

describe('every package kills children through killChild', () => {
  it('no source file calls kill() on a child, or hands spawn or execFile an abort signal, itself (the packages, the example plugin, the test plugins)', () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    const sources = [
      ...readdirSync(join(root, 'packages'), { recursive: true, encoding: 'utf8' }).filter((f) => /\/src\/.*\.ts$/.test(f) && !f.endsWith('.test.ts')).map((f) => join('packages', f)),
      ...['examples', 'tests/fixtures'].flatMap((dir) => readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' }).filter((f) => /\.(m?js|ts)$/.test(f)).map((f) => join(dir, f))),
    ];
    expect(sources.length).toBeGreaterThan(100);
    const offending: string[] = [];
    for (const file of sources) {
      if (file.includes('node_modules') || file.includes('/dist/') || file.endsWith('child-kill.ts')) continue;
      readFileSync(join(root, file), 'utf8').split('\n').forEach((line, k) => {
        const killsItself = /\.kill\(/.test(line) && !/process\.kill\(\w+, 0\)/.test(line);
        const spawnSignal = /\b(spawn|execFile)\(.*[{,]\s*(\.\.\.\(\w+ && \{ )?signal\b/.test(line);
        if (killsItself || spawnSignal) offending.push(`${file}:${k + 1}: ${line.trim()}`);
      });
    }
    expect(offending).toEqual([]);
  });
});
