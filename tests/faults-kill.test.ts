import { spawn } from 'node:child_process';
import { readFile, readdir, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { FileJobStore } from '@avatar/core';
import { CLI, PORTRAIT, avatar, ffmpeg, tempDir } from './helpers/cli.js';

// A run killed with SIGKILL in the middle of encoding: its ffmpeg dies with it (not encoding on for
// nobody), and the next run on the same storage removes the work folder it left, and the hidden partial
// beside its output once that has been quiet a while.

const LONG_TEXT = Array.from({ length: 10 }, () => 'This sentence keeps the encoder busy for a little while longer.').join(' ');

/** Child processes of `pid`, from /proc. */
async function childrenOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: the comm may hold spaces, so read after its closing parenthesis
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** True while `pid` runs (a zombie waiting to be reaped has stopped running). */
async function running(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return !['Z', 'X'].includes(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return false;
  }
}

/** Waits until `pid` has stopped running; true when it did within `ms`. */
async function stops(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (!(await running(pid))) return true;
  return !(await running(pid));
}

/** The first ffmpeg child of `pid` once `ready()` holds, within 15 s. */
async function encoderOf(pid: number, ready: () => Promise<boolean>): Promise<number | undefined> {
  for (let i = 0; i < 300; i++) {
    await sleep(50);
    if (!(await ready())) continue;
    for (const child of await childrenOf(pid)) {
      if ((await readFile(`/proc/${child}/cmdline`, 'utf8').catch(() => '')).includes('ffmpeg')) return child;
    }
  }
  return undefined;
}

describe.skipIf(process.platform !== 'linux')('a run killed with SIGKILL', () => {
  it('takes its encoder with it: a still image over two minutes of sound is not encoded on for nobody', async () => {
    const dir = await tempDir('avatar-killed-encode-');
    const audio = join(dir, 'long.wav');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=220:duration=120', audio]);
    const run = spawn(process.execPath, [CLI, '--storage', join(dir, 'storage'), 'encode', '--image', PORTRAIT, '--audio', audio, '--output', join(dir, 'still.mp4'), '--quality', 'high'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => run.on('exit', resolve));
    const encoder = await encoderOf(run.pid!, async () => (await readdir(dir)).some((f) => f.includes('.partial-')));
    expect(encoder, 'no ffmpeg found encoding').toBeDefined();
    run.kill('SIGKILL');
    await exited;
    expect(await stops(encoder!, 2000), 'the orphaned ffmpeg is still encoding').toBe(true);
  });

  it('the next run removes the work folder and, once quiet, the partial a killed run left', async () => {
    const dir = await tempDir('avatar-killed-');
    const storage = join(dir, 'storage');
    const run = spawn(process.execPath, [CLI, '--storage', storage, 'pipeline', 'run', LONG_TEXT, '--avatar', PORTRAIT, '--output', join(dir, 'video.mp4'), '--quality', 'high'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    run.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise((resolve) => run.on('exit', resolve));
    // until ffmpeg is encoding into its partial
    const encoder = await encoderOf(run.pid!, async () => stderr.includes('encode_video') && (await readdir(dir)).some((f) => f.includes('.partial-')));
    expect(encoder, `no ffmpeg found encoding; the run said: ${stderr}`).toBeDefined();
    run.kill('SIGKILL');
    await exited;
    expect(await stops(encoder!, 2000), 'the orphaned ffmpeg is still encoding').toBe(true);

    const left = await readdir(dir);
    const partial = left.find((f) => f.includes('.partial-'));
    expect(partial, `left: ${left.join(', ')}`).toBeDefined();
    expect(await readdir(join(storage, 'work'))).toHaveLength(1);

    // the partial has been quiet for three minutes: the next run removes it and the work folder
    const quiet = new Date(Date.now() - 3 * 60_000);
    await utimes(join(dir, partial!), quiet, quiet);
    const next = await avatar(['--storage', storage, 'pipeline', 'run', 'Hello.', '--avatar', PORTRAIT, '--output', join(dir, 'next.mp4'), '--quality', 'low']);
    expect(next.code, next.stderr).toBe(0);
    expect(await readdir(join(storage, 'work'))).toEqual([]);
    // (the video with its captions beside it)
    expect((await readdir(dir)).sort()).toEqual(['next.mp4', 'next.srt', 'next.vtt', 'storage']);
  });

  it('a worker --once that finds a job still held by a gone worker\'s lease says why it leaves it', async () => {
    const storage = join(await tempDir('avatar-held-'), 'storage');
    const store = new FileJobStore({ storageDir: storage });
    try {
      const job = await store.submit('voice_synthesis', { text: 'Held.' });
      // the claim of a worker that is gone, its lease not yet run out
      expect((await store.claim('w-gone', { leaseMs: 600_000 }))?.jobId).toBe(job.jobId);
      const r = await avatar(['--storage', storage, 'worker', '--once']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(`left ${job.jobId}`);
      expect(r.stderr).toContain('claimed by worker w-gone');
      expect(r.stderr).toContain('lease ends');
    } finally {
      await store.close();
    }
  });
});
