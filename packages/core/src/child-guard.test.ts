import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
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
});
