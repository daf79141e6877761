import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

// What the multi-process queue tests share: waiting for processes and for conditions, and reading the
// run log their workers append to (tests/queue/worker.mjs).

/** The child's exit code once it has exited (null when a signal ended it). */
export const exited = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((resolve) => child.once('exit', (code) => resolve(code)));

/** The run log's lines, each split into "<event> <jobId> <pid>". */
export async function logLines(logFile: string): Promise<string[][]> {
  const text = existsSync(logFile) ? await readFile(logFile, 'utf8') : '';
  return text.split('\n').filter(Boolean).map((line) => line.split(' '));
}

/** Resolves once `check` holds, polling; throws after `ms`, naming `what`. */
export async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
