import { spawn, type ChildProcess } from 'node:child_process';
import { getPriority } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { CpuShare } from './cpu-share.js';

const children: ChildProcess[] = [];
const sleeper = (): number => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(child);
  return child.pid as number;
};
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

describe('CpuShare', () => {
  it('lowers the processes it holds when told to yield, and each one added after; never one it has forgotten', () => {
    const ours = getPriority();
    const lowered = Math.min(19, ours + 10);
    const share = new CpuShare();
    const [a, b, gone] = [sleeper(), sleeper(), sleeper()];
    share.add(a);
    share.add(b);
    share.add(gone);
    share.forget([gone]);
    expect([a, b].map((pid) => getPriority(pid))).toEqual([ours, ours]);
    share.yieldCpu();
    expect([a, b, gone].map((pid) => getPriority(pid))).toEqual([lowered, lowered, ours]);
    const later = sleeper();
    share.add(later);
    expect(getPriority(later)).toBe(lowered);
    // a process that is gone is passed over quietly
    share.add(999_999_999);
  });

  it('lowers only its own children: a pid that has passed to another process is left alone', () => {
    const ours = getPriority();
    // a process that is not a child of this one (a child of a shell), as a pid taken again would be
    const shell = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(shell);
    const share = new CpuShare();
    share.yieldCpu();
    return new Promise<void>((resolve, reject) => {
      shell.stdout?.once('data', (line: Buffer) => {
        const grandchild = Number(String(line).trim());
        try {
          share.add(grandchild, { behind: true });
          expect(getPriority(grandchild)).toBe(ours);
          resolve();
        } catch (error) {
          reject(error);
        } finally {
          process.kill(grandchild, 'SIGKILL');
        }
      });
    });
  });

  it('lowers a process known to run behind at once, before any yield', () => {
    const ours = getPriority();
    const share = new CpuShare();
    const [ahead, behind] = [sleeper(), sleeper()];
    share.add(ahead);
    share.add(behind, { behind: true });
    expect([ahead, behind].map((pid) => getPriority(pid))).toEqual([ours, Math.min(19, ours + 10)]);
  });
});
