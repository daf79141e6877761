import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileJobStore } from '@avatar/core';
import { ensureBuilt } from './helpers/built.js';
import { exited, logLines, until } from './helpers/processes.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORKER = join(ROOT, 'tests/queue/worker.mjs');
const children: ChildProcess[] = [];
const dirs: string[] = [];

beforeAll(() => {
  ensureBuilt([{ name: 'core', files: ['index.js', 'worker.js', 'store/open.js', 'store/file-store.js'] }]);
});

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function startWorker(storageDir: string, logFile: string, mode: 'fast' | 'hang', leaseMs: number, once: boolean): ChildProcess {
  const child = fork(WORKER, [storageDir, logFile, mode, String(leaseMs), once ? '1' : '0'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal === null) console.error(`worker ${child.pid} exited ${code}: ${stderr}`);
  });
  children.push(child);
  return child;
}

describe('file queue across processes', () => {
  it('4 worker processes run 500 jobs, each exactly once', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-mp-'));
    dirs.push(storageDir);
    const logFile = join(storageDir, 'runs.log');
    const store = new FileJobStore({ storageDir });
    const submitted = new Set<string>();
    for (let i = 0; i < 500; i++) submitted.add((await store.submit('voice_synthesis', { i })).jobId);

    const workers = Array.from({ length: 4 }, () => startWorker(storageDir, logFile, 'fast', 30_000, true));
    const codes = await Promise.all(workers.map(exited));
    expect(codes).toEqual([0, 0, 0, 0]);

    const runs = (await logLines(logFile)).filter(([event]) => event === 'run');
    const ids = runs.map(([, id]) => id!);
    expect(ids).toHaveLength(500);
    expect(new Set(ids)).toEqual(submitted);
    // the work was shared, not done by one process
    const pids = new Set(runs.map(([, , pid]) => pid));
    expect(pids.size).toBeGreaterThanOrEqual(2);

    const jobs = await store.list();
    expect(jobs).toHaveLength(500);
    expect(jobs.every((j) => j.status === 'completed' && j.attempts === 1)).toBe(true);
    // the result names the process whose log line ran it
    const byId = new Map(runs.map(([, id, pid]) => [id!, Number(pid)]));
    for (const job of jobs) expect(job.result?.pid).toBe(byId.get(job.jobId));
    expect(await readdir(join(storageDir, 'queue', 'pending'))).toEqual([]);
    expect(await readdir(join(storageDir, 'queue', 'locks'))).toEqual([]);
  });

  it('a worker killed mid-job leaves a whole job file, and another worker completes the job after the lease', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-mp-kill-'));
    dirs.push(storageDir);
    const logFile = join(storageDir, 'runs.log');
    const store = new FileJobStore({ storageDir });
    const job = await store.submit('voice_synthesis', { text: 'survive' });

    const doomed = startWorker(storageDir, logFile, 'hang', 1_000, false);
    await until(async () => (await logLines(logFile)).some(([e, id]) => e === 'start' && id === job.jobId), 15_000, 'the job to start');
    await sleep(150); // let it write progress for a while, so the kill lands mid-write now and then
    doomed.kill('SIGKILL');
    await exited(doomed);

    const text = await readFile(join(storageDir, 'jobs', `${job.jobId}.json`), 'utf8');
    const onDisk = JSON.parse(text) as { status: string; workerId: string; attempts: number };
    expect(onDisk).toMatchObject({ status: 'running', attempts: 1 });
    expect(onDisk.workerId).toContain(`-${doomed.pid}-`);

    const rescuer = startWorker(storageDir, logFile, 'fast', 1_000, false);
    await until(async () => (await store.get(job.jobId))?.status === 'completed', 15_000, 'the job to be recovered and completed');
    rescuer.kill('SIGTERM');
    expect(await exited(rescuer)).toBe(0);

    const done = await store.get(job.jobId);
    expect(done).toMatchObject({ status: 'completed', attempts: 2, result: { pid: rescuer.pid } });
    const lines = await logLines(logFile);
    expect(lines.filter(([e]) => e === 'start').map(([, , pid]) => Number(pid))).toEqual([doomed.pid, rescuer.pid]);
    expect(lines.filter(([e]) => e === 'run')).toEqual([['run', job.jobId, String(rescuer.pid)]]);
  });
});
