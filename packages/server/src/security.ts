import { availableParallelism } from 'node:os';
import { maxHeaderSize } from 'node:http';
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import fp from 'fastify-plugin';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import type { FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import { AvatarError } from '@avatar/core';
import type { JobStore, PluginRegistry, ResourceManager } from '@avatar/core';
import type { ApiKeyChecker } from './auth.js';
import { errorBody } from './http-errors.js';
import type { Redactor } from './redact.js';
import { CONTENT_SECURITY_POLICY } from './csp.js';
import { isPublicPagePath } from './routes/page.js';

export { CONTENT_SECURITY_POLICY };

export interface RateLimitOptions {
  /** requests per window per API key (per client address when keys are off) */
  max: number;
  /** ms (default 60 000) */
  windowMs?: number;
}

export interface SecurityOptions {
  auth: ApiKeyChecker;
  /** default 600 a minute; false turns limiting off */
  rateLimit?: RateLimitOptions | false;
  /** origins allowed to call the API from a browser; none (the default) means no CORS headers at all */
  corsOrigins?: readonly string[];
  redactor: Redactor;
  /** counts kept by the job store (several servers on one Redis share them); none: each server counts alone */
  counter?: JobStore['countInWindow'];
}

/** A rate limit as text (requests per minute per key; 0: no limit), from the environment or a flag named `source`. */
export function parseRateLimit(raw: string, source = 'AVATAR_RATE_LIMIT'): RateLimitOptions | false {
  const text = raw.trim();
  const n = text === '' ? NaN : Number(text);
  if (!Number.isInteger(n) || n < 0) throw new AvatarError('AVATAR_ERR_USAGE', { reason: `${source} must be a whole number of requests per minute (0: no limit), not "${raw.slice(0, 100)}"` });
  return n === 0 ? false : { max: n, windowMs: 60_000 };
}

/** AVATAR_RATE_LIMIT: requests per minute per key, 0 turns limiting off; undefined when unset. */
export function rateLimitFromEnv(env: NodeJS.ProcessEnv = process.env): RateLimitOptions | false | undefined {
  const raw = env.AVATAR_RATE_LIMIT;
  return raw === undefined || raw.trim() === '' ? undefined : parseRateLimit(raw);
}

/** Allowed browser origins as text: comma-separated, or `*`; trailing slashes dropped. */
export function parseCorsOrigins(raw: string): string[] {
  return raw.split(',').map((o) => o.trim().replace(/\/+$/, '')).filter((o) => o.length > 0);
}

/** AVATAR_CORS_ORIGINS: comma-separated origins, or `*`. */
export function corsOriginsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return parseCorsOrigins(env.AVATAR_CORS_ORIGINS ?? '');
}

const windowText = (ms: number): string =>
  ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${Math.round(ms / 100) / 10} seconds`;

const pathOf = (url: string): string => url.split('?', 1)[0] ?? '';

/** The liveness probe: never limited, never asks for a key. */
export const isHealthzPath = (url: string): boolean => pathOf(url) === '/healthz';

/**
 * What anyone may fetch without a key: the liveness probe, the page (with /docs) and the OpenAPI
 * document, which describes shapes and holds nothing of anyone's jobs.
 */
export const isKeyFreePath = (url: string): boolean => isHealthzPath(url) || pathOf(url) === '/openapi.json' || isPublicPagePath(url);

/**
 * The security headers, set on the raw response: answers written outside fastify's hooks (event
 * streams, the router's own refusals, the shutdown answer) carry them too.
 */
export function setSecurityHeaders(raw: ServerResponse, corsOn: boolean): void {
  for (const [name, value] of Object.entries(securityHeaders(corsOn))) raw.setHeader(name, value);
}

/**
 * The security headers every answer carries, by name. One table rather than @fastify/helmet: helmet
 * sets them from a request hook, and two kinds of answer never reach one (the router's refusals in
 * frameworkErrors, and what the HTTP parser refuses before fastify sees a request, answered on the
 * raw socket by answerClientError); the same table serves those and every routed answer.
 */
export function securityHeaders(corsOn: boolean): Record<string, string> {
  return {
    'content-security-policy': CONTENT_SECURITY_POLICY,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cross-origin-opener-policy': 'same-origin',
    // results may be embedded by the allowed origins when CORS is on
    'cross-origin-resource-policy': corsOn ? 'cross-origin' : 'same-origin',
    'permissions-policy': 'camera=(self), microphone=(self), geolocation=(), payment=(), usb=()',
    'x-dns-prefetch-control': 'off',
  };
}

/**
 * Each key's count for @fastify/rate-limit kept by the job store's shared counter, so a client cannot
 * get N times the limit by spreading its requests over N servers.
 */
function sharedCounts(count: NonNullable<JobStore['countInWindow']>): FastifyRateLimitStoreCtor {
  return class SharedCounts {
    incr(key: string, callback: (error: Error | null, result?: { current: number; ttl: number }) => void, timeWindow: number): void {
      count(`rate:${key}`, timeWindow).then(({ count: current, resetInMs }) => callback(null, { current, ttl: resetInMs }), (error: Error) => callback(error));
    }

    child(): SharedCounts {
      return this;
    }
  } as unknown as FastifyRateLimitStoreCtor;
}

/**
 * Rate limiting, CORS, security headers and path redaction (plugin avatar-security). Registered
 * before the API-key check (plugin avatar-auth): CORS preflights (which carry no key) are answered
 * first, and the limit also counts requests that fail authentication.
 */
export const securityPlugin = fp<SecurityOptions>(async (app, options) => {
  const { auth, redactor } = options;
  const corsOrigins = options.corsOrigins ?? [];

  // from the start of shutdown (while a running job gets its grace period) new requests are
  // answered 503 in the one error shape, before any key check or limit
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    setSecurityHeaders(reply.raw, corsOrigins.length > 0);
    if (closing) {
      const error = new AvatarError('AVATAR_ERR_HTTP_SHUTTING_DOWN');
      return reply.code(error.httpStatus).header('connection', 'close').header('retry-after', '5').type('application/json; charset=utf-8').send(errorBody(error));
    }
  });

  if (corsOrigins.length > 0) {
    await app.register(cors, {
      origin: corsOrigins.includes('*') ? '*' : [...corsOrigins],
      methods: ['GET', 'HEAD', 'POST', 'DELETE'],
      allowedHeaders: ['authorization', 'content-type', 'range'],
      exposedHeaders: ['location', 'content-range', 'content-disposition', 'retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
      maxAge: 600,
      // keys travel in a header, never in cookies
      credentials: false,
    });
  }

  if (options.rateLimit !== false) {
    const max = options.rateLimit?.max ?? 600;
    const windowMs = options.rateLimit?.windowMs ?? 60_000;
    await app.register(rateLimit, {
      global: false,
      max,
      timeWindow: windowMs,
      keyGenerator: (request) => {
        // (counts several servers share name the key itself, not its place in one server's list)
        const key = auth.enabled ? auth.bucket(request.headers.authorization) : undefined;
        return key !== undefined ? `key:${key}` : `ip:${request.ip}`;
      },
      allowList: (request) => isHealthzPath(request.url),
      errorResponseBuilder: (_request, context) =>
        new AvatarError('AVATAR_ERR_HTTP_RATE_LIMITED', { limit: context.max, window: windowText(windowMs), retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)) }),
      // a shared counter that does not answer (Redis away) lets requests through: the routes say what is wrong
      ...(options.counter && { store: sharedCounts(options.counter), skipOnError: true }),
    });
    // one hook for every request, routes and not-found alike, before the key check
    app.addHook('onRequest', app.rateLimit());
  }

  // every job a route answers with (and the SSE stream, which calls redactor itself) loses server paths
  app.addHook('preSerialization', async (_request, _reply, payload) => redactor.payload(payload));
}, { name: 'avatar-security', fastify: '5.x' });

/**
 * The API-key check (plugin avatar-auth): with keys configured, every request but the key-free paths
 * (/healthz, the page) needs one, and the OpenAPI document says which routes need none.
 */
export const authPlugin = fp<{ auth: ApiKeyChecker }>(async (app, { auth }) => {
  if (auth.enabled) {
    app.addHook('onRequest', async (request, reply) => {
      if (isKeyFreePath(request.url)) return;
      if (auth.check(request.headers.authorization)) return;
      // no detail: a caller learns neither whether a key was close nor which part was wrong
      return reply.code(401).header('www-authenticate', 'Bearer').type('application/json; charset=utf-8').send(errorBody(new AvatarError('AVATAR_ERR_HTTP_UNAUTHORIZED')));
    });
  }
  // (the global requirement is dropped for them)
  app.addHook('onRoute', (route) => {
    if (isKeyFreePath(route.url) || route.url.startsWith('/static/')) route.schema = { ...route.schema, security: [] };
  });
}, { name: 'avatar-auth', dependencies: ['avatar-security'], fastify: '5.x' });

/**
 * How many jobs one worker may run at once within the resource budget: models load one at a time
 * (the ResourceManager queues them), so extra jobs overlap the stages between models (speech
 * writing, encoding with ffmpeg). Each running job is allowed the host memory of the largest model
 * any installed engine declares, and at most one job per two CPU cores. At least 1.
 */
export function concurrencyFromBudget(registry: PluginRegistry, resources: Pick<ResourceManager, 'budgets'>, cpus: number = availableParallelism()): number {
  const largestModelMB = Math.max(256, ...registry.list().map(({ plugin }) => plugin.resources.ramMB ?? 0));
  const byMemory = Math.floor(resources.budgets.ramMB / largestModelMB);
  return Math.max(1, Math.min(byMemory, Math.floor(cpus / 2), 16));
}

/** What the HTTP parser could not read, as Node would answer it, in the one error shape with the security headers. */
const CLIENT_ERRORS: Readonly<Record<string, readonly [number, string, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', `the request headers are larger than the server accepts (${Math.round(maxHeaderSize / 1024)} KB)`],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'the request did not arrive in time'],
};

/**
 * Answers a request the HTTP parser refused before fastify saw it (fastify's clientErrorHandler):
 * the status Node would give, the project's error body and the security headers every answer has.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex, corsOn: boolean): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, text, reason] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'Bad Request', 'the request is not valid HTTP'];
  // (as Node does: not over an answer already under way on this connection)
  const answering = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (socket.writable && !answering) {
    const body = JSON.stringify(errorBody(new AvatarError('AVATAR_ERR_HTTP_BAD_REQUEST', { reason })));
    const headers = Object.entries(securityHeaders(corsOn)).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.write(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers}\r\n${body}`);
  }
  socket.destroy(error);
}
