import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { AvatarError } from '@avatar/core';
import type { Job } from '@avatar/core';
import { buildServer, startServer } from './server.js';
import { readApiKeysFile, resolveApiKeys } from './auth.js';
import { CONTENT_SECURITY_POLICY, corsOriginsFromEnv, isHealthzPath, isKeyFreePath, rateLimitFromEnv } from './security.js';
import { makeTestContext } from './context.test-helpers.js';

const makeContext = () => makeTestContext('avatar-security-');

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const codeOf = (body: string): string => (JSON.parse(body) as { error: { code: string } }).error.code;

describe('rate limit', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let app: FastifyInstance;

  beforeAll(async () => {
    ctx = await makeContext();
    app = await buildServer({ context: ctx, apiKeys: ['key-one', 'key-two'], worker: false, rateLimit: { max: 5, windowMs: 60_000 } });
  });
  afterAll(async () => {
    await app?.close();
    await ctx?.cleanup();
  });

  it('answers 429 AVATAR_ERR_HTTP_RATE_LIMITED with Retry-After once a key is over its limit; other keys and /healthz go on', async () => {
    for (let i = 0; i < 5; i++) {
      const ok = await app.inject({ url: '/v1/jobs', headers: bearer('key-one') });
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['x-ratelimit-remaining']).toBe(String(4 - i));
    }
    const over = await app.inject({ url: '/v1/stats', headers: bearer('key-one') });
    expect(over.statusCode).toBe(429);
    expect(codeOf(over.body)).toBe('AVATAR_ERR_HTTP_RATE_LIMITED');
    const body = JSON.parse(over.body) as { error: { message: string; hint: string } };
    expect(body.error.message).toMatch(/over 5 in 1 minute/);
    const retry = Number(over.headers['retry-after']);
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(60);
    expect(over.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    // a route that does not exist counts as well
    expect((await app.inject({ url: '/nowhere', headers: bearer('key-one') })).statusCode).toBe(429);

    // a bucket per key
    expect((await app.inject({ url: '/v1/jobs', headers: bearer('key-two') })).statusCode).toBe(200);
    // health checks are never limited
    for (let i = 0; i < 8; i++) expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });

  it('requests without a valid key are limited by address, before the key check', async () => {
    const fresh = await buildServer({ context: ctx, apiKeys: ['k'], worker: false, rateLimit: { max: 3, windowMs: 60_000 } });
    try {
      const codes: number[] = [];
      for (let i = 0; i < 5; i++) codes.push((await fresh.inject({ url: '/v1/jobs', headers: bearer('guess') })).statusCode);
      expect(codes).toEqual([401, 401, 401, 429, 429]);
      // the holder of the real key has a bucket of its own
      expect((await fresh.inject({ url: '/v1/jobs', headers: bearer('k') })).statusCode).toBe(200);
    } finally {
      await fresh.close();
    }
  });

  it('AVATAR_RATE_LIMIT: per minute, 0 turns it off, junk refused', () => {
    expect(rateLimitFromEnv({ AVATAR_RATE_LIMIT: '120' })).toEqual({ max: 120, windowMs: 60_000 });
    expect(rateLimitFromEnv({ AVATAR_RATE_LIMIT: '0' })).toBe(false);
    expect(rateLimitFromEnv({})).toBeUndefined();
    expect(() => rateLimitFromEnv({ AVATAR_RATE_LIMIT: 'lots' })).toThrow(AvatarError);
  });
});

describe('CORS', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;

  beforeAll(async () => {
    ctx = await makeContext();
  });
  afterAll(async () => {
    await ctx?.cleanup();
  });

  it('is off unless origins are configured: no Access-Control headers, preflights need a key like anything else', async () => {
    const app = await buildServer({ context: ctx, apiKeys: ['k'], worker: false, corsOrigins: [] });
    try {
      const res = await app.inject({ url: '/v1/jobs', headers: { ...bearer('k'), origin: 'https://app.example' } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      const pre = await app.inject({ method: 'OPTIONS', url: '/v1/jobs', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
      expect(pre.headers['access-control-allow-origin']).toBeUndefined();
      expect(pre.statusCode).toBe(401);
    } finally {
      await app.close();
    }
  });

  it('with origins: an allowed origin gets the headers and its keyless preflight is answered; others get none', async () => {
    const app = await buildServer({ context: ctx, apiKeys: ['k'], worker: false, corsOrigins: ['https://app.example'] });
    try {
      const pre = await app.inject({
        method: 'OPTIONS', url: '/v1/jobs',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
      });
      expect(pre.statusCode).toBe(204);
      expect(pre.headers['access-control-allow-origin']).toBe('https://app.example');
      expect(String(pre.headers['access-control-allow-headers'])).toMatch(/authorization/);
      expect(String(pre.headers['access-control-allow-methods'])).toMatch(/POST/);
      const res = await app.inject({ url: '/v1/jobs', headers: { ...bearer('k'), origin: 'https://app.example' } });
      expect(res.headers['access-control-allow-origin']).toBe('https://app.example');
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
      const other = await app.inject({ url: '/v1/jobs', headers: { ...bearer('k'), origin: 'https://evil.example' } });
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
    } finally {
      await app.close();
    }
    expect(corsOriginsFromEnv({ AVATAR_CORS_ORIGINS: 'https://a.example/, http://localhost:3000 ,' })).toEqual(['https://a.example', 'http://localhost:3000']);
  });
});

describe('security headers', () => {
  it('on every answer: JSON, errors, 404, 401, health and event streams', async () => {
    const ctx = await makeContext();
    const server = await startServer({ context: ctx, port: 0, apiKeys: ['k'], worker: false, rateLimit: false });
    try {
      const job = (await server.app.inject({ method: 'POST', url: '/v1/jobs', headers: bearer('k'), payload: { jobType: 'voice_synthesis', params: { text: 'hi' } } })).json<Job>();
      await server.app.inject({ method: 'DELETE', url: `/v1/jobs/${job.jobId}`, headers: bearer('k') });
      const answers = [
        await server.app.inject({ url: '/v1/jobs', headers: bearer('k') }),
        await server.app.inject({ url: '/v1/jobs/job-20260101000000-00000000', headers: bearer('k') }),
        await server.app.inject({ url: '/no/such/route', headers: bearer('k') }),
        await server.app.inject({ url: '/v1/jobs' }),
        await server.app.inject({ url: '/healthz' }),
        await server.app.inject({ method: 'POST', url: '/v1/jobs', headers: { ...bearer('k'), 'content-type': 'application/json' }, payload: '{oops' }),
      ];
      expect(answers.map((a) => a.statusCode)).toEqual([200, 404, 404, 401, 200, 400]);
      const stream = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
        httpRequest(`${server.url}/v1/jobs/${job.jobId}/events`, { headers: bearer('k') }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.headers));
        }).on('error', reject).end();
      });
      for (const headers of [...answers.map((a) => a.headers), stream]) {
        expect(headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
        expect(headers['x-content-type-options']).toBe('nosniff');
        expect(headers['x-frame-options']).toBe('DENY');
        expect(headers['referrer-policy']).toBe('no-referrer');
        expect(headers['cross-origin-resource-policy']).toBe('same-origin');
      }
      expect(String(stream['content-type'])).toMatch(/^text\/event-stream/);
      // the policy the page is written for
      expect(CONTENT_SECURITY_POLICY).toContain("default-src 'self'");
      expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
      expect(CONTENT_SECURITY_POLICY).toContain("style-src 'self'");
      expect(CONTENT_SECURITY_POLICY).toContain("img-src 'self' blob: data:");
      expect(CONTENT_SECURITY_POLICY).toContain("media-src 'self' blob:");
      expect(CONTENT_SECURITY_POLICY).toContain("connect-src 'self'");
      expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe-inline');
    } finally {
      await server.close();
      await ctx.cleanup();
    }
  });
});

describe('API keys from a file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'avatar-keys-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('one key per line, comments and blanks skipped; joined with AVATAR_API_KEYS; the server takes them', async () => {
    const file = join(dir, 'keys');
    await writeFile(file, '# team keys\n\nalpha-123\n  beta-456   # the CI key\r\nga#mma\n');
    expect(readApiKeysFile(file)).toEqual(['alpha-123', 'beta-456', 'ga#mma']);
    expect(resolveApiKeys({}, { AVATAR_API_KEYS: 'env-key', AVATAR_API_KEYS_FILE: file })).toEqual(['env-key', 'alpha-123', 'beta-456', 'ga#mma']);
    expect(resolveApiKeys({ apiKeys: ['given'], apiKeysFile: file }, {})).toEqual(['given', 'alpha-123', 'beta-456', 'ga#mma']);

    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: [], apiKeysFile: file, worker: false, rateLimit: false });
    try {
      expect((await app.inject({ url: '/v1/jobs' })).statusCode).toBe(401);
      expect((await app.inject({ url: '/v1/jobs', headers: bearer('beta-456') })).statusCode).toBe(200);
      expect((await app.inject({ url: '/v1/jobs', headers: bearer('# the CI key') })).statusCode).toBe(401);
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });

  it('a missing, unreadable, empty or malformed file stops the start with AVATAR_ERR_HTTP_API_KEYS_FILE', async () => {
    const empty = join(dir, 'empty');
    await writeFile(empty, '# nothing yet\n\n');
    const spaced = join(dir, 'spaced');
    await writeFile(spaced, 'two keys-on-one-line\n');
    const locked = join(dir, 'locked');
    await writeFile(locked, 'k\n');
    await chmod(locked, 0o000);
    const cases = [join(dir, 'missing'), empty, spaced, ...(process.getuid?.() === 0 ? [] : [locked])];
    for (const path of cases) {
      let caught: unknown;
      try {
        readApiKeysFile(path);
      } catch (error) {
        caught = error;
      }
      expect(caught, path).toBeInstanceOf(AvatarError);
      expect((caught as AvatarError).code).toBe('AVATAR_ERR_HTTP_API_KEYS_FILE');
      expect((caught as AvatarError).message).toContain(path);
    }
    const ctx = await makeContext();
    try {
      await expect(startServer({ context: ctx, port: 0, apiKeysFile: join(dir, 'missing'), worker: false })).rejects.toMatchObject({ code: 'AVATAR_ERR_HTTP_API_KEYS_FILE' });
    } finally {
      await ctx.cleanup();
    }
  });
});

const expectSecurityHeaders = (headers: Record<string, string | string[] | number | undefined>): void => {
  expect(headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
  expect(headers['x-content-type-options']).toBe('nosniff');
  expect(headers['x-frame-options']).toBe('DENY');
  expect(headers['referrer-policy']).toBe('no-referrer');
};

describe('answers outside the routes', () => {
  it("the router's own refusals carry the security headers", async () => {
    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false });
    try {
      const long = await app.inject({ url: `/v1/jobs/${'a'.repeat(300)}` });
      expect(long.statusCode).toBe(400);
      expect(codeOf(long.body)).toBe('AVATAR_ERR_HTTP_VALIDATION');
      expectSecurityHeaders(long.headers);
      const badlyEncoded = await app.inject({ url: '/v1/jobs/%E0%A4%A' });
      expect(badlyEncoded.statusCode).toBe(400);
      expect(codeOf(badlyEncoded.body)).toBe('AVATAR_ERR_HTTP_BAD_REQUEST');
      expectSecurityHeaders(badlyEncoded.headers);
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });

  it('during shutdown a new request gets 503 AVATAR_ERR_HTTP_SHUTTING_DOWN in the one error shape, with the headers', async () => {
    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: ['k'], worker: false, rateLimit: false });
    // shutdown held open, as a running job's grace period would
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    app.addHook('preClose', () => held);
    await app.listen({ host: '127.0.0.1', port: 0 });
    const server = { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
    let closing: Promise<void> | undefined;
    try {
      closing = app.close();
      const answer = await new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
        httpRequest(`${server.url}/v1/jobs`, { headers: bearer('k') }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        }).on('error', reject).end();
      });
      expect(answer.status).toBe(503);
      const parsed = JSON.parse(answer.body) as { error: { code: string; message: string; hint: string } };
      expect(Object.keys(parsed)).toEqual(['error']);
      expect(parsed.error.code).toBe('AVATAR_ERR_HTTP_SHUTTING_DOWN');
      expect(parsed.error.hint).not.toBe('');
      expect(String(answer.headers['content-type'])).toMatch(/^application\/json/);
      expect(answer.headers['retry-after']).toBe('5');
      expectSecurityHeaders(answer.headers);
    } finally {
      release();
      await (closing ?? app.close());
      await ctx.cleanup();
    }
  });
});

describe('error messages', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let app: FastifyInstance;

  beforeAll(async () => {
    ctx = await makeContext();
    app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false });
    // errors as core raises them, naming files on the server
    app.get('/fail/model', async () => {
      throw new AvatarError('AVATAR_ERR_MODEL_MISSING', { name: 'lipsync', path: '/opt/avatar/models/lipsync-256.onnx' });
    });
    app.get('/fail/storage', async () => {
      throw new AvatarError('AVATAR_ERR_STORAGE_NOT_WRITABLE', { path: join(ctx.storageDir, 'outputs'), reason: `EACCES: permission denied, open '${join(ctx.storageDir, 'outputs', 'x.tmp')}'` });
    });
    app.get('/fail/params', async () => {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: 'config', problem: 'names /etc/avatar/secret.json', expected: 'Give /home/bob/x.json no more.' });
    });
  });
  afterAll(async () => {
    await app?.close();
    await ctx?.cleanup();
  });

  it('name no absolute server path, whatever their status: storage paths become relative, others their base name', async () => {
    const model = await app.inject({ url: '/fail/model' });
    expect(model.statusCode).toBe(503);
    const m = JSON.parse(model.body) as { error: { code: string; message: string; hint: string } };
    expect(m.error.code).toBe('AVATAR_ERR_MODEL_MISSING');
    expect(m.error.message).toBe('model lipsync is not built: lipsync-256.onnx');
    expect(model.body).not.toContain('/opt/avatar');

    const storage = await app.inject({ url: '/fail/storage' });
    expect(storage.statusCode).toBe(503);
    const st = JSON.parse(storage.body) as { error: { message: string } };
    expect(st.error.message).toContain('outputs');
    expect(st.error.message).toContain("'outputs/x.tmp'");
    expect(storage.body).not.toContain(ctx.storageDir);

    const params = await app.inject({ url: '/fail/params' });
    expect(params.statusCode).toBe(400);
    const p = JSON.parse(params.body) as { error: { message: string; hint: string } };
    expect(p.error.message).toContain('names secret.json');
    expect(p.error.hint).toContain('Give x.json');
    expect(params.body).not.toMatch(/\/etc\/|\/home\//);
  });

  it('415 names the content type sent, cut short and cleaned', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', headers: { 'content-type': `application/x-made-up; note=${'z'.repeat(300)}` }, payload: 'hello' });
    expect(res.statusCode).toBe(415);
    const body = JSON.parse(res.body) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA');
    expect(body.error.message).toContain('"application/x-made-up; note=zzz');
    expect(body.error.message).not.toContain('z'.repeat(120));
    expect(body.error.message.length).toBeLessThan(200);
  });
});

describe('what needs no key', () => {
  it('/healthz, the page, /docs and /openapi.json; the document and /docs say so', async () => {
    expect(isHealthzPath('/healthz')).toBe(true);
    expect(isHealthzPath('/healthz?probe=1')).toBe(true);
    expect(isHealthzPath('/healthzx')).toBe(false);
    for (const url of ['/healthz', '/openapi.json', '/openapi.json?x', '/docs', '/']) expect(isKeyFreePath(url), url).toBe(true);
    for (const url of ['/openapi.jsonx', '/metrics', '/v1/jobs', '/readyz']) expect(isKeyFreePath(url), url).toBe(false);

    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: ['k'], worker: false, rateLimit: false });
    try {
      const docRes = await app.inject({ url: '/openapi.json' });
      expect(docRes.statusCode).toBe(200);
      const doc = docRes.json<{ security?: unknown[]; paths: Record<string, Record<string, { security?: unknown[] }>> }>();
      expect(doc.security).toEqual([{ bearer: [] }]);
      expect(doc.paths['/healthz']?.get?.security).toEqual([]);
      expect(doc.paths['/openapi.json']?.get?.security).toEqual([]);
      expect(doc.paths['/v1/jobs']?.get?.security).toBeUndefined();
      expect(doc.paths['/metrics']?.get?.security).toBeUndefined();
      expect((await app.inject({ url: '/metrics' })).statusCode).toBe(401);

      const page = await app.inject({ url: '/docs' });
      expect(page.statusCode).toBe(200);
      const html = page.body;
      expect(html).toContain('href="/openapi.json"');
      const section = (path: string): string => {
        const at = html.indexOf(`>${path}<`);
        expect(at, path).toBeGreaterThan(0);
        return html.slice(at, at + 2000);
      };
      expect(section('/healthz')).toMatch(/No key needed/);
      expect(section('/metrics')).toMatch(/Needs <code>Authorization/);
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });
});

