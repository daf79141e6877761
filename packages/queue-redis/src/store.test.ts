import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvatarError, FileJobStore, MemoryLogger, type Job, type JobStore } from '@avatar/core';
import { runJobStoreConformance } from '@avatar/core/testing';
import { Redis } from 'ioredis';
import { RedisJobStore } from './store.js';
import { findRedisServer, freeLoopbackPort, startRedisServer, type RedisServer } from './testing.js';

const found = findRedisServer();
let server: RedisServer | undefined;

if ('missing' in found) {
  describe('RedisJobStore', () => {
    it.skip(`skipped: ${found.missing}`, () => undefined);
  });
} else {
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.dispose();
  });

  // each store gets a prefix of its own on the one server: stores never see each other's jobs
  runJobStoreConformance('RedisJobStore', async ({ maxAttempts }) => {
    const url = new URL(`${server!.url}/0?prefix=t${randomBytes(4).toString('hex')}`);
    const store = new RedisJobStore({ url, maxAttempts });
    return {
      store,
      openAnother: async () => new RedisJobStore({ url, maxAttempts }),
      cleanup: async () => undefined,
    };
  });

  const fresh = (maxAttempts = 3): { store: RedisJobStore; url: URL } => {
    const url = new URL(`${server!.url}/0?prefix=u${randomBytes(4).toString('hex')}`);
    return { store: new RedisJobStore({ url, maxAttempts }), url };
  };

  /** The same story on any store: every way a job can end, as JSON with ids and times made comparable. */
  async function story(store: JobStore): Promise<unknown[]> {
    const error = new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'exit 1' }).toJSON();
    const done = await store.submit('full_pipeline', { text: 'one', nested: { a: [1, null] } });
    const failed = await store.submit('voice_clone', {});
    const runningCancel = await store.submit('video_lipsync', {});
    const released = await store.submit('voice_synthesis', {});
    const queuedCancel = await store.submit('voice_synthesis', {});
    const lost = await store.submit('video_encoding', {});
    await store.claim('w1', { leaseMs: 30_000 });
    await store.progress(done.jobId, 'w1', 0.5, 'encode_video');
    await store.complete(done.jobId, 'w1', { output: 'out.mp4', seconds: 1.5 });
    await store.claim('w1', { leaseMs: 30_000 });
    await store.progress(failed.jobId, 'w1', 0.2, 'synthesize_speech');
    await store.fail(failed.jobId, 'w1', error);
    await store.claim('w2', { leaseMs: 30_000 });
    await store.progress(runningCancel.jobId, 'w2', 0.7, 'lip_sync');
    await store.cancel(runningCancel.jobId);
    await store.markCancelled(runningCancel.jobId, 'w2', 'lip_sync');
    await store.claim('w3', { leaseMs: 30_000 });
    await store.progress(released.jobId, 'w3', 0.1, 'load_voice');
    await store.release(released.jobId, 'w3');
    await store.cancel(queuedCancel.jobId);
    // the released job comes back first; the lost one is claimed twice and lost twice (maxAttempts 2)
    await store.claim('w4', { leaseMs: 30_000 });
    for (const worker of ['dead-1', 'dead-2']) {
      await store.claim(worker, { leaseMs: 40 });
      await store.progress(lost.jobId, worker, 0.3, 'encode_video');
      await sleep(80);
      await store.recoverExpired();
    }
    const normal = (job: Job | undefined): unknown => JSON.parse(JSON.stringify(job, (key, value: unknown) =>
      key === 'createdAt' || key === 'startedAt' || key === 'completedAt' ? (value === null ? null : 'time')
        : typeof value === 'string' ? value.replace(/job-\d{14}-[0-9a-f]{8}/g, 'ID') : value));
    return Promise.all([done, failed, runningCancel, released, queuedCancel, lost].map(async (j) => normal(await store.get(j.jobId))));
  }

  describe('RedisJobStore', () => {
    it('keeps the same job JSON as the file store, whatever way a job ends', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'avatar-same-json-'));
      const files = new FileJobStore({ storageDir: dir, maxAttempts: 2 });
      const { store } = fresh(2);
      try {
        const [onFiles, onRedis] = [await story(files), await story(store)];
        expect(onRedis).toEqual(onFiles);
        expect(onRedis.map((j) => (j as Job).status)).toEqual(['completed', 'failed', 'cancelled', 'running', 'cancelled', 'failed']);
      } finally {
        await files.close();
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('counts in fixed windows that every store on the prefix shares (the HTTP rate limit)', async () => {
      const { store, url } = fresh();
      const other = new RedisJobStore({ url });
      try {
        expect(await store.countInWindow('rate:ip:10.0.0.9', 300)).toMatchObject({ count: 1 });
        expect(await other.countInWindow('rate:ip:10.0.0.9', 300)).toMatchObject({ count: 2 });
        const third = await store.countInWindow('rate:ip:10.0.0.9', 300);
        expect(third.count).toBe(3);
        expect(third.resetInMs).toBeGreaterThan(0);
        expect(third.resetInMs).toBeLessThanOrEqual(300);
        expect(await store.countInWindow('rate:key:0', 300)).toMatchObject({ count: 1 });
        await sleep(350);
        expect(await other.countInWindow('rate:ip:10.0.0.9', 300)).toMatchObject({ count: 1 });
      } finally {
        await store.close();
        await other.close();
      }
    });

    it('names a damaged record with AVATAR_ERR_QUEUE_CORRUPT_FILE (409); a list skips it and says so', async () => {
      const log = new MemoryLogger();
      const url = new URL(`${server!.url}/0?prefix=d${randomBytes(4).toString('hex')}`);
      const store = new RedisJobStore({ url, log });
      const bad = await store.submit('voice_synthesis', { text: 'x' });
      const good = await store.submit('voice_synthesis', { text: 'y' });
      const raw = new Redis(server!.port);
      await raw.hset(`${url.searchParams.get('prefix')}:jobs:${bad.jobId}`, 'data', '{broken');
      await raw.quit();
      let caught: unknown;
      await store.get(bad.jobId).catch((error: unknown) => (caught = error));
      expect((caught as AvatarError).code).toBe('AVATAR_ERR_QUEUE_CORRUPT_FILE');
      expect((caught as AvatarError).httpStatus).toBe(409);
      expect((await store.list()).map((j) => j.jobId)).toEqual([good.jobId]);
      expect(log.entries.some((e) => e.level === 'warn' && e.message.includes('damaged'))).toBe(true);
      await store.close();
    });

    it('a Redis that does not answer: AVATAR_ERR_STORE_UNAVAILABLE within the wait, the password never shown or logged', async () => {
      const port = await freeLoopbackPort();
      const log = new MemoryLogger();
      const store = new RedisJobStore({ url: new URL(`redis://:hunter2@127.0.0.1:${port}/0`), connectTimeoutMs: 300, log });
      const started = Date.now();
      let caught: unknown;
      await store.list().catch((error: unknown) => (caught = error));
      expect(Date.now() - started).toBeLessThan(3_000);
      const error = caught as AvatarError;
      expect(error.code).toBe('AVATAR_ERR_STORE_UNAVAILABLE');
      expect(error.httpStatus).toBe(503);
      expect(error.message).toContain(`redis://:***@127.0.0.1:${port}/0`);
      expect(error.message).toContain('ECONNREFUSED');
      expect(JSON.stringify(error.toJSON()) + JSON.stringify(log.entries)).not.toContain('hunter2');
      await expect(store.ping()).rejects.toMatchObject({ code: 'AVATAR_ERR_STORE_UNAVAILABLE' });
      await store.close();
    });

    it('refuses a wrong password with the reason Redis gives', async () => {
      const locked = await startRedisServer();
      const raw = new Redis(locked.port);
      await raw.config('SET', 'requirepass', 'right-one');
      await raw.quit();
      try {
        const wrong = new RedisJobStore({ url: new URL(`${locked.url}/0`), connectTimeoutMs: 1_000, env: { AVATAR_REDIS_PASSWORD: 'wrong-one' } });
        let caught: unknown;
        await wrong.list().catch((error: unknown) => (caught = error));
        expect((caught as AvatarError).code).toBe('AVATAR_ERR_STORE_UNAVAILABLE');
        expect((caught as AvatarError).message).toMatch(/WRONGPASS|invalid username-password/i);
        expect((caught as AvatarError).message).not.toContain('wrong-one');
        await wrong.close();
        const right = new RedisJobStore({ url: new URL(`${locked.url}/0`), env: { AVATAR_REDIS_PASSWORD: 'right-one' } });
        await right.ping();
        expect(await right.list()).toEqual([]);
        await right.close();
      } finally {
        await locked.dispose();
      }
    });
  });
}
