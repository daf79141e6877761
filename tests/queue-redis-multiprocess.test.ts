import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisJobStore } from '../packages/queue-redis/src/store.js';
import { findRedisServer, freeLoopbackPort, startRedisServer, type RedisServer } from '@avatar/queue-redis/testing';
import { ROOT, avatar } from './helpers/cli.js';
import { ensureBuilt } from './helpers/built.js';
import { exited, logLines, until } from './helpers/processes.js';

// Many worker processes on one Redis: every job runs exactly once, through a SIGKILLed worker, a
// Redis crash and restart, and a Redis that is not there yet when the workers start.

const WORKER = join(ROOT, 'tests/queue/worker.mjs');
const found = findRedisServer();
const children: ChildProcess[] = [];
const stores: RedisJobStore[] = [];
const servers: RedisServer[] = [];
const dirs: string[] = [];

interface Started {
  child: ChildProcess;
  stderr: () => string;
}

function startWorker(url: string, dir: string, options: { mode?: 'fast' | 'hang'; leaseMs?: number; once?: boolean; jobMs?: number } = {}): Started {
  const args = [dir, join(dir, 'runs.log'), options.mode ?? 'fast', String(options.leaseMs ?? 30_000), options.once === false ? '0' : '1'];
  const child = fork(WORKER, args, {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    execArgv: [],
    env: { ...process.env, NODE_OPTIONS: '', AVATAR_TEST_STORE: url, AVATAR_TEST_JOB_MS: String(options.jobMs ?? 0) },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  children.push(child);
  return { child, stderr: () => stderr };
}

/** The run log the workers in `dir` append to. */
const runLines = (dir: string): Promise<string[][]> => logLines(join(dir, 'runs.log'));

async function setup(server: RedisServer): Promise<{ url: string; dir: string; store: RedisJobStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'avatar-redis-mp-'));
  dirs.push(dir);
  const url = `${server.url}/0?prefix=mp${Math.random().toString(16).slice(2, 10)}`;
  const store = new RedisJobStore({ url: new URL(url) });
  stores.push(store);
  return { url, dir, store };
}

/** Each submitted job ran exactly once and completed with the result of the process that ran it. */
async function expectEachRanOnce(dir: string, store: RedisJobStore, submitted: ReadonlySet<string>): Promise<void> {
  const runs = (await runLines(dir)).filter(([event]) => event === 'run');
  const ids = runs.map(([, id]) => id!);
  expect(ids.length).toBe(submitted.size);
  expect(new Set(ids)).toEqual(submitted);
  const jobs = await store.list();
  expect(jobs).toHaveLength(submitted.size);
  const byId = new Map(runs.map(([, id, pid]) => [id!, Number(pid)]));
  for (const job of jobs) {
    expect(job.status, job.jobId).toBe('completed');
    expect(job.result?.pid, job.jobId).toBe(byId.get(job.jobId));
  }
}

if ('missing' in found) {
  describe('Redis queue across processes', () => {
    it.skip(`skipped: ${found.missing}`, () => undefined);
  });
} else {
  let server: RedisServer;
  beforeAll(async () => {
    ensureBuilt([
      { name: 'core', files: ['index.js', 'worker.js', 'store/open.js'] },
      { name: 'queue-redis', files: ['index.js', 'store.js'] },
    ]);
    server = await startRedisServer();
    servers.push(server);
  });
  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const store of stores.splice(0)) await store.close();
  });
  afterAll(async () => {
    for (const s of servers.splice(0)) await s.dispose();
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  describe('Redis queue across processes', () => {
    it('3 worker processes run 300 jobs, each exactly once', async () => {
      const { url, dir, store } = await setup(server);
      const submitted = new Set<string>();
      for (let i = 0; i < 300; i++) submitted.add((await store.submit('voice_synthesis', { i })).jobId);
      const workers = Array.from({ length: 3 }, () => startWorker(url, dir));
      expect(await Promise.all(workers.map((w) => exited(w.child)))).toEqual([0, 0, 0]);
      await expectEachRanOnce(dir, store, submitted);
      expect((await store.list()).every((j) => j.attempts === 1)).toBe(true);
      const pids = new Set((await runLines(dir)).map(([, , pid]) => pid));
      expect(pids.size).toBeGreaterThanOrEqual(2);
    });

    it('a worker killed with SIGKILL mid-job: its job is taken back after the lease and completed once', async () => {
      const { url, dir, store } = await setup(server);
      const job = await store.submit('voice_synthesis', { text: 'survive' });
      const doomed = startWorker(url, dir, { mode: 'hang', leaseMs: 1_000, once: false });
      await until(async () => (await runLines(dir)).some(([e, id]) => e === 'start' && id === job.jobId), 15_000, 'the job to start');
      await sleep(150);
      doomed.child.kill('SIGKILL');
      await exited(doomed.child);
      expect(await store.get(job.jobId)).toMatchObject({ status: 'running', attempts: 1 });

      const rescuer = startWorker(url, dir, { leaseMs: 1_000, once: false });
      await until(async () => (await store.get(job.jobId))?.status === 'completed', 15_000, 'the job to be recovered and completed');
      rescuer.child.kill('SIGTERM');
      expect(await exited(rescuer.child)).toBe(0);
      expect(await store.get(job.jobId)).toMatchObject({ status: 'completed', attempts: 2, result: { pid: rescuer.child.pid } });
      const lines = await runLines(dir);
      expect(lines.filter(([e]) => e === 'start').map(([, , pid]) => Number(pid))).toEqual([doomed.child.pid, rescuer.child.pid]);
      expect(lines.filter(([e]) => e === 'run')).toEqual([['run', job.jobId, String(rescuer.child.pid)]]);
    });

    it('Redis killed and restarted mid-run (append-only file): no job lost, none run twice', async () => {
      const durable = await startRedisServer({ appendOnly: true });
      servers.push(durable);
      const { url, dir, store } = await setup(durable);
      const submitted = new Set<string>();
      for (let i = 0; i < 150; i++) submitted.add((await store.submit('voice_synthesis', { i })).jobId);
      // the lease outlasts the outage: the claims held when Redis went away still hold when it is back
      const workers = Array.from({ length: 3 }, () => startWorker(url, dir, { leaseMs: 20_000, once: false, jobMs: 15 }));
      await until(async () => (await runLines(dir)).filter(([e]) => e === 'run').length >= 40, 30_000, '40 jobs to run');
      await durable.stop('SIGKILL');
      // longer than an operation waits (5 s): workers see AVATAR_ERR_STORE_UNAVAILABLE and keep trying
      await sleep(6_000);
      await durable.start();
      await until(async () => (await store.stats()).byStatus.completed === submitted.size, 60_000, 'every job to complete');
      for (const w of workers) w.child.kill('SIGTERM');
      expect(await Promise.all(workers.map((w) => exited(w.child)))).toEqual([0, 0, 0]);
      await expectEachRanOnce(dir, store, submitted);
      expect(workers.map((w) => w.stderr()).join('')).toContain('AVATAR_ERR_STORE_UNAVAILABLE');
    });

    it('Redis not there when the workers start: a clear error, then they drain the queue once it is', async () => {
      const port = await freeLoopbackPort();
      const url = `redis://127.0.0.1:${port}/0?prefix=late`;
      const dir = await mkdtemp(join(tmpdir(), 'avatar-redis-late-'));
      dirs.push(dir);
      const workers = Array.from({ length: 2 }, () => startWorker(url, dir, { once: false }));
      await until(async () => workers.every((w) => w.stderr().includes('AVATAR_ERR_STORE_UNAVAILABLE')), 20_000, 'the workers to say the store is away');
      expect(workers[0]!.stderr()).toContain(`redis://127.0.0.1:${port}/0?prefix=late`);
      // a submission meanwhile is refused with the same code, nothing queued
      const refused = await avatar(['--store', url, 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'too early'], { env: { AVATAR_STORAGE: dir } });
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('AVATAR_ERR_STORE_UNAVAILABLE');

      const late = await startRedisServer({ port });
      servers.push(late);
      const store = new RedisJobStore({ url: new URL(url) });
      stores.push(store);
      const submitted = new Set<string>();
      for (let i = 0; i < 20; i++) submitted.add((await store.submit('voice_synthesis', { i })).jobId);
      await until(async () => (await store.stats()).byStatus.completed === submitted.size, 30_000, 'every job to complete');
      for (const w of workers) w.child.kill('SIGTERM');
      expect(await Promise.all(workers.map((w) => exited(w.child)))).toEqual([0, 0]);
      await expectEachRanOnce(dir, store, submitted);
    });
  });
}
