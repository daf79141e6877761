import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { MemoryLogger } from '@avatar/core';
import { buildServer, startServer } from './server.js';
import type { RunningServer } from './server.js';
import { makeTestContext } from './context.test-helpers.js';

// No input makes the server answer 5xx, every 5xx says why in the log under an id the answer carries, and
// what the HTTP parser refuses before any route runs still comes in the one error shape with the
// security headers.

const errorOf = (body: string): { code: string; message: string; hint: string } => (JSON.parse(body) as { error: { code: string; message: string; hint: string } }).error;

describe('server faults', () => {
  let ctx: Awaited<ReturnType<typeof makeTestContext>>;
  let app: FastifyInstance;
  const log = new MemoryLogger();

  beforeAll(async () => {
    ctx = await makeTestContext('avatar-server-faults-');
    app = await buildServer({ context: { ...ctx, log }, apiKeys: [], worker: false, rateLimit: false });
  });
  afterAll(async () => {
    await app?.close();
    await ctx?.cleanup();
  });

  it('JSON nested thousands deep is refused as it is read (400), not by a stack overflow (500)', async () => {
    let deep = '1';
    for (let i = 0; i < 5000; i++) deep = `{"a":${deep}}`;
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: `{"jobType":"full_pipeline","params":{"text":"hi","avatarImagePath":"x.jpg","config":${deep}}}`, headers: { 'content-type': 'application/json' } });
    expect(res.statusCode, res.body).toBe(400);
    expect(errorOf(res.body).code).toBe('AVATAR_ERR_HTTP_BAD_REQUEST');
    expect(errorOf(res.body).message).toContain('nested deeper than 32 levels');
    expect(await ctx.store.list()).toEqual([]);
  });

  it('an unknown job type is named, with the known ones', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'make_coffee', params: {} } });
    expect(res.statusCode).toBe(400);
    const error = errorOf(res.body);
    expect(error.code).toBe('AVATAR_ERR_JOB_TYPE_UNKNOWN');
    expect(error.hint).toContain('full_pipeline');
    expect(error.message).not.toContain('constant');
  });

  it('a damaged job file is named with 409, never a 500', async () => {
    await writeFile(join(ctx.storageDir, 'jobs', 'job-20260101000000-0badf00d.json'), '{"jobId": "job-2026');
    const res = await app.inject({ url: '/v1/jobs/job-20260101000000-0badf00d' });
    expect(res.statusCode, res.body).toBe(409);
    expect(errorOf(res.body).code).toBe('AVATAR_ERR_QUEUE_CORRUPT_FILE');
  });

  it('every answer carries a request id; a 5xx logs its cause and stack at error level under that id', async () => {
    const ok = await app.inject({ url: '/healthz' });
    expect(ok.headers['x-request-id']).toMatch(/^req-[0-9a-f]{12}$/);
    // the router's own refusals too, which come before any hook
    const badUrl = await app.inject({ url: '/v1/jobs/%E0%A4%A' });
    expect(badUrl.statusCode).toBe(400);
    expect(badUrl.headers['x-request-id']).toMatch(/^req-[0-9a-f]{12}$/);
    const list = ctx.store.list.bind(ctx.store);
    ctx.store.list = async () => {
      throw new TypeError('the disk went away');
    };
    try {
      const res = await app.inject({ url: '/v1/jobs' });
      expect(res.statusCode).toBe(500);
      const id = String(res.headers['x-request-id']);
      expect(errorOf(res.body).message).toContain(id);
      expect(res.body).not.toContain('disk went away');
      const logged = log.entries.find((e) => e.level === 'error' && e.message.includes(id));
      expect(logged?.message).toContain('the disk went away');
      expect(String(logged?.fields?.stack)).toContain('TypeError');
    } finally {
      ctx.store.list = list;
    }
  });
});

describe('what the HTTP parser refuses', () => {
  let ctx: Awaited<ReturnType<typeof makeTestContext>>;
  let server: RunningServer;

  beforeAll(async () => {
    ctx = await makeTestContext('avatar-server-431-');
    server = await startServer({ context: ctx, port: 0, apiKeys: [], worker: false });
  });
  afterAll(async () => {
    await server?.close();
    await ctx?.cleanup();
  });

  /** Sends raw bytes and reads the whole answer. */
  const raw = (text: string): Promise<string> => new Promise((resolve, reject) => {
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname, () => socket.end(text));
    let answer = '';
    socket.on('data', (d: Buffer) => { answer += d.toString('latin1'); });
    socket.on('close', () => resolve(answer));
    socket.on('error', reject);
  });

  it('headers too large get 431 in the one error shape, with the security headers', async () => {
    const answer = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40 * 1024)}\r\n\r\n`);
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    expect(head.toLowerCase()).toContain('x-content-type-options: nosniff');
    expect(head.toLowerCase()).toContain('content-security-policy:');
    expect(errorOf(body).code).toBe('AVATAR_ERR_HTTP_BAD_REQUEST');
  });

  it('bytes that are not HTTP get 400 the same way', async () => {
    const answer = await raw('HELLO THERE\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(errorOf(answer.split('\r\n\r\n')[1] ?? '').code).toBe('AVATAR_ERR_HTTP_BAD_REQUEST');
  });
});
