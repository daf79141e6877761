import { availableParallelism } from 'node:os';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import { AvatarError } from '@avatar/core';
import type { PluginRegistry, ResourceManager } from '@avatar/core';
import type { ApiKeyChecker } from './auth.js';
import type { Redactor } from './redact.js';

/**
 * The page's policy: everything from this origin only, no inline script or style, images also
 * from blob:/data: (previews of a chosen photo), media from blob: (a recorded sample).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob: data:",
  "media-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

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
}

/** AVATAR_RATE_LIMIT: requests per minute per key, 0 turns limiting off. */
export function rateLimitFromEnv(env: NodeJS.ProcessEnv = process.env): RateLimitOptions | false | undefined {
  const raw = env.AVATAR_RATE_LIMIT?.trim();
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new AvatarError('AVATAR_ERR_USAGE', { reason: `AVATAR_RATE_LIMIT must be a whole number of requests per minute (0: no limit), not "${raw}"` });
  return n === 0 ? false : { max: n, windowMs: 60_000 };
}

/** AVATAR_CORS_ORIGINS: comma-separated origins, or `*`. */
export function corsOriginsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.AVATAR_CORS_ORIGINS ?? '').split(',').map((o) => o.trim().replace(/\/+$/, '')).filter((o) => o.length > 0);
}

const windowText = (ms: number): string =>
  ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${Math.round(ms / 100) / 10} seconds`;

const isHealthz = (request: FastifyRequest): boolean => request.url === '/healthz' || request.url.startsWith('/healthz?');

/**
 * Rate limiting, CORS, security headers and path redaction. Call before the API-key check is
 * installed: CORS preflights (which carry no key) are answered first, and the limit also counts
 * requests that fail authentication.
 */
export async function registerSecurity(app: FastifyInstance, options: SecurityOptions): Promise<void> {
  const { auth, redactor } = options;
  const corsOrigins = options.corsOrigins ?? [];

  // headers on the raw response, so answers written outside fastify (event streams) carry them too
  app.addHook('onRequest', async (_request, reply) => {
    const raw = reply.raw;
    raw.setHeader('content-security-policy', CONTENT_SECURITY_POLICY);
    raw.setHeader('x-content-type-options', 'nosniff');
    raw.setHeader('x-frame-options', 'DENY');
    raw.setHeader('referrer-policy', 'no-referrer');
    raw.setHeader('cross-origin-opener-policy', 'same-origin');
    // results may be embedded by the allowed origins when CORS is on
    raw.setHeader('cross-origin-resource-policy', corsOrigins.length > 0 ? 'cross-origin' : 'same-origin');
    raw.setHeader('permissions-policy', 'camera=(self), microphone=(self), geolocation=(), payment=(), usb=()');
    raw.setHeader('x-dns-prefetch-control', 'off');
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
        const key = auth.enabled ? auth.match(request.headers.authorization) : -1;
        return key >= 0 ? `key:${key}` : `ip:${request.ip}`;
      },
      allowList: (request) => isHealthz(request),
      errorResponseBuilder: (_request, context) =>
        new AvatarError('AVATAR_ERR_HTTP_RATE_LIMITED', { limit: context.max, window: windowText(windowMs), retryAfter: Math.max(1, Math.ceil(context.ttl / 1000)) }),
    });
    // one hook for every request, routes and not-found alike, before the key check
    app.addHook('onRequest', app.rateLimit());
  }

  // every job a route answers with (and the SSE stream, which calls redactor itself) loses server paths
  app.addHook('preSerialization', async (_request, _reply, payload) => redactor.payload(payload));
}

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
