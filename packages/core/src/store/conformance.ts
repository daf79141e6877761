import { afterEach, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { AvatarError, type ErrorCode } from '../errors.js';
import { JOB_ID_PATTERN, JOB_STATUSES, JOB_TYPES, type Job, type JobParams } from '../jobs.js';
import type { JobStore } from './types.js';

export interface ConformanceStore {
  store: JobStore;
  cleanup(): Promise<void>;
  /** Another store over the same storage (another process would open one like this); enables the concurrency tests. */
  openAnother?(): Promise<JobStore>;
}

export interface ConformanceOptions {
  /** the store must fail a job abandoned this many times */
  maxAttempts: number;
}

/** Makes an empty store; a factory that ignores `options` must use maxAttempts 3. */
export type JobStoreFactory = (options: ConformanceOptions) => Promise<ConformanceStore>;

const LEASE = { leaseMs: 30_000 };
// long enough that a claim plus a recovery pass fit inside it on a busy machine
const SHORT_LEASE_MS = 400;

async function expectAvatarError(promise: Promise<unknown>, code: ErrorCode): Promise<AvatarError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(AvatarError);
  expect((caught as AvatarError).code).toBe(code);
  return caught as AvatarError;
}

/**
 * The behaviour every JobStore promises (see the JobStore doc comment), checked from one process.
 * Run it from a test file: `runJobStoreConformance('redis', async ({ maxAttempts }) => ({ store, cleanup }))`.
 */
export function runJobStoreConformance(name: string, makeStore: JobStoreFactory): void {
  describe(`JobStore conformance: ${name}`, () => {
    const opened: ConformanceStore[] = [];
    const extra: JobStore[] = [];

    async function open(maxAttempts = 3): Promise<JobStore> {
      const made = await makeStore({ maxAttempts });
      opened.push(made);
      return made.store;
    }

    /** `count` stores over one storage: several when the factory can open more, else the same one. */
    async function openMany(count: number): Promise<JobStore[]> {
      const made = await makeStore({ maxAttempts: 3 });
      opened.push(made);
      const stores = [made.store];
      for (let i = 1; i < count; i++) {
        if (made.openAnother) {
          const another = await made.openAnother();
          extra.push(another);
          stores.push(another);
        } else {
          stores.push(made.store);
        }
      }
      return stores;
    }

    afterEach(async () => {
      for (const store of extra.splice(0)) await store.close();
      for (const made of opened.splice(0)) {
        await made.store.close();
        await made.cleanup();
      }
    });

    /** Submits with a short gap so creation times differ even at millisecond resolution. */
    async function submitSpaced(store: JobStore, count: number, params: (i: number) => JobParams = (i) => ({ i })): Promise<Job[]> {
      const jobs: Job[] = [];
      for (let i = 0; i < count; i++) {
        jobs.push(await store.submit('voice_synthesis', params(i)));
        await sleep(3);
      }
      return jobs;
    }

    describe('submit and get', () => {
      it('stores a pending job with every field set', async () => {
        const store = await open();
        const before = Date.now();
        const job = await store.submit('full_pipeline', { text: 'Hello there', nested: { a: [1, 2, null], b: true } });
        expect(job.jobId).toMatch(JOB_ID_PATTERN);
        expect(job).toMatchObject({
          status: 'pending',
          jobType: 'full_pipeline',
          params: { text: 'Hello there', nested: { a: [1, 2, null], b: true } },
          startedAt: null,
          completedAt: null,
          result: null,
          error: null,
          progress: 0,
          stage: null,
          attempts: 0,
          workerId: null,
        });
        expect(Date.parse(job.createdAt)).toBeGreaterThanOrEqual(before - 1000);
        expect(await store.get(job.jobId)).toEqual(job);
      });

      it('gives every job its own id', async () => {
        const store = await open();
        const jobs = await Promise.all(Array.from({ length: 20 }, () => store.submit('voice_clone', {})));
        expect(new Set(jobs.map((j) => j.jobId)).size).toBe(20);
      });

      it('keeps its own copy of the params', async () => {
        const store = await open();
        const params: JobParams = { text: 'one' };
        const job = await store.submit('voice_synthesis', params);
        params.text = 'changed';
        expect((await store.get(job.jobId))?.params).toEqual({ text: 'one' });
      });

      it('rejects an unknown job type, naming the known ones', async () => {
        const store = await open();
        const err = await expectAvatarError(store.submit('make_coffee' as never, {}), 'AVATAR_ERR_JOB_TYPE_UNKNOWN');
        expect(err.params.type).toBe('make_coffee');
        for (const type of JOB_TYPES) expect(String(err.params.known)).toContain(type);
        expect(await store.list()).toEqual([]);
      });

      it('rejects params that are not a plain JSON object', async () => {
        const store = await open();
        for (const bad of [null, [1, 2], 'text', 42, new Date()]) {
          await expectAvatarError(store.submit('voice_synthesis', bad as never), 'AVATAR_ERR_JOB_PARAMS_INVALID');
        }
        await expectAvatarError(store.submit('voice_synthesis', { f: (() => 1) as never }), 'AVATAR_ERR_JOB_PARAMS_INVALID');
        await expectAvatarError(store.submit('voice_synthesis', { n: Number.NaN }), 'AVATAR_ERR_JOB_PARAMS_INVALID');
        expect(await store.list()).toEqual([]);
      });

      it('answers undefined for unknown and malformed ids', async () => {
        const store = await open();
        await store.submit('voice_synthesis', {});
        for (const id of ['job-20240101000000-00000000', '', '../jobs', '../../etc/passwd', 'job-1', 'JOB-20240101000000-abcdef12']) {
          expect(await store.get(id)).toBeUndefined();
        }
      });
    });

    describe('list and stats', () => {
      it('lists newest first, filtered by status and type, limited', async () => {
        const store = await open();
        const a = await store.submit('voice_clone', { n: 1 });
        await sleep(3);
        const b = await store.submit('video_encoding', { n: 2 });
        await sleep(3);
        const c = await store.submit('voice_clone', { n: 3 });
        await sleep(3);
        const d = await store.submit('full_pipeline', { n: 4 });
        const claimed = await store.claim('w1', LEASE);
        expect(claimed?.jobId).toBe(a.jobId);

        const ids = (jobs: Job[]): string[] => jobs.map((j) => j.jobId);
        expect(ids(await store.list())).toEqual([d.jobId, c.jobId, b.jobId, a.jobId]);
        expect(ids(await store.list({ limit: 2 }))).toEqual([d.jobId, c.jobId]);
        expect(ids(await store.list({ limit: 0 }))).toEqual([]);
        expect(ids(await store.list({ status: 'running' }))).toEqual([a.jobId]);
        expect(ids(await store.list({ status: ['pending'] }))).toEqual([d.jobId, c.jobId, b.jobId]);
        expect(ids(await store.list({ type: 'voice_clone' }))).toEqual([c.jobId, a.jobId]);
        expect(ids(await store.list({ type: ['video_encoding', 'full_pipeline'] }))).toEqual([d.jobId, b.jobId]);
        expect(ids(await store.list({ type: 'voice_clone', status: 'pending' }))).toEqual([c.jobId]);
        expect(ids(await store.list({ status: [] }))).toEqual([]);
      });

      it('pages with `after`: each job once, in list order, even within one millisecond', async () => {
        const store = await open();
        const jobs = await Promise.all(Array.from({ length: 7 }, (_, i) => store.submit(i % 2 ? 'voice_clone' : 'voice_synthesis', { i })));
        const all = await store.list();
        expect(all).toHaveLength(jobs.length);
        const seen: string[] = [];
        let after: { createdAt: string; jobId: string } | undefined;
        for (let page = 0; page < 10; page++) {
          const got = await store.list({ limit: 3, ...(after && { after }) });
          if (got.length === 0) break;
          seen.push(...got.map((j) => j.jobId));
          const last = got[got.length - 1]!;
          after = { createdAt: last.createdAt, jobId: last.jobId };
        }
        expect(seen).toEqual(all.map((j) => j.jobId));
        // combined with a filter, and past the oldest job
        const clones = all.filter((j) => j.jobType === 'voice_clone');
        const first = clones[0]!;
        expect((await store.list({ type: 'voice_clone', after: { createdAt: first.createdAt, jobId: first.jobId } })).map((j) => j.jobId))
          .toEqual(clones.slice(1).map((j) => j.jobId));
        const oldest = all[all.length - 1]!;
        expect(await store.list({ after: { createdAt: oldest.createdAt, jobId: oldest.jobId } })).toEqual([]);
      });

      it('counts jobs by status and type, with every key present', async () => {
        const store = await open();
        const empty = await store.stats();
        expect(empty.total).toBe(0);
        expect(Object.keys(empty.byStatus).sort()).toEqual([...JOB_STATUSES].sort());
        expect(Object.keys(empty.byType).sort()).toEqual([...JOB_TYPES].sort());
        expect(Object.values(empty.byStatus).every((n) => n === 0)).toBe(true);
        expect(Object.values(empty.byType).every((n) => n === 0)).toBe(true);
        expect(empty.meanRunSeconds).toEqual({});

        await submitSpaced(store, 2);
        await store.submit('voice_clone', {});
        await store.submit('video_lipsync', {});
        const first = await store.claim('w1', LEASE);
        await sleep(30);
        expect(await store.complete(first!.jobId, 'w1', { ok: true })).toBe(true);
        const second = await store.claim('w1', LEASE);
        expect(await store.fail(second!.jobId, 'w1', new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'x' }).toJSON())).toBe(true);
        await store.claim('w1', LEASE);

        const stats = await store.stats();
        expect(stats.total).toBe(4);
        expect(stats.byStatus).toEqual({ pending: 1, running: 1, completed: 1, failed: 1, cancelled: 0 });
        expect(stats.byType.voice_synthesis).toBe(2);
        expect(stats.byType.voice_clone).toBe(1);
        expect(stats.byType.video_lipsync).toBe(1);
        expect(stats.byType.full_pipeline).toBe(0);
        expect(Object.keys(stats.meanRunSeconds)).toEqual(['voice_synthesis']);
        expect(stats.meanRunSeconds.voice_synthesis).toBeGreaterThanOrEqual(0.02);
        expect(stats.meanRunSeconds.voice_synthesis).toBeLessThan(5);
      });
    });

    describe('claim', () => {
      it('answers undefined when nothing is pending', async () => {
        const store = await open();
        expect(await store.claim('w1', LEASE)).toBeUndefined();
      });

      it('hands out the oldest pending job first, even within one millisecond', async () => {
        const store = await open();
        const jobs: Job[] = [];
        for (let i = 0; i < 8; i++) jobs.push(await store.submit('voice_synthesis', { i }));
        const order: string[] = [];
        for (let i = 0; i < 8; i++) order.push((await store.claim('w1', LEASE))!.jobId);
        expect(order).toEqual(jobs.map((j) => j.jobId));
        expect(await store.claim('w1', LEASE)).toBeUndefined();
      });

      it('marks the job running, owned by the worker, one more attempt', async () => {
        const store = await open();
        const job = await store.submit('avatar_generation', { image: 'a.png' });
        const before = Date.now();
        const claimed = await store.claim('worker-a', LEASE);
        expect(claimed).toMatchObject({ jobId: job.jobId, status: 'running', workerId: 'worker-a', attempts: 1, stage: null, progress: 0 });
        expect(Date.parse(claimed!.startedAt!)).toBeGreaterThanOrEqual(before - 1000);
        expect(await store.get(job.jobId)).toEqual(claimed);
        expect(await store.claim('worker-b', LEASE)).toBeUndefined();
      });

      it('gives each job to exactly one of many concurrent claimers', async () => {
        const stores = await openMany(4);
        const submitted = await Promise.all(Array.from({ length: 30 }, (_, i) => stores[0]!.submit('voice_synthesis', { i })));
        const claims = new Map<string, string[]>();
        await Promise.all(
          Array.from({ length: 8 }, async (_, w) => {
            const store = stores[w % stores.length]!;
            for (;;) {
              const job = await store.claim(`w${w}`, LEASE);
              if (!job) return;
              claims.set(job.jobId, [...(claims.get(job.jobId) ?? []), `w${w}`]);
            }
          }),
        );
        expect([...claims.keys()].sort()).toEqual(submitted.map((j) => j.jobId).sort());
        for (const [jobId, owners] of claims) {
          expect(owners, jobId).toHaveLength(1);
          expect((await stores[0]!.get(jobId))?.workerId).toBe(owners[0]);
        }
      });
    });

    describe('the worker that holds a claim', () => {
      it('renews its lease and writes progress; other workers get false and change nothing', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('owner', LEASE);
        expect(await store.heartbeat(job.jobId, 'owner', LEASE)).toBe(true);
        expect(await store.progress(job.jobId, 'owner', 0.25, 'synthesize_speech')).toBe(true);
        expect(await store.get(job.jobId)).toMatchObject({ progress: 0.25, stage: 'synthesize_speech', status: 'running' });

        const error = new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'x' }).toJSON();
        expect(await store.heartbeat(job.jobId, 'intruder', LEASE)).toBe(false);
        expect(await store.progress(job.jobId, 'intruder', 0.9, 'encode')).toBe(false);
        expect(await store.complete(job.jobId, 'intruder', { done: true })).toBe(false);
        expect(await store.fail(job.jobId, 'intruder', error)).toBe(false);
        expect(await store.markCancelled(job.jobId, 'intruder', 'encode')).toBe(false);
        expect(await store.release(job.jobId, 'intruder')).toBe(false);
        expect(await store.get(job.jobId)).toMatchObject({ progress: 0.25, stage: 'synthesize_speech', status: 'running', workerId: 'owner' });
      });

      it('answers false for jobs that are unknown, pending or malformed', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        for (const id of [job.jobId, 'job-20240101000000-00000000', '../x']) {
          expect(await store.heartbeat(id, 'w', LEASE)).toBe(false);
          expect(await store.progress(id, 'w', 0.5, 's')).toBe(false);
          expect(await store.complete(id, 'w', {})).toBe(false);
          expect(await store.release(id, 'w')).toBe(false);
          expect(await store.isCancelRequested(id)).toBe(false);
        }
        expect(await store.get(job.jobId)).toEqual(job);
      });

      it('completes: result, progress 1, completedAt; the claim is gone', async () => {
        const store = await open();
        const job = await store.submit('video_encoding', {});
        await store.claim('w1', LEASE);
        await store.progress(job.jobId, 'w1', 0.5, 'encode');
        expect(await store.complete(job.jobId, 'w1', { output: '/tmp/out.mp4', seconds: 2.5 })).toBe(true);
        const done = await store.get(job.jobId);
        expect(done).toMatchObject({ status: 'completed', progress: 1, result: { output: '/tmp/out.mp4', seconds: 2.5 }, error: null, attempts: 1 });
        expect(Date.parse(done!.completedAt!)).toBeGreaterThanOrEqual(Date.parse(done!.startedAt!));
        // finished: nothing more may be written, and nothing claims it again
        expect(await store.heartbeat(job.jobId, 'w1', LEASE)).toBe(false);
        expect(await store.progress(job.jobId, 'w1', 0.1, 'x')).toBe(false);
        expect(await store.complete(job.jobId, 'w1', { again: true })).toBe(false);
        expect(await store.fail(job.jobId, 'w1', new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'x' }).toJSON())).toBe(false);
        expect(await store.claim('w2', LEASE)).toBeUndefined();
        expect(await store.get(job.jobId)).toEqual(done);
      });

      it('fails: the error is stored as given', async () => {
        const store = await open();
        const job = await store.submit('voice_clone', {});
        await store.claim('w1', LEASE);
        const error = new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'exit 1' }).toJSON();
        expect(await store.fail(job.jobId, 'w1', error)).toBe(true);
        const failed = await store.get(job.jobId);
        expect(failed).toMatchObject({ status: 'failed', error, result: null });
        expect(failed!.completedAt).not.toBeNull();
        expect(await store.claim('w2', LEASE)).toBeUndefined();
      });

      it('releases: pending again, the attempt not counted, claimable again', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('w1', LEASE);
        await store.progress(job.jobId, 'w1', 0.4, 'synthesize_speech');
        expect(await store.release(job.jobId, 'w1')).toBe(true);
        expect(await store.get(job.jobId)).toMatchObject({ status: 'pending', attempts: 0, workerId: null });
        expect(await store.complete(job.jobId, 'w1', {})).toBe(false);
        const again = await store.claim('w2', LEASE);
        expect(again).toMatchObject({ jobId: job.jobId, attempts: 1, workerId: 'w2', progress: 0, stage: null });
      });

      it('a released job keeps its place at the head of the queue', async () => {
        const store = await open();
        const [first, second] = await submitSpaced(store, 2);
        await store.claim('w1', LEASE);
        expect(await store.release(first!.jobId, 'w1')).toBe(true);
        expect((await store.claim('w2', LEASE))?.jobId).toBe(first!.jobId);
        expect((await store.claim('w2', LEASE))?.jobId).toBe(second!.jobId);
      });
    });

    describe('cancel', () => {
      it('cancels a pending job at once; nobody claims it', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        const { job: cancelled, outcome } = await store.cancel(job.jobId);
        expect(outcome).toBe('cancelled');
        expect(cancelled).toMatchObject({ jobId: job.jobId, status: 'cancelled' });
        expect(cancelled.completedAt).not.toBeNull();
        expect(await store.get(job.jobId)).toEqual(cancelled);
        expect(await store.claim('w1', LEASE)).toBeUndefined();
      });

      it('asks the worker of a running job to stop; the worker marks it cancelled', async () => {
        const store = await open();
        const job = await store.submit('full_pipeline', {});
        await store.claim('w1', LEASE);
        await store.progress(job.jobId, 'w1', 0.3, 'lip_sync');
        expect(await store.isCancelRequested(job.jobId)).toBe(false);
        const { job: seen, outcome } = await store.cancel(job.jobId);
        expect(outcome).toBe('requested');
        expect(seen.status).toBe('running');
        expect(await store.isCancelRequested(job.jobId)).toBe(true);
        expect((await store.get(job.jobId))?.status).toBe('running');

        expect(await store.markCancelled(job.jobId, 'w1', 'lip_sync')).toBe(true);
        const cancelled = await store.get(job.jobId);
        expect(cancelled).toMatchObject({ status: 'cancelled', stage: 'lip_sync' });
        expect(cancelled!.error?.code).toBe('AVATAR_ERR_JOB_CANCELLED');
        expect(cancelled!.completedAt).not.toBeNull();
        expect(await store.isCancelRequested(job.jobId)).toBe(false);
      });

      it('a released job with a cancel request ends cancelled, not pending', async () => {
        const store = await open();
        const job = await store.submit('full_pipeline', {});
        await store.claim('w1', LEASE);
        await store.cancel(job.jobId);
        expect(await store.release(job.jobId, 'w1')).toBe(true);
        expect((await store.get(job.jobId))?.status).toBe('cancelled');
        expect(await store.claim('w2', LEASE)).toBeUndefined();
      });

      it('refuses finished and unknown jobs', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('w1', LEASE);
        await store.complete(job.jobId, 'w1', {});
        const err = await expectAvatarError(store.cancel(job.jobId), 'AVATAR_ERR_JOB_FINISHED');
        expect(err.params).toMatchObject({ id: job.jobId, status: 'completed', action: 'cancelled' });
        const pending = await store.submit('voice_synthesis', {});
        await store.cancel(pending.jobId);
        await expectAvatarError(store.cancel(pending.jobId), 'AVATAR_ERR_JOB_FINISHED');
        await expectAvatarError(store.cancel('job-20240101000000-00000000'), 'AVATAR_ERR_JOB_NOT_FOUND');
        await expectAvatarError(store.cancel('../../x'), 'AVATAR_ERR_JOB_NOT_FOUND');
      });
    });

    describe('delete', () => {
      it('removes pending and finished jobs', async () => {
        const store = await open();
        const pending = await store.submit('voice_synthesis', {});
        await store.delete(pending.jobId);
        expect(await store.get(pending.jobId)).toBeUndefined();
        expect(await store.claim('w1', LEASE)).toBeUndefined();

        const done = await store.submit('voice_synthesis', {});
        await store.claim('w1', LEASE);
        await store.fail(done.jobId, 'w1', new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'x' }).toJSON());
        await store.delete(done.jobId);
        expect(await store.get(done.jobId)).toBeUndefined();
        expect(await store.list()).toEqual([]);
      });

      it('refuses running and unknown jobs', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('w1', LEASE);
        const err = await expectAvatarError(store.delete(job.jobId), 'AVATAR_ERR_JOB_RUNNING');
        expect(err.params).toMatchObject({ id: job.jobId });
        expect((await store.get(job.jobId))?.status).toBe('running');
        await expectAvatarError(store.delete('job-20240101000000-00000000'), 'AVATAR_ERR_JOB_NOT_FOUND');
        await expectAvatarError(store.delete('../escape'), 'AVATAR_ERR_JOB_NOT_FOUND');
      });
    });

    describe('leases', () => {
      it('takes back a claim whose lease expired; the old owner can no longer write', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('dead', { leaseMs: SHORT_LEASE_MS });
        expect(await store.recoverExpired()).toEqual([]);
        await sleep(SHORT_LEASE_MS + 100);
        expect(await store.recoverExpired()).toEqual([job.jobId]);
        expect(await store.get(job.jobId)).toMatchObject({ status: 'pending', attempts: 1, workerId: null });
        expect(await store.recoverExpired()).toEqual([]);

        const again = await store.claim('alive', LEASE);
        expect(again).toMatchObject({ jobId: job.jobId, attempts: 2, workerId: 'alive' });
        expect(await store.heartbeat(job.jobId, 'dead', LEASE)).toBe(false);
        expect(await store.complete(job.jobId, 'dead', { stale: true })).toBe(false);
        expect(await store.complete(job.jobId, 'alive', { fresh: true })).toBe(true);
        expect((await store.get(job.jobId))?.result).toEqual({ fresh: true });
      });

      it('heartbeats keep a claim alive past its first lease', async () => {
        const store = await open();
        const job = await store.submit('voice_synthesis', {});
        await store.claim('w1', { leaseMs: SHORT_LEASE_MS });
        for (let i = 0; i < 6; i++) {
          await sleep(SHORT_LEASE_MS / 3);
          expect(await store.heartbeat(job.jobId, 'w1', { leaseMs: SHORT_LEASE_MS })).toBe(true);
          expect(await store.recoverExpired()).toEqual([]);
        }
        expect(await store.get(job.jobId)).toMatchObject({ status: 'running', workerId: 'w1' });
      });

      it('fails a job abandoned maxAttempts times with AVATAR_ERR_QUEUE_WORKER_LOST', async () => {
        const store = await open(2);
        const job = await store.submit('video_lipsync', {});
        for (let attempt = 1; attempt <= 2; attempt++) {
          expect((await store.claim(`dead-${attempt}`, { leaseMs: 40 }))?.attempts).toBe(attempt);
          await sleep(80);
          expect(await store.recoverExpired()).toEqual([job.jobId]);
        }
        const failed = await store.get(job.jobId);
        expect(failed).toMatchObject({ status: 'failed', attempts: 2 });
        expect(failed!.error?.code).toBe('AVATAR_ERR_QUEUE_WORKER_LOST');
        expect(failed!.completedAt).not.toBeNull();
        expect(await store.claim('w', LEASE)).toBeUndefined();
      });

      it('a lost job that was asked to stop ends cancelled', async () => {
        const store = await open();
        const job = await store.submit('video_lipsync', {});
        await store.claim('dead', { leaseMs: 40 });
        await store.cancel(job.jobId);
        await sleep(80);
        expect(await store.recoverExpired()).toEqual([job.jobId]);
        expect((await store.get(job.jobId))?.status).toBe('cancelled');
        expect(await store.claim('w', LEASE)).toBeUndefined();
      });

      it('concurrent recoveries take a job back once', async () => {
        const stores = await openMany(3);
        const job = await stores[0]!.submit('voice_synthesis', {});
        await stores[0]!.claim('dead', { leaseMs: 40 });
        await sleep(80);
        const results = await Promise.all([...stores, ...stores].map((s) => s.recoverExpired()));
        expect(results.flat()).toEqual([job.jobId]);
        expect(await stores[1]!.get(job.jobId)).toMatchObject({ status: 'pending', attempts: 1 });
        const claims = await Promise.all(stores.map((s, i) => s.claim(`w${i}`, LEASE)));
        expect(claims.filter(Boolean)).toHaveLength(1);
        expect(await stores[2]!.claim('late', LEASE)).toBeUndefined();
      });
    });
  });
}
