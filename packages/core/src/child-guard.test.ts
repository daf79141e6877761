import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { guardedCommand } from './child-guard.js';

/** True while `pid` runs (a zombie waiting to be reaped has stopped). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.charAt(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

/**
 * Starts a parent process that starts `sleep 30` (through guardedCommand or not) and prints its pid,
 * then kills the parent with SIGKILL: the quiet child is what is left to look at.
 */
async function orphan(guarded: boolean): Promise<number> {
  const guard = JSON.stringify(new URL('../dist/child-guard.js', import.meta.url).href);
  const script = `
    const { spawn } = require('node:child_process');
    import(${guard}).then(({ guardedCommand }) => {
      const { command, args } = ${guarded ? "guardedCommand('sleep', ['30'])" : "{ command: 'sleep', args: ['30'] }"};
      const child = spawn(command, args, { stdio: 'ignore' });
      child.on('spawn', () => console.log(child.pid));
      setInterval(() => {}, 1000);
    });`;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => parent.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
  parent.kill('SIGKILL');
  await new Promise((resolve) => parent.on('exit', resolve));
  return pid;
}

describe.skipIf(process.platform !== 'linux' || guardedCommand('sleep', []).command === 'sleep')('children that die with their parent', () => {
  it('a quiet child started through guardedCommand dies when its parent is killed; one started plainly lives on', async () => {
    const plain = await orphan(false);
    const guarded = await orphan(true);
    let gone = false;
    for (let i = 0; i < 40 && !gone; i++) {
      gone = !(await running(guarded));
      if (!gone) await sleep(50);
    }
    expect(gone).toBe(true);
    expect(await running(plain)).toBe(true);
    process.kill(plain, 'SIGKILL');
  });

  it('runs the tool itself in its place, and leaves a tool that cannot be found to fail as before', () => {
    const { command, args } = guardedCommand('sleep', ['1']);
    expect(command).toMatch(/setpriv$/);
    expect(args).toEqual(['--pdeathsig', 'KILL', '--', expect.stringMatching(/\/sleep$/), '1']);
    expect(guardedCommand('no-such-tool-here', ['x'])).toEqual({ command: 'no-such-tool-here', args: ['x'] });
  });

  it('asks setpriv once per binary: the answer is kept in the cache folder, and one kept for another binary is not taken', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-guard-'));
    const guard = JSON.stringify(new URL('../dist/child-guard.js', import.meta.url).href);
    // a fresh process each time: the answer is also kept in memory
    const commandInChild = (): string => execFileSync(process.execPath, ['-e', `import(${guard}).then(({ guardedCommand }) => console.log(guardedCommand('sleep', ['1']).command))`], { env: { ...process.env, AVATAR_CACHE_DIR: dir }, encoding: 'utf8' }).trim();
    try {
      expect(commandInChild()).toMatch(/setpriv$/);
      const kept = JSON.parse(await readFile(join(dir, 'setpriv.json'), 'utf8')) as { identity: string; pdeathsig: boolean };
      expect(kept).toEqual({ identity: expect.stringMatching(/setpriv\|/), pdeathsig: true });
      // the kept answer is what counts (set to no here, so the tools run unguarded)...
      await writeFile(join(dir, 'setpriv.json'), JSON.stringify({ ...kept, pdeathsig: false }));
      expect(commandInChild()).toBe('sleep');
      // ...for the same binary only: another's is asked again, and the new answer kept
      await writeFile(join(dir, 'setpriv.json'), JSON.stringify({ identity: `${kept.identity}0`, pdeathsig: false }));
      expect(commandInChild()).toMatch(/setpriv$/);
      await sleep(100);
      expect(JSON.parse(await readFile(join(dir, 'setpriv.json'), 'utf8'))).toEqual(kept);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
