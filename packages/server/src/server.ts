import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fp from 'fastify-plugin';
import { AvatarError, MAX_JSON_DEPTH, nestedDeeperThan, parsePipelineConfig, silentLogger } from '@avatar/core';
import type { Job, JobStore, Logger, PipelineCoordinator, PluginRegistry, WorkerOptions } from '@avatar/core';
import { ApiKeyChecker, assertSafeListen, resolveApiKeys } from './auth.js';
import { createRedactor } from './redact.js';
import type { Redactor } from './redact.js';
import { answerClientError, authPlugin, concurrencyFromBudget, corsOriginsFromEnv, rateLimitFromEnv, securityPlugin, setSecurityHeaders } from './security.js';
import type { RateLimitOptions } from './security.js';
import { webhooksPlugin } from './webhooks.js';
import type { WebhookOptions } from './webhooks.js';
import { finishesPlugin, withSubmitHooks } from './finish-watcher.js';
import type { FinishWatcherOptions } from './finish-watcher.js';
import { workerPlugin } from './in-process-worker.js';
import { errorBody, installErrorHandlers } from './http-errors.js';
import { metricsPlugin } from './metrics.js';
import { ErrorBodySchema } from './schemas.js';
import type { RouteContext } from './routes/context.js';
import { installUploads, uploadLimitsFromEnv } from './uploads.js';
import { jobUploadsPlugin } from './job-uploads.js';
import type { UploadLimits } from './uploads.js';
import { registerAssetRoutes } from './routes/assets.js';
import { registerEventRoutes } from './routes/events.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerPageRoutes } from './routes/page.js';
import { registerSystemRoutes } from './routes/system.js';

/** What the server runs on: the same pieces the CLI opens (storage, plugins, queue, coordinator). */
export interface ServerContext {
  storageDir: string;
  registry: PluginRegistry;
  store: JobStore;
  coordinator: PipelineCoordinator;
  log?: Logger;
}

export interface ServerOptions {
  context: ServerContext;
  /** bearer keys; default from AVATAR_API_KEYS. When any is set, every route but /healthz and the page (/, /static, /docs) needs one. */
  apiKeys?: readonly string[];
  /** the address it will listen on; beyond loopback, keys are required */
  host?: string;
  /** run jobs in this process (default true); options go to core's Worker */
  worker?: boolean | Omit<WorkerOptions, 'store' | 'handlers' | 'log'>;
  /** how long a running job may finish on shutdown before it goes back to the queue, ms (default 0) */
  shutdownGraceMs?: number;
  /** largest request body, bytes (default 1 MiB) */
  bodyLimit?: number;
  /** how often the events stream looks at the job, ms (default 250) */
  eventsIntervalMs?: number;
  /** on shutdown, connections still open this long after the worker stopped are cut, ms (default 5000) */
  closeConnectionsAfterMs?: number;
  /** a file of API keys, one per line, # comments (default AVATAR_API_KEYS_FILE); its keys join apiKeys */
  apiKeysFile?: string;
  /** requests per window per API key (per client address without keys); default 600 a minute (AVATAR_RATE_LIMIT); false: off */
  rateLimit?: RateLimitOptions | false;
  /** browser origins allowed to call the API (default AVATAR_CORS_ORIGINS, comma-separated); none: no CORS */
  corsOrigins?: readonly string[];
  /** webhook signing and retries (secret default AVATAR_WEBHOOK_SECRET) and how finished jobs are noticed */
  webhooks?: WebhookOptions & Pick<FinishWatcherOptions, 'pollIntervalMs' | 'scanIntervalMs'>;
  /** jobs the in-process worker runs at once: a number, or 'auto' to derive it from the resource budget (default 1) */
  concurrency?: number | 'auto';
  /** upload limits for /v1/avatars, /v1/voices and multipart /v1/jobs; each one given here wins over its AVATAR_UPLOAD_* variable (uploadLimitsFromEnv), then DEFAULT_UPLOAD_LIMITS */
  uploads?: Partial<UploadLimits>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * The HTTP API over one storage folder: jobs in, progress out, results back. Every route has a
 * schema (requests validated, unknown fields refused, responses serialised from the schema).
 */
export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  const { context } = options;
  const { store, registry } = context;
  const log = context.log ?? silentLogger;
  const storageDir = resolve(context.storageDir);
  const bodyLimit = options.bodyLimit ?? 1024 * 1024;
  const eventsIntervalMs = options.eventsIntervalMs ?? 250;
  const keys = resolveApiKeys(options);
  if (options.host !== undefined) assertSafeListen(options.host, keys);
  const auth = new ApiKeyChecker(keys);
  const corsOrigins = options.corsOrigins ?? corsOriginsFromEnv();
  // read before anything starts: a bad AVATAR_UPLOAD_* value stops the start with a usage error
  const uploadLimits = { ...uploadLimitsFromEnv(), ...options.uploads };
  const redactor = createRedactor(storageDir);

  const app = Fastify({
    logger: false,
    bodyLimit,
    // ids a log line and an answer share; never taken from the client (they would reach the log)
    genReqId: () => `req-${randomBytes(6).toString('hex')}`,
    // the socket's own failures (headers too large, a request that is not HTTP) in the one error shape too
    clientErrorHandler: (error, socket) => answerClientError(error, socket, corsOrigins.length > 0),
    routerOptions: { maxParamLength: 200 },
    // refuse rather than strip unknown fields, and never turn "12" into 12: a wrong type is an error
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    // fastify's own 503 has neither our error shape nor our headers: registerSecurity answers instead
    return503OnClosing: false,
    // the router's own refusals (an over-long path segment, a badly encoded URL) in the one error shape too
    frameworkErrors: (error, request, reply) => {
      // these come before any hook: the headers are set here
      setSecurityHeaders(reply.raw, corsOrigins.length > 0);
      reply.raw.setHeader('x-request-id', request.id);
      const refused = error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part: 'params', reason: 'a path segment is longer than 200 characters' })
        : new AvatarError('AVATAR_ERR_HTTP_BAD_REQUEST', { reason: 'the URL is not validly encoded' });
      // typed for no route in particular: a plain reply
      void (reply as unknown as FastifyReply).code(refused.httpStatus).type(JSON_TYPE).send(errorBody(refused));
    },
  });
  installErrorHandlers(app, { bodyLimit, log, redact: redactor.text });
  // JSON bodies as fastify reads them (prototype poisoning refused), and no deeper than any input
  // needs: a document nested thousands deep is refused here, not by a stack overflow later
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parseJson(request, body as string, (error: Error | null, value?: unknown) => {
      if (error) return done(error, undefined);
      if (nestedDeeperThan(value, MAX_JSON_DEPTH)) {
        return done(new AvatarError('AVATAR_ERR_HTTP_BAD_REQUEST', { reason: `the JSON is nested deeper than ${MAX_JSON_DEPTH} levels` }), undefined);
      }
      done(null, value);
    });
  });
  // every answer names its request: a 5xx's log line carries the same id
  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  app.addSchema(ErrorBodySchema);

  // The server's subsystems are named fastify plugins that declare what they need: fastify refuses to
  // start when one is registered without those (FST_ERR_PLUGIN_DEPENDENCY_NOT_REGISTERED).
  // Before the key check: preflights carry no key, and refused keys count toward the limit; several
  // servers on one shared store (Redis) count together.
  await app.register(securityPlugin, {
    auth, redactor, rateLimit: options.rateLimit ?? rateLimitFromEnv(), corsOrigins,
    ...(store.countInWindow && { counter: store.countInWindow.bind(store) }),
  });
  await app.register(authPlugin, { auth });
  await app.register(swagger, {
    openapi: {
      info: { title: 'avatar HTTP API', version: '0.1.0', description: 'Submit jobs, follow their progress, download results.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(auth.enabled && { security: [{ bearer: [] }] }),
    },
  });

  // open event streams end first on shutdown, so close() does not wait for their clients
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...streams]) end();
  });

  // finished jobs, whoever ran them: stage metrics, webhooks, the clean-up of uploaded files
  await app.register(finishesPlugin, { store, log, ...options.webhooks });
  await app.register(metricsPlugin, { store });
  await app.register(webhooksPlugin, { storageDir, ...(options.webhooks && { webhooks: options.webhooks }), log, redact: redactor.job });
  await app.register(jobUploadsPlugin, { storageDir, store, log });
  if (options.worker !== false) {
    const concurrency = options.concurrency === 'auto' ? concurrencyFromBudget(registry, context.coordinator.resources) : options.concurrency;
    const worker = { ...(concurrency !== undefined && { concurrency }), ...(typeof options.worker === 'object' ? options.worker : {}) };
    await app.register(workerPlugin, { store, coordinator: context.coordinator, log, worker, shutdownGraceMs: options.shutdownGraceMs ?? 0 });
  }
  app.addHook('preClose', async () => {
    // (after the worker's stop) requests still being answered get a few seconds; a client that never
    // reads its answer must not hold the shutdown forever
    const force = setTimeout(() => app.server.closeAllConnections(), options.closeConnectionsAfterMs ?? 5_000);
    force.unref();
    app.server.once('close', () => clearTimeout(force));
  });

  await app.register(routesPlugin, { context, storageDir, redactor, log, streams, eventsIntervalMs, uploadLimits });
  return app;
}

interface RoutesOptions {
  context: ServerContext;
  storageDir: string;
  redactor: Redactor;
  log: Logger;
  streams: Set<() => void>;
  eventsIntervalMs: number;
  uploadLimits: Partial<UploadLimits>;
}

/** Every route (plugin avatar-routes), over the subsystems it uses. */
const routesPlugin = fp<RoutesOptions>(async (app, options) => {
  const { context, storageDir, redactor, log } = options;
  const { store, registry } = context;
  const submitStore = withSubmitHooks(store, {
    before: (params) => {
      // the settings are checked now (JSON and form submits alike), so a bad one fails here, not in the worker
      parsePipelineConfig(params.config);
      app.avatarWebhooks.checkParams(params);
    },
    after: (job) => app.avatarFinishes.track(job.jobId),
  });
  const getJob = async (id: string): Promise<Job> => {
    const job = await store.get(id);
    if (!job) throw new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id });
    return job;
  };
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const routes: RouteContext = {
    store: submitStore, coordinator: context.coordinator, redact: redactor, registry, storageDir, log,
    metrics: app.avatarMetrics, streams: options.streams, eventsIntervalMs: options.eventsIntervalMs, getJob,
  };
  // one Uploads for every multipart route (avatars, voices, jobs), with the server's limits
  const uploads = installUploads(api, { storageDir, limits: options.uploadLimits, log });
  registerJobRoutes(api, routes);
  registerEventRoutes(api, routes);
  registerSystemRoutes(api, routes, app);
  registerPageRoutes(api, routes);
  registerAssetRoutes(api, routes, { coordinator: context.coordinator, uploads });
}, { name: 'avatar-routes', dependencies: ['avatar-auth', 'avatar-metrics', 'avatar-finishes', 'avatar-webhooks', 'avatar-job-uploads'], fastify: '5.x' });

export interface StartOptions extends ServerOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** default 8080; 0 picks a free port */
  port?: number;
  /** close gracefully on SIGTERM and SIGINT (default false) */
  handleSignals?: boolean;
}

export interface RunningServer {
  app: FastifyInstance;
  /** e.g. http://127.0.0.1:8080 */
  url: string;
  close(): Promise<void>;
  /** resolves once the server has closed (a signal or close()) */
  closed: Promise<void>;
}

/**
 * Builds and listens. Refuses to listen beyond loopback without API keys. On SIGTERM/SIGINT
 * (with handleSignals): stops taking requests, stops the worker (a running job goes back to the
 * queue), closes. A second signal ends the process at once.
 */
export async function startServer(options: StartOptions): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const apiKeys = resolveApiKeys(options);
  assertSafeListen(host, apiKeys);
  const app = await buildServer({ ...options, host, apiKeys });
  // what killed runs left in the storage folder goes before the first request
  await options.context.coordinator.sweepLeftovers();
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  app.addHook('onClose', async () => resolveClosed());
  await app.listen({ host, port: options.port ?? 8080 });
  const address = app.server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= app.close());
  if (options.handleSignals) {
    const onSignal = (): void => {
      if (closing) process.exit(130);
      void close();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    void closed.then(() => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    });
  }
  return { app, url: `http://${shownHost}:${address.port}`, close, closed };
}
