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

  it('lowers a process known to run behind at once, before any yield', () => {
    const ours = getPriority();
    const share = new CpuShare();
    const [ahead, behind] = [sleeper(), sleeper()];
    share.add(ahead);
    share.add(behind, { behind: true });
    expect([ahead, behind].map((pid) => getPriority(pid))).toEqual([ours, Math.min(19, ours + 10)]);
  });
});
