import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, PORTRAIT, avatar, ffmpeg, tempDir } from './helpers/cli.js';

interface JobView { jobId: string; status: string; stage: string | null; attempts: number; error: { code: string } | null }

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// A long still-image encode keeps a worker busy long enough to interrupt it.
describe('avatar worker and running jobs', () => {
  let dir: string;
  /** each test has a queue of its own */
  let storage: string;
  let audio: string;
  const status = async (id: string): Promise<JobView> => JSON.parse((await avatar(['--storage', storage, '--json', 'jobs', 'status', id])).stdout) as JobView;
  const submitLong = async (output: string): Promise<string> => {
    const r = await avatar(['--storage', storage, '--json', 'jobs', 'submit', '--type', 'video_encoding', '--image', PORTRAIT, '--audio', audio, '--output', output, '--quality', 'high', '--preset', 'veryslow']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as JobView).jobId;
  };
  const started: ReturnType<typeof spawn>[] = [];
  // a failed assertion must not leave a worker encoding in the background
  afterEach(() => {
    for (const child of started.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });
  const startWorker = () => {
    const child = spawn(process.execPath, [CLI, '--storage', storage, 'worker'], { stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
    return { child, exited, stderr: () => stderr };
  };

  beforeAll(async () => {
    dir = await tempDir('avatar-signals-');
    audio = join(dir, 'long.wav');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=200:duration=120', audio]);
  });

  it('Ctrl-C stops the worker cleanly and gives its running job back to the queue', async () => {
    storage = join(dir, 'storage-interrupt');
    const output = join(dir, 'interrupted.mp4');
    const id = await submitLong(output);
    const worker = startWorker();
    await waitFor('the job to run', async () => ((await status(id)).status === 'running' ? true : undefined));
    worker.child.kill('SIGINT');
    expect(await worker.exited).toBe(0);
    expect(worker.stderr()).toContain('running jobs go back to the queue');
    const job = await status(id);
    expect(job.status).toBe('pending');
    expect(job.attempts).toBe(0);
    expect(existsSync(output)).toBe(false);
  });

  it('cancelling a running job stops it at the next checkpoint and writes nothing', async () => {
    const output = join(dir, 'cancelled.mp4');
    storage = join(dir, 'storage-cancel');
    const id = await submitLong(output);
    const worker = startWorker();
    await waitFor('the job to run', async () => ((await status(id)).status === 'running' ? true : undefined));
    const cancel = await avatar(['--storage', storage, 'jobs', 'cancel', id]);
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toContain('cancellation requested');
    const job = await waitFor('the job to be cancelled', async () => {
      const j = await status(id);
      return j.status === 'cancelled' ? j : undefined;
    });
    expect(job.error?.code).toBe('AVATAR_ERR_JOB_CANCELLED');
    expect(existsSync(output)).toBe(false);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });
});
