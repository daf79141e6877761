import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { MemoryLogger, type Job } from '@avatar/core';
import { findRedisServer, startRedisServer, type RedisServer } from '@avatar/queue-redis/testing';
import { flitePlugin, pitchMatchPlugin } from '@avatar/tts';
import { buildServer, type ServerOptions } from './server.js';
import { makeTestContext, type TestContext } from './context.test-helpers.js';

// Two servers on one Redis store and one storage folder, as two machines behind a load balancer run
// them: a job submitted to one and run by the other's worker is seen to end by both, and still each
// webhook is delivered once, each upload removed once, and one rate limit counts for both.

const found = findRedisServer();
const SECRET = 'several-servers-secret';

/** Counts deliveries per job. */
async function receiver(): Promise<{ url: string; got: string[]; close(): Promise<void> }> {
  const got: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push((JSON.parse(body) as Job).jobId);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, close: () => new Promise((r) => server.close(() => r())) };
}

async function until(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !(await check()); await sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

if ('missing' in found) {
  describe('several servers on one Redis store', () => {
    it.skip(`skipped: ${found.missing}`, () => undefined);
  });
} else {
  describe('several servers on one Redis store', () => {
    let redis: RedisServer;
    let storageDir: string;
    const contexts: TestContext[] = [];
    const apps: FastifyInstance[] = [];
    const logs: MemoryLogger[] = [];

    async function server(options: Partial<ServerOptions>, prefix: string): Promise<FastifyInstance> {
      const ctx = await makeTestContext('unused-', {
        storageDir, keep: true, storeUrl: `${redis.url}/0?prefix=${prefix}`,
        plugins: [[flitePlugin, '@avatar/tts'], [pitchMatchPlugin, '@avatar/tts']],
      });
      contexts.push(ctx);
      const log = new MemoryLogger();
      logs.push(log);
      const app = await buildServer({
        context: { ...ctx, log }, apiKeys: [], rateLimit: false, worker: false,
        webhooks: { secret: SECRET, allowPrivate: true, pollIntervalMs: 50, scanIntervalMs: 300, backoffMs: 50 }, ...options,
      } as ServerOptions);
      await app.ready();
      apps.push(app);
      return app;
    }

    beforeAll(async () => {
      redis = await startRedisServer();
      storageDir = await mkdtemp(join(tmpdir(), 'avatar-two-servers-'));
    });
    afterAll(async () => {
      for (const app of apps.splice(0)) await app.close();
      for (const ctx of contexts.splice(0)) await ctx.cleanup();
      await redis?.dispose();
      await rm(storageDir, { recursive: true, force: true });
    });

    it('each webhook is delivered once, and each upload removed once, whichever server saw the job end', { timeout: 60_000 }, async () => {
      const hooks = await receiver();
      try {
        const front = await server({}, 'jobs1');
        const back = await server({ worker: { pollMs: 50 } }, 'jobs1');
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) {
          const res = await (i % 2 ? back : front).inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: `Number ${i}.`, webhook: { url: hooks.url } } } });
          expect(res.statusCode, res.body).toBe(202);
          ids.push(res.json<Job>().jobId);
        }
        // an upload sent to the server without a worker, run by the other
        const work = await mkdtemp(join(tmpdir(), 'avatar-two-servers-audio-'));
        execFileSync('flite', ['-t', 'Good morning. This recording measures my voice: its pitch, and how fast I speak. Thank you for listening to these few sentences.', '-o', join(work, 'me.wav')]);
        const fd = new FormData();
        fd.append('jobType', 'voice_clone');
        fd.append('audio', new Blob([await readFile(join(work, 'me.wav'))]), 'me.wav');
        const request = new Request('http://localhost/', { method: 'POST', body: fd });
        const upload = await front.inject({ method: 'POST', url: '/v1/jobs', payload: Buffer.from(await request.arrayBuffer()), headers: { 'content-type': request.headers.get('content-type')! } });
        expect(upload.statusCode, upload.body).toBe(202);
        const cloned = upload.json<Job>();
        const folder = join(storageDir, String(cloned.params.referencePath).replace(/\/[^/]*$/, ''));
        expect(existsSync(folder)).toBe(true);
        await rm(work, { recursive: true, force: true });

        const statusOf = async (id: string): Promise<string> => (await front.inject({ url: `/v1/jobs/${id}` })).json<Job>().status;
        await until(async () => (await Promise.all([...ids, cloned.jobId].map(statusOf))).every((s) => s !== 'pending' && s !== 'running'), 45_000, 'every job to end');
        for (const id of [...ids, cloned.jobId]) { const j = (await front.inject({ url: `/v1/jobs/${id}` })).json<Job>(); expect(j, JSON.stringify(j.error)).toMatchObject({ status: 'completed' }); }
        await until(() => hooks.got.length >= ids.length, 10_000, 'the deliveries');
        await until(() => !existsSync(folder), 5_000, 'the upload folder to go');
        // both servers have looked at every job by now; wait for any second delivery to show up
        await sleep(1_000);
        expect([...hooks.got].sort()).toEqual([...ids].sort());
        for (const log of logs) expect(log.entries.filter((e) => e.level === 'error' || e.level === 'warn').map((e) => e.message)).toEqual([]);
      } finally {
        await hooks.close();
      }
    });

    it('one rate limit counts the requests of both servers', async () => {
      const limit = { max: 5, windowMs: 60_000 };
      const a = await server({ rateLimit: limit }, 'jobs2');
      const b = await server({ rateLimit: limit }, 'jobs2');
      const codes: number[] = [];
      for (let i = 0; i < 8; i++) codes.push((await (i % 2 ? b : a).inject({ url: '/v1/stats' })).statusCode);
      expect(codes).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
      const refused = await b.inject({ url: '/v1/stats' });
      expect(refused.json()).toMatchObject({ error: { code: 'AVATAR_ERR_HTTP_RATE_LIMITED' } });
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    });
  });
}
