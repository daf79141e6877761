import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { AvatarError } from './errors.js';
import type { Job } from './jobs.js';
import { MemoryLogger } from './log.js';
import { FileJobStore } from './store/file-store.js';
import { Worker, type AbortReason, type WorkerEvent, type WorkerOptions } from './worker.js';

const dirs: string[] = [];
const workers: Worker[] = [];

async function newStore(): Promise<{ store: FileJobStore; storageDir: string }> {
  const storageDir = await mkdtemp(join(tmpdir(), 'avatar-worker-'));
  dirs.push(storageDir);
  return { store: new FileJobStore({ storageDir }), storageDir };
}

function newWorker(options: WorkerOptions): { worker: Worker; events: WorkerEvent[] } {
  const worker = new Worker({ pollMs: 20, ...options });
  workers.push(worker);
  const events: WorkerEvent[] = [];
  worker.on((e) => events.push(e));
  return { worker, events };
}

afterEach(async () => {
  for (const worker of workers.splice(0)) await worker.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Resolves when `check` holds, polling; fails the test after `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

/** Resolves with the abort reason once the signal aborts. */
const aborted = (signal: AbortSignal): Promise<AbortReason> =>
  new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason as AbortReason);
    else signal.addEventListener('abort', () => resolve(signal.reason as AbortReason), { once: true });
  });

describe('Worker', () => {
  it('runs every pending job with the handler for its type, then stops when once is set', async () => {
    const { store } = await newStore();
    const a = await store.submit('voice_synthesis', { text: 'one' });
    const b = await store.submit('video_encoding', { frames: 3 });
    const c = await store.submit('voice_synthesis', { text: 'three' });
    const seen: string[] = [];
    const { worker, events } = newWorker({
      store,
      workerId: 'unit-worker',
      handlers: {
        voice_synthesis: async ({ job, workerId }) => {
          seen.push(`${job.jobId}:${workerId}`);
          return { spoken: String(job.params.text) };
        },
        video_encoding: async ({ job }) => ({ frames: Number(job.params.frames) * 2 }),
      },
    });
    expect(await worker.run({ once: true })).toEqual({ completed: 3, failed: 0, cancelled: 0, released: 0 });
    expect(seen).toEqual([`${a.jobId}:unit-worker`, `${c.jobId}:unit-worker`]);
    expect(await store.get(a.jobId)).toMatchObject({ status: 'completed', result: { spoken: 'one' }, progress: 1, workerId: 'unit-worker' });
    expect((await store.get(b.jobId))?.result).toEqual({ frames: 6 });
    expect(events.map((e) => `${e.type}:${'job' in e ? e.job.jobId : ''}`)).toEqual([
      `claimed:${a.jobId}`, `completed:${a.jobId}`,
      `claimed:${b.jobId}`, `completed:${b.jobId}`,
      `claimed:${c.jobId}`, `completed:${c.jobId}`,
    ]);
    const completed = events.find((e) => e.type === 'completed');
    expect(completed && 'job' in completed ? completed.job.status : undefined).toBe('completed');
  });

  it('records handler errors: AvatarErrors as they are, others as internal errors, a missing handler as not installed', async () => {
    const { store } = await newStore();
    const tts = await store.submit('voice_synthesis', {});
    const boom = await store.submit('video_encoding', {});
    const none = await store.submit('video_lipsync', {});
    const { worker } = newWorker({
      store,
      log: new MemoryLogger(),
      handlers: {
        voice_synthesis: async () => {
          throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'exit 3' });
        },
        video_encoding: () => {
          throw new TypeError('frames is not iterable');
        },
      },
    });
    expect(await worker.run({ once: true })).toEqual({ completed: 0, failed: 3, cancelled: 0, released: 0 });
    const ttsJob = await store.get(tts.jobId);
    expect(ttsJob?.status).toBe('failed');
    expect(ttsJob?.error).toEqual(new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'exit 3' }).toJSON());
    expect((await store.get(boom.jobId))?.error).toMatchObject({ code: 'AVATAR_ERR_INTERNAL', params: { reason: 'frames is not iterable' } });
    expect((await store.get(none.jobId))?.error).toMatchObject({ code: 'AVATAR_ERR_STAGE_NOT_INSTALLED', params: { stage: 'video_lipsync' } });
  });

  it('throttles progress writes but always writes stage changes', async () => {
    const { storageDir } = await newStore();
    const writes: { progress: number; stage: string | null }[] = [];
    // a real store that also notes each progress write the worker makes
    const store = new (class extends FileJobStore {
      override progress(jobId: string, workerId: string, progress: number, stage: string | null): Promise<boolean> {
        writes.push({ progress, stage });
        return super.progress(jobId, workerId, progress, stage);
      }
    })({ storageDir });
    const job = await store.submit('full_pipeline', {});
    const stagesSeenInStore: (string | null)[] = [];
    const { worker, events } = newWorker({
      store,
      progressIntervalMs: 10_000,
      handlers: {
        full_pipeline: async (ctx) => {
          for (const stage of ['synthesize_speech', 'lip_sync', 'encode']) {
            for (let i = 0; i < 50; i++) ctx.progress(i / 50, stage);
            // the write is asynchronous (an fsync): wait for it rather than guess how long it takes
            const until = Date.now() + 5000;
            let seen = (await store.get(ctx.job.jobId))?.stage ?? null;
            while (seen !== stage && Date.now() < until) {
              await sleep(10);
              seen = (await store.get(ctx.job.jobId))?.stage ?? null;
            }
            stagesSeenInStore.push(seen);
          }
          ctx.progress(2, 'encode'); // clamped, throttled
          return {};
        },
      },
    });
    await worker.run({ once: true });
    expect(writes).toEqual([
      { progress: 0, stage: 'synthesize_speech' },
      { progress: 0, stage: 'lip_sync' },
      { progress: 0, stage: 'encode' },
    ]);
    expect(stagesSeenInStore).toEqual(['synthesize_speech', 'lip_sync', 'encode']);
    expect(events.filter((e) => e.type === 'progress').map((e) => (e.type === 'progress' ? e.stage : ''))).toEqual(['synthesize_speech', 'lip_sync', 'encode']);
    expect((await store.get(job.jobId))?.progress).toBe(1);
  });

  it('writes progress again once the interval has passed', async () => {
    const { store } = await newStore();
    const job = await store.submit('full_pipeline', {});
    const { worker, events } = newWorker({
      store,
      progressIntervalMs: 30,
      handlers: {
        full_pipeline: async (ctx) => {
          // a burst inside one interval is one write; after the interval has passed, the next one writes
          for (let i = 0; i < 10; i++) ctx.progress(i / 20, 'render');
          await sleep(80);
          for (let i = 10; i < 20; i++) ctx.progress(i / 20, 'render');
          return {};
        },
      },
    });
    await worker.run({ once: true });
    const progress = events.filter((e): e is Extract<WorkerEvent, { type: 'progress' }> => e.type === 'progress');
    expect(progress.map((e) => e.progress)).toEqual([0, 0.5]);
    expect(progress.every((e) => e.job.jobId === job.jobId && e.stage === 'render')).toBe(true);
  });

  it('stops a running job on a cancel request seen at a heartbeat; the job ends cancelled in its last stage', async () => {
    const { store } = await newStore();
    const job = await store.submit('full_pipeline', {});
    let reason: AbortReason | undefined;
    const { worker, events } = newWorker({
      store,
      leaseMs: 5_000,
      heartbeatMs: 25,
      handlers: {
        full_pipeline: async (ctx) => {
          ctx.progress(0.4, 'lip_sync');
          reason = await aborted(ctx.signal);
          throw new Error('aborted');
        },
      },
    });
    const run = worker.run({ once: true });
    await until(async () => (await store.get(job.jobId))?.stage === 'lip_sync');
    expect((await store.cancel(job.jobId)).outcome).toBe('requested');
    expect(await run).toEqual({ completed: 0, failed: 0, cancelled: 1, released: 0 });
    expect(reason).toBe('cancelled');
    const done = await store.get(job.jobId);
    expect(done).toMatchObject({ status: 'cancelled', stage: 'lip_sync' });
    expect(done?.error?.code).toBe('AVATAR_ERR_JOB_CANCELLED');
    expect(events.map((e) => e.type)).toContain('cancelled');
  });

  it('sees a cancel request on a progress write too', async () => {
    const { store } = await newStore();
    const job = await store.submit('voice_clone', {});
    let reason: AbortReason | undefined;
    const { worker } = newWorker({
      store,
      heartbeatMs: 60_000,
      progressIntervalMs: 0,
      handlers: {
        voice_clone: async (ctx) => {
          for (let i = 0; !ctx.signal.aborted; i++) {
            ctx.progress(Math.min(1, i / 100), 'analyse');
            await sleep(10);
          }
          reason = ctx.signal.reason as AbortReason;
          return { finished: false };
        },
      },
    });
    const run = worker.run({ once: true });
    await until(async () => (await store.get(job.jobId))?.stage === 'analyse');
    await store.cancel(job.jobId);
    expect((await run).cancelled).toBe(1);
    // the worker does not wait for the handler once its signal aborted
    await until(() => reason !== undefined);
    expect(reason).toBe('cancelled');
    expect((await store.get(job.jobId))?.status).toBe('cancelled');
  });

  it('abandons a job whose claim was lost without writing anything more, and runs it again later', async () => {
    const { store } = await newStore();
    const job = await store.submit('video_lipsync', {});
    const reasons: AbortReason[] = [];
    let lateWrites = 0;
    const { worker } = newWorker({
      store,
      leaseMs: 100,
      heartbeatMs: 60_000, // never renews in time: the worker's own recovery pass takes the claim back
      progressIntervalMs: 0,
      log: new MemoryLogger(),
      handlers: {
        video_lipsync: async (ctx) => {
          if (ctx.job.attempts > 1) return { attempt: ctx.job.attempts };
          while (!ctx.signal.aborted) {
            ctx.progress(0.5, 'render');
            await sleep(15);
          }
          reasons.push(ctx.signal.reason as AbortReason);
          ctx.progress(0.9, 'after-abort');
          lateWrites += 1;
          return { attempt: 1 };
        },
      },
    });
    expect(await worker.run({ once: true })).toEqual({ completed: 1, failed: 0, cancelled: 0, released: 0 });
    await until(() => lateWrites === 1); // the first handler finishes on its own time
    expect(reasons).toEqual(['lease-lost']);
    const done = await store.get(job.jobId);
    expect(done).toMatchObject({ status: 'completed', attempts: 2, result: { attempt: 2 } });
    expect(done?.stage).not.toBe('after-abort');
  });

  it('keeps its claim alive with heartbeats while a long job runs', async () => {
    const { store, storageDir } = await newStore();
    const other = new FileJobStore({ storageDir });
    const job = await store.submit('video_encoding', {});
    const { worker } = newWorker({
      store,
      // heartbeats ten times per lease, so a busy machine delaying a few of them does not lose the claim
      leaseMs: 1000,
      heartbeatMs: 100,
      handlers: {
        video_encoding: async () => {
          for (let i = 0; i < 8; i++) {
            await sleep(200);
            expect(await other.recoverExpired()).toEqual([]);
          }
          return { ok: true };
        },
      },
    });
    expect((await worker.run({ once: true })).completed).toBe(1);
    expect(await store.get(job.jobId)).toMatchObject({ status: 'completed', attempts: 1 });
  });

  it('on stop, gives running jobs the grace period, then releases them to the queue', async () => {
    const { store } = await newStore();
    const slow = await store.submit('voice_synthesis', { ms: 10_000 });
    const quick = await store.submit('voice_synthesis', { ms: 30 });
    const reasons: AbortReason[] = [];
    const { worker, events } = newWorker({
      store,
      concurrency: 2,
      handlers: {
        voice_synthesis: async (ctx) => {
          const ms = Number(ctx.job.params.ms);
          const r = await Promise.race([sleep(ms).then(() => undefined), aborted(ctx.signal)]);
          if (r) {
            reasons.push(r);
            throw new Error('stopped');
          }
          return { slept: ms };
        },
      },
    });
    const run = worker.run();
    await until(() => events.filter((e) => e.type === 'claimed').length === 2);
    const t0 = Date.now();
    await worker.stop({ graceMs: 150 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(await run).toEqual({ completed: 1, failed: 0, cancelled: 0, released: 1 });
    expect(reasons).toEqual(['shutdown']);
    expect(await store.get(slow.jobId)).toMatchObject({ status: 'pending', attempts: 0, workerId: null });
    expect((await store.get(quick.jobId))?.status).toBe('completed');
    expect(events.some((e) => e.type === 'released' && e.job.jobId === slow.jobId && e.job.status === 'pending')).toBe(true);
  });

  it('a job asked to stop and then released on shutdown counts as cancelled', async () => {
    const { store } = await newStore();
    const job = await store.submit('voice_synthesis', {});
    const { worker, events } = newWorker({
      store,
      heartbeatMs: 60_000,
      handlers: { voice_synthesis: (ctx) => aborted(ctx.signal).then(() => ({})) },
    });
    const run = worker.run();
    await until(() => events.some((e) => e.type === 'claimed'));
    await store.cancel(job.jobId); // no heartbeat comes before the shutdown to notice it
    await worker.stop();
    expect(await run).toEqual({ completed: 0, failed: 0, cancelled: 1, released: 0 });
    expect((await store.get(job.jobId))?.status).toBe('cancelled');
    expect(events.at(-1)).toMatchObject({ type: 'cancelled' });
  });

  it('stop waits only a grace period for a handler that ignores its signal', async () => {
    const { store } = await newStore();
    const job = await store.submit('voice_synthesis', {});
    const { worker, events } = newWorker({ store, abortGraceMs: 200, handlers: { voice_synthesis: () => new Promise(() => undefined) } });
    const run = worker.run();
    await until(() => events.some((e) => e.type === 'claimed'));
    await worker.stop();
    expect((await run).released).toBe(1);
    expect((await store.get(job.jobId))?.status).toBe('pending');
  });

  it('runs up to `concurrency` jobs at once', async () => {
    const { store } = await newStore();
    for (let i = 0; i < 6; i++) await store.submit('avatar_generation', { i });
    let inFlight = 0;
    let peak = 0;
    const { worker } = newWorker({
      store,
      concurrency: 3,
      handlers: {
        avatar_generation: async () => {
          peak = Math.max(peak, ++inFlight);
          await sleep(60);
          inFlight -= 1;
          return {};
        },
      },
    });
    expect((await worker.run({ once: true })).completed).toBe(6);
    expect(peak).toBe(3);
  });

  it('polls until stopped: goes idle, picks up new jobs, recovers jobs of dead workers', async () => {
    const { store, storageDir } = await newStore();
    // another process claimed a job and died: no heartbeat ever comes (claimed before this worker
    // starts, so the worker cannot take it first)
    const other = new FileJobStore({ storageDir });
    const orphan = await other.submit('voice_clone', { n: 2 });
    expect((await other.claim('dead-worker', { leaseMs: 300 }))?.jobId).toBe(orphan.jobId);
    const { worker, events } = newWorker({
      store,
      leaseMs: 200,
      pollMs: 20,
      handlers: { voice_clone: async ({ job }) => ({ n: Number(job.params.n) }) },
    });
    const run = worker.run();
    await until(() => events.some((e) => e.type === 'idle'));
    const fresh = await store.submit('voice_clone', { n: 1 });
    await until(async () => (await store.get(fresh.jobId))?.status === 'completed');
    await until(async () => (await store.get(orphan.jobId))?.status === 'completed', 5_000);
    expect(await store.get(orphan.jobId)).toMatchObject({ attempts: 2, workerId: worker.workerId });
    await worker.stop();
    expect(await run).toEqual({ completed: 2, failed: 0, cancelled: 0, released: 0 });
    expect(events.filter((e) => e.type === 'idle').length).toBeGreaterThanOrEqual(1);
  });

  it('names itself after host and process, and lets listeners unsubscribe', async () => {
    const { store } = await newStore();
    const worker = new Worker({ store, handlers: {} });
    expect(worker.workerId).toMatch(new RegExp(`^${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-${process.pid}-[0-9a-f]{4}$`));
    const seen: WorkerEvent[] = [];
    const off = worker.on((e) => seen.push(e));
    off();
    await store.submit('voice_synthesis', {});
    await worker.run({ once: true });
    expect(seen).toEqual([]);
    const failed: Job[] = await store.list({ status: 'failed' });
    expect(failed).toHaveLength(1);
  });
  it('writes the outcome once a store that stopped answering is back, while the lease holds', async () => {
    const { store } = await newStore();
    const job = await store.submit('voice_synthesis', {});
    let refusals = 2;
    const complete = store.complete.bind(store);
    // a server store in a restart: the first two writes find nobody answering
    store.complete = async (...args) => {
      if (refusals-- > 0) throw new AvatarError('AVATAR_ERR_STORE_UNAVAILABLE', { url: 'redis://127.0.0.1:1', reason: 'connect ECONNREFUSED' });
      return complete(...args);
    };
    const log = new MemoryLogger();
    const { worker } = newWorker({ store, log, leaseMs: 30_000, handlers: { voice_synthesis: async () => ({ ok: true }) } });
    expect(await worker.run({ once: true })).toEqual({ completed: 1, failed: 0, cancelled: 0, released: 0 });
    expect(await store.get(job.jobId)).toMatchObject({ status: 'completed', result: { ok: true }, attempts: 1 });
    expect(log.entries.filter((e) => e.message.includes('AVATAR_ERR_STORE_UNAVAILABLE'))).toHaveLength(2);
  });

  it('gives up on the outcome once the lease is over, and says so', async () => {
    const { store } = await newStore();
    await store.submit('voice_synthesis', {});
    store.complete = async () => {
      throw new AvatarError('AVATAR_ERR_STORE_UNAVAILABLE', { url: 'redis://127.0.0.1:1', reason: 'connect ECONNREFUSED' });
    };
    const log = new MemoryLogger();
    const { worker } = newWorker({ store, log, leaseMs: 300, heartbeatMs: 100, handlers: { voice_synthesis: async () => ({ ok: true }) } });
    const started = Date.now();
    await worker.run({ once: true }).catch(() => undefined);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(log.entries.some((e) => e.level === 'error' && e.message.includes('failed to record its outcome'))).toBe(true);
  });
});
