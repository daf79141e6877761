import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AvatarError, FileJobStore, JOB_TYPES, MemoryLogger, Worker, checkJobParams, createJobHandlers } from '@avatar/core';
import type { Job, JobParams } from '@avatar/core';
import { buildServer, startServer } from './server.js';
import { MAX_ANSWER_BYTES, checkWebhookUrl, isPrivateAddress, resolveWebhookOptions, signWebhook, verifyWebhookSignature } from './webhooks.js';
import type { DeliveryState } from './webhooks.js';
import { makeTestContext } from './context.test-helpers.js';

const SECRET = 'test-secret-3f9a';

const makeContext = (storageDir?: string) => makeTestContext('avatar-webhooks-', { ...(storageDir && { storageDir, keep: true }) });

interface Received { at: number; headers: IncomingHttpHeaders; body: string; answered: number }

/** A real HTTP receiver that answers `failStatus` to the first `failFirst` deliveries. */
class Receiver {
  readonly got: Received[] = [];
  failFirst = 0;
  failStatus = 500;
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const answered = this.got.length < this.failFirst ? this.failStatus : 204;
        this.got.push({ at: Date.now(), headers: req.headers, body, answered });
        res.writeHead(answered).end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/avatar?src=test`;
  }

  async until(count: number, ms = 10_000): Promise<void> {
    const end = Date.now() + ms;
    while (this.got.length < count) {
      if (Date.now() > end) throw new Error(`the receiver got ${this.got.length} of ${count} deliveries`);
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

async function deliveryState(storageDir: string, jobId: string): Promise<DeliveryState | undefined> {
  try {
    return JSON.parse(await readFile(join(storageDir, 'webhooks', `${jobId}.json`), 'utf8')) as DeliveryState;
  } catch {
    return undefined;
  }
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('webhook signing and addresses', () => {
  it('signs t.body with HMAC-SHA256 and verifies; a changed body, secret or an old timestamp fails', () => {
    const body = '{"jobId":"job-20260101000000-00000000","status":"completed"}';
    const now = Date.now();
    const header = signWebhook(SECRET, body, Math.floor(now / 1000));
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhookSignature(SECRET, header, body, 300, now)).toBe(true);
    expect(verifyWebhookSignature(SECRET, header, body.replace('completed', 'failed'), 300, now)).toBe(false);
    expect(verifyWebhookSignature('other-secret', header, body, 300, now)).toBe(false);
    expect(verifyWebhookSignature(SECRET, header, body, 300, now + 301_000)).toBe(false);
    expect(verifyWebhookSignature(SECRET, undefined, body)).toBe(false);
    expect(verifyWebhookSignature(SECRET, 't=1,v1=zz', body)).toBe(false);
  });

  it('refuses private addresses unless asked to allow them', () => {
    expect(resolveWebhookOptions({}, {}).allowPrivate).toBe(false);
    expect(resolveWebhookOptions({}, { AVATAR_WEBHOOK_ALLOW_PRIVATE: '0' }).allowPrivate).toBe(false);
    expect(resolveWebhookOptions({}, { AVATAR_WEBHOOK_ALLOW_PRIVATE: 'yes please' }).allowPrivate).toBe(false);
    expect(resolveWebhookOptions({}, { AVATAR_WEBHOOK_ALLOW_PRIVATE: '1' }).allowPrivate).toBe(true);
    expect(resolveWebhookOptions({ allowPrivate: false }, { AVATAR_WEBHOOK_ALLOW_PRIVATE: 'true' }).allowPrivate).toBe(false);
  });

  it('knows private addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.20.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:10.0.0.1', '::ffff:7f00:1', '[::1]']) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '::ffff:808:808', '1.1.1.1', '172.32.0.1', '2606:4700::1111', 'example.com']) expect(isPrivateAddress(a), a).toBe(false);
    expect(checkWebhookUrl('http://127.0.0.1:9/x', true).port).toBe('9');
    for (const url of ['http://127.0.0.1/x', 'http://[::1]/', 'http://[::ffff:127.0.0.1]/', 'http://0x7f.1/', 'http://2130706433/', 'https://localhost/', 'http://printer.local/', 'http://169.254.169.254/latest']) {
      expect(() => checkWebhookUrl(url, false), url).toThrow(AvatarError);
    }
    expect(checkWebhookUrl('https://hooks.example.com/a', false).hostname).toBe('hooks.example.com');
    expect(() => checkWebhookUrl('ftp://example.com/', true)).toThrow(/only http and https/);
  });

  it("core's checkJobParams takes a webhook for every job type and refuses a malformed one", () => {
    const base: Record<string, JobParams> = {
      full_pipeline: { text: 'hi', avatarImagePath: 'a.png' }, voice_synthesis: { text: 'hi' }, video_encoding: { imagePath: 'a.png', audioPath: 'a.wav' },
      voice_clone: { referencePath: 'a.wav' }, avatar_generation: { imagePath: 'a.png' }, video_lipsync: { avatarImagePath: 'a.png', audioPath: 'a.wav' },
    };
    for (const type of JOB_TYPES) expect(() => checkJobParams(type, { ...base[type]!, webhook: { url: 'https://example.com/h' } })).not.toThrow();
    const malformed: JobParams['webhook'][] = ['https://example.com', { url: 'ftp://x/' }, { url: 'not a url' }, { url: 'https://u:p@example.com/' }, { url: 'https://e.com/', extra: 1 }, {}];
    for (const webhook of malformed) {
      expect(() => checkJobParams('voice_synthesis', { text: 'hi', webhook }), JSON.stringify(webhook)).toThrow(/webhook/);
    }
  });
});

describe('webhooks over HTTP', () => {
  const receiver = new Receiver();
  const opened: { close(): Promise<unknown> }[] = [];
  const contexts: { cleanup(): Promise<void> }[] = [];

  beforeAll(async () => {
    await receiver.start();
  });
  afterEach(async () => {
    for (const s of opened.splice(0).reverse()) await s.close();
    for (const c of contexts.splice(0)) await c.cleanup();
    receiver.got.splice(0);
    receiver.failFirst = 0;
  });
  afterAll(async () => {
    await receiver.stop();
  });

  async function context(dir?: string): Promise<Awaited<ReturnType<typeof makeContext>>> {
    const ctx = await makeContext(dir);
    contexts.push(ctx);
    return ctx;
  }

  it('without a secret, a job asking for a webhook is refused; other jobs go through', async () => {
    const ctx = await context();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false, webhooks: { secret: '' } });
    opened.push(app);
    const refused = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'hi', webhook: { url: receiver.url } } } });
    expect(refused.statusCode).toBe(400);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('AVATAR_ERR_HTTP_WEBHOOK_UNAVAILABLE');
    expect((await ctx.store.list()).length).toBe(0);
    const plain = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'hi' } } });
    expect(plain.statusCode).toBe(202);
  });

  it('refuses non-http urls by schema, and private addresses by default', async () => {
    const ctx = await context();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false, webhooks: { secret: SECRET } });
    opened.push(app);
    const post = (webhook: unknown) => app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'hi', webhook } } });
    const ftp = await post({ url: 'ftp://example.com/x' });
    expect(ftp.statusCode).toBe(400);
    expect(ftp.json<{ error: { code: string } }>().error.code).toBe('AVATAR_ERR_HTTP_VALIDATION');
    expect((await post({ url: 'https://example.com/x', secret: 'x' })).statusCode).toBe(400);
    const local = await post({ url: receiver.url });
    expect(local.statusCode).toBe(400);
    expect(local.json<{ error: { code: string; message: string } }>().error.code).toBe('AVATAR_ERR_HTTP_WEBHOOK_REFUSED');
    expect((await post({ url: 'https://hooks.example.com/avatar' })).statusCode).toBe(202);
  });

  it('a real job: the receiver fails twice, the third try lands; same signed body each time, backoff between tries', async () => {
    const ctx = await context();
    receiver.failFirst = 2;
    const server = await startServer({
      context: ctx, port: 0, apiKeys: [], rateLimit: false, worker: { pollMs: 50 },
      webhooks: { secret: SECRET, allowPrivate: true, backoffMs: 150, backoffFactor: 2, pollIntervalMs: 50 },
    });
    opened.push(server);
    const submit = await server.app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Webhook test.', webhook: { url: receiver.url } } } });
    expect(submit.statusCode, submit.body).toBe(202);
    const id = submit.json<Job>().jobId;

    await receiver.until(3, 20_000);
    const [a, b, c] = receiver.got as [Received, Received, Received];
    expect([a.answered, b.answered, c.answered]).toEqual([500, 500, 204]);
    expect(b.at - a.at).toBeGreaterThanOrEqual(140);
    expect(c.at - b.at).toBeGreaterThanOrEqual(290);
    for (const [i, r] of receiver.got.entries()) {
      expect(r.body).toBe(a.body);
      expect(r.headers['content-type']).toMatch(/^application\/json/);
      expect(r.headers['x-avatar-job-id']).toBe(id);
      expect(r.headers['x-avatar-attempt']).toBe(String(i + 1));
      expect(verifyWebhookSignature(SECRET, r.headers['x-avatar-signature'] as string, r.body)).toBe(true);
    }
    const job = JSON.parse(c.body) as Job;
    expect(job.jobId).toBe(id);
    expect(job.status).toBe('completed');
    expect(job.params.webhook).toEqual({ url: receiver.url });
    // the same redacted job the API shows: no server path
    expect(job.result?.outputPath).toBe(`outputs/${id}.wav`);
    expect(c.body).not.toContain(ctx.storageDir);

    const state = await waitFor('delivered state', async () => {
      const s = await deliveryState(ctx.storageDir, id);
      return s?.status === 'delivered' && s;
    });
    expect(state.attempts).toBe(3);
    expect(state.lastStatus).toBe(204);
    expect(state.nextAttemptAt).toBeNull();
    // delivered once: nothing more comes
    await sleep(400);
    expect(receiver.got).toHaveLength(3);
    expect((await readdir(join(ctx.storageDir, 'webhooks'))).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('jobs run by a separate worker process are noticed; a delivery left pending survives a restart', async () => {
    const ctx = await context();
    receiver.failFirst = 1;
    receiver.failStatus = 503;
    const first = await startServer({
      context: ctx, port: 0, apiKeys: [], rateLimit: false, worker: false,
      webhooks: { secret: SECRET, allowPrivate: true, backoffMs: 1500, pollIntervalMs: 50 },
    });
    opened.push(first);
    const submit = await first.app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Separate worker.', webhook: { url: receiver.url } } } });
    expect(submit.statusCode).toBe(202);
    const id = submit.json<Job>().jobId;

    // an `avatar worker` elsewhere: its own store over the same folder
    const workerStore = new FileJobStore({ storageDir: ctx.storageDir });
    const worker = new Worker({ store: workerStore, handlers: createJobHandlers(ctx.coordinator), pollMs: 50 });
    const summary = await worker.run({ once: true });
    await workerStore.close();
    expect(summary.completed).toBe(1);

    await receiver.until(1);
    const pending = await waitFor('the first failure recorded', async () => {
      const s = await deliveryState(ctx.storageDir, id);
      return s?.attempts === 1 && s;
    });
    expect(pending.status).toBe('pending');
    expect(pending.lastStatus).toBe(503);
    await first.close();
    opened.splice(opened.indexOf(first), 1);
    expect(receiver.got).toHaveLength(1);

    // a new process on the same storage finishes the delivery
    const second = await startServer({ context: ctx, port: 0, apiKeys: [], rateLimit: false, worker: false, webhooks: { secret: SECRET, allowPrivate: true, pollIntervalMs: 50 } });
    opened.push(second);
    await receiver.until(2);
    const done = await waitFor('delivered', async () => {
      const s = await deliveryState(ctx.storageDir, id);
      return s?.status === 'delivered' && s;
    });
    expect(done.attempts).toBe(2);
    expect(receiver.got[1]!.body).toBe(receiver.got[0]!.body);
    expect(receiver.got[1]!.headers['x-avatar-attempt']).toBe('2');
    expect(receiver.got[1]!.at - receiver.got[0]!.at).toBeGreaterThanOrEqual(1400);
    await sleep(300);
    expect(receiver.got).toHaveLength(2);
  });

  it('a job queued elsewhere and cancelled there is found by the scan; a receiver that keeps failing is given up on', async () => {
    const ctx = await context();
    receiver.failFirst = 100;
    receiver.failStatus = 500;
    const server = await startServer({
      context: ctx, port: 0, apiKeys: [], rateLimit: false, worker: false,
      webhooks: { secret: SECRET, allowPrivate: true, attempts: 3, backoffMs: 50, pollIntervalMs: 50, scanIntervalMs: 100 },
    });
    opened.push(server);
    // `avatar jobs submit` and `avatar jobs cancel` from another process
    const other = new FileJobStore({ storageDir: ctx.storageDir });
    const job = await other.submit('voice_synthesis', { text: 'never run', webhook: { url: receiver.url } });
    await other.cancel(job.jobId);
    await other.close();

    await receiver.until(3);
    const state = await waitFor('given up', async () => {
      const s = await deliveryState(ctx.storageDir, job.jobId);
      return s?.status === 'failed' && s;
    });
    expect(state.attempts).toBe(3);
    expect(state.lastError).toMatch(/HTTP 500/);
    expect((JSON.parse(receiver.got[0]!.body) as Job).status).toBe('cancelled');
    await sleep(300);
    expect(receiver.got).toHaveLength(3);
  });

  /** A job queued and cancelled by another process: finished, with a webhook, never run. */
  async function finishedJob(storageDir: string, url: string): Promise<Job> {
    const other = new FileJobStore({ storageDir });
    const job = await other.submit('voice_synthesis', { text: 'never run', webhook: { url } });
    await other.cancel(job.jobId);
    await other.close();
    return job;
  }

  it('a receiver that trickles its answer forever fails at the deadline; a long answer is cut after a few KB', async () => {
    const sockets = new Set<import('node:net').Socket>();
    const timers = new Set<NodeJS.Timeout>();
    const slow = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      const endless = req.url?.startsWith('/endless');
      // a byte every 50 ms keeps an idle timeout from ever firing; the endless one floods
      const timer = setInterval(() => res.write(endless ? Buffer.alloc(1024, 97) : 'x'), endless ? 5 : 50);
      timers.add(timer);
    });
    slow.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(slow.address() as AddressInfo).port}`;
    try {
      const ctx = await context();
      const trickled = await finishedJob(ctx.storageDir, `${base}/trickle`);
      const flooded = await finishedJob(ctx.storageDir, `${base}/endless`);
      const started = Date.now();
      const server = await startServer({
        context: ctx, port: 0, apiKeys: [], rateLimit: false, worker: false,
        webhooks: { secret: SECRET, allowPrivate: true, attempts: 1, timeoutMs: 600, pollIntervalMs: 50 },
      });
      opened.push(server);
      const failed = await waitFor('the trickled try given up', async () => {
        const s = await deliveryState(ctx.storageDir, trickled.jobId);
        return s?.status === 'failed' && s;
      });
      const took = Date.now() - started;
      expect(failed.lastError).toMatch(/no complete answer within 600 ms/);
      expect(took).toBeGreaterThanOrEqual(550);
      expect(took).toBeLessThan(3000);
      const cut = await waitFor('the flooded one delivered', async () => {
        const s = await deliveryState(ctx.storageDir, flooded.jobId);
        return s?.status !== 'pending' && s;
      });
      expect(cut.status).toBe('delivered');
      expect(cut.lastStatus).toBe(200);
      expect(MAX_ANSWER_BYTES).toBeLessThanOrEqual(64 * 1024);
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });

  it('a pending delivery found by a server without a secret is failed with a logged reason, never sent', async () => {
    const ctx = await context();
    const job = await finishedJob(ctx.storageDir, receiver.url);
    const now = new Date().toISOString();
    const pending: DeliveryState = {
      jobId: job.jobId, url: receiver.url, status: 'pending', attempts: 1, maxAttempts: 6, nextAttemptAt: now,
      createdAt: now, updatedAt: now, lastStatus: 500, lastError: 'answered HTTP 500', body: JSON.stringify(job),
    };
    await mkdir(join(ctx.storageDir, 'webhooks'), { recursive: true });
    await writeFile(join(ctx.storageDir, 'webhooks', `${job.jobId}.json`), JSON.stringify(pending));
    const log = new MemoryLogger();
    const server = await startServer({
      context: { ...ctx, log }, port: 0, apiKeys: [], rateLimit: false, worker: false,
      webhooks: { secret: '', allowPrivate: true, pollIntervalMs: 50 },
    });
    opened.push(server);
    const state = await waitFor('failed', async () => {
      const s = await deliveryState(ctx.storageDir, job.jobId);
      return s?.status === 'failed' && s;
    });
    expect(state.lastError).toMatch(/no webhook secret/);
    expect(state.attempts).toBe(1);
    expect(log.entries.some((e) => e.level === 'warn' && e.message.includes(job.jobId) && /no webhook secret/.test(String(e.fields?.reason)))).toBe(true);
    await sleep(200);
    expect(receiver.got).toHaveLength(0);
  });

  it('a damaged delivery record does not block the delivery: it is written again and the job delivered', async () => {
    const ctx = await context();
    const job = await finishedJob(ctx.storageDir, receiver.url);
    await mkdir(join(ctx.storageDir, 'webhooks'), { recursive: true });
    await writeFile(join(ctx.storageDir, 'webhooks', `${job.jobId}.json`), '{"jobId": "job-2026');
    const log = new MemoryLogger();
    const server = await startServer({
      context: { ...ctx, log }, port: 0, apiKeys: [], rateLimit: false, worker: false,
      webhooks: { secret: SECRET, allowPrivate: true, pollIntervalMs: 50 },
    });
    opened.push(server);
    await receiver.until(1);
    const state = await waitFor('delivered', async () => {
      const s = await deliveryState(ctx.storageDir, job.jobId);
      return s?.status === 'delivered' && s;
    });
    expect(state.attempts).toBe(1);
    expect(log.entries.some((e) => e.level === 'warn' && e.message.includes('damaged'))).toBe(true);
    expect((await readdir(join(ctx.storageDir, 'webhooks'))).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});
