import { createReadStream } from 'node:fs';
import { realpath, stat, unlink, writeFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import type { FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { AvatarError, Worker, checkJobParams, createJobHandlers, isFinished, silentLogger } from '@avatar/core';
import type { Job, JobParams, JobStore, Logger, PipelineCoordinator, PluginRegistry, WorkerOptions } from '@avatar/core';
import { ApiKeyChecker, assertSafeListen, parseApiKeys } from './auth.js';
import { contentTypeFor, parseRange } from './files.js';
import { errorBody, installErrorHandlers } from './http-errors.js';
import { createMetrics } from './metrics.js';
import {
  ErrorBodySchema, JobIdParamsSchema, JobSchema, ListQuerySchema, ReadySchema, StatsSchema, SubmitBodySchema, errorResponses,
} from './schemas.js';

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
  /** bearer keys; default from AVATAR_API_KEYS. When any is set, every route but /healthz needs one. */
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
}

/** A streamed file; the serialiser never sees it, the schema documents it. */
const FileSchema = (description: string) => Type.Unsafe<NodeJS.ReadableStream>({ type: 'string', format: 'binary', description });

const JSON_TYPE = 'application/json; charset=utf-8';
const READY_CACHE_MS = 10_000;
const CHECK_TIMEOUT_MS = 5_000;

interface ReadyReport {
  ready: boolean;
  storage: { ok: boolean; detail: string };
  plugins: { stage: string; name: string; ok: boolean; detail: string }[];
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function storageWritable(dir: string): Promise<{ ok: boolean; detail: string }> {
  const probe = join(dir, `.readyz-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(probe, 'ok');
    await unlink(probe);
    return { ok: true, detail: 'writable' };
  } catch (error) {
    return { ok: false, detail: `not writable (${(error as NodeJS.ErrnoException).code ?? 'error'})` };
  }
}

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
  const keys = options.apiKeys ?? parseApiKeys(process.env.AVATAR_API_KEYS);
  if (options.host !== undefined) assertSafeListen(options.host, keys);
  const auth = new ApiKeyChecker(keys);

  const app = Fastify({
    logger: false,
    bodyLimit,
    routerOptions: { maxParamLength: 200 },
    // refuse rather than strip unknown fields, and never turn "12" into 12: a wrong type is an error
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    return503OnClosing: true,
  });
  installErrorHandlers(app, { bodyLimit, log });
  app.addSchema(ErrorBodySchema);

  const metrics = createMetrics(store);
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequests.inc({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });

  if (auth.enabled) {
    app.addHook('onRequest', async (request, reply) => {
      if (request.url === '/healthz' || request.url.startsWith('/healthz?')) return;
      if (auth.check(request.headers.authorization)) return;
      // no detail: a caller learns neither whether a key was close nor which part was wrong
      return reply.code(401).header('www-authenticate', 'Bearer').type(JSON_TYPE).send(errorBody(new AvatarError('AVATAR_ERR_HTTP_UNAUTHORIZED')));
    });
  }

  await app.register(swagger, {
    openapi: {
      info: { title: 'avatar HTTP API', version: '0.1.0', description: 'Submit jobs, follow their progress, download results.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(auth.enabled && { security: [{ bearer: [] }] }),
    },
  });

  // ---- the in-process worker ----
  let worker: Worker | undefined;
  let workerRun: Promise<unknown> | undefined;
  if (options.worker !== false) {
    const workerOptions = typeof options.worker === 'object' ? options.worker : {};
    worker = new Worker({ ...workerOptions, store, handlers: createJobHandlers(context.coordinator), log });
    app.addHook('onReady', async () => {
      workerRun = worker?.run().catch((error: unknown) => log.error('the in-process worker stopped', { reason: String(error) }));
    });
  }

  // ---- open event streams, ended on shutdown so close() does not wait for clients ----
  const streams = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const end of [...streams]) end();
    if (worker) {
      // a running job gets the grace period, then goes back to the queue for the next start
      await worker.stop({ graceMs: options.shutdownGraceMs ?? 0 });
      await workerRun;
    }
  });

  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const notFound = (id: string): AvatarError => new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id });
  const getJob = async (id: string): Promise<Job> => {
    const job = await store.get(id);
    if (!job) throw notFound(id);
    return job;
  };

  api.post('/v1/jobs', {
    schema: {
      summary: 'queue a job',
      body: SubmitBodySchema,
      response: { 202: JobSchema, ...errorResponses(400, 401, 413, 415) },
    },
  }, async (request, reply) => {
    const { jobType } = request.body;
    const params = request.body.params as JobParams;
    checkJobParams(jobType, params);
    const job = await store.submit(jobType, params);
    return reply.code(202).header('location', `/v1/jobs/${job.jobId}`).send(job);
  });

  api.get('/v1/jobs', {
    schema: {
      summary: 'list jobs, newest first',
      querystring: ListQuerySchema,
      response: { 200: Type.Object({ jobs: Type.Array(JobSchema) }), ...errorResponses(400, 401) },
    },
  }, async (request) => {
    const { status, type, limit } = request.query;
    const jobs = await store.list({ ...(status && { status }), ...(type && { type }), limit: limit ? Number(limit) : 50 });
    return { jobs };
  });

  api.get('/v1/jobs/:id', {
    schema: { summary: 'one job', params: JobIdParamsSchema, response: { 200: JobSchema, ...errorResponses(400, 401, 404) } },
  }, async (request) => getJob(request.params.id));

  api.delete('/v1/jobs/:id', {
    schema: {
      summary: 'cancel a job: a pending one at once, a running one at its next checkpoint',
      params: JobIdParamsSchema,
      response: { 200: Type.Object({ outcome: Type.Union([Type.Literal('cancelled'), Type.Literal('requested')]), job: JobSchema }), ...errorResponses(400, 401, 404, 409) },
    },
  }, async (request) => {
    const { job, outcome } = await store.cancel(request.params.id);
    return { outcome, job };
  });

  api.get('/v1/jobs/:id/events', {
    schema: {
      summary: 'Server-Sent Events: the job now, then its progress and stage changes, ending with its final state',
      params: JobIdParamsSchema,
      response: { 200: Type.String({ description: 'text/event-stream' }), ...errorResponses(400, 401, 404) },
    },
  }, async (request, reply) => {
    const first = await getJob(request.params.id);
    reply.hijack();
    const raw: ServerResponse = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const send = (event: string, data: unknown): void => {
      raw.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      streams.delete(end);
      raw.end();
    };
    streams.add(end);
    request.raw.on('close', end);
    raw.on('close', end);

    let last = first;
    send('state', first);
    if (isFinished(first.status)) {
      send('end', first);
      end();
      return;
    }
    let sinceWrite = 0;
    const poll = async (): Promise<void> => {
      if (ended) return;
      try {
        const job = await store.get(first.jobId);
        if (ended) return;
        if (!job) {
          send('error', errorBody(notFound(first.jobId)).error);
          end();
          return;
        }
        if (job.stage !== last.stage) send('stage', { jobId: job.jobId, stage: job.stage, previous: last.stage });
        if (job.status !== last.status || job.progress !== last.progress || job.stage !== last.stage) {
          send('progress', { jobId: job.jobId, status: job.status, progress: job.progress, stage: job.stage });
          sinceWrite = 0;
        } else if ((sinceWrite += eventsIntervalMs) >= 15_000) {
          // a comment now and then keeps proxies from closing a quiet stream
          raw.write(': keep-alive\n\n');
          sinceWrite = 0;
        }
        last = job;
        if (isFinished(job.status)) {
          send('end', job);
          end();
          return;
        }
      } catch (error) {
        log.warn(`events for ${first.jobId}: reading the job failed`, { reason: String(error) });
      }
      timer = setTimeout(() => void poll(), eventsIntervalMs);
    };
    timer = setTimeout(() => void poll(), eventsIntervalMs);
  });

  api.get('/v1/jobs/:id/result', {
    schema: {
      summary: 'the output file of a completed job; Range requests answered with 206',
      params: JobIdParamsSchema,
      response: { 200: FileSchema('the file'), 206: FileSchema('part of the file'), ...errorResponses(400, 401, 404, 409, 416) },
    },
  }, async (request, reply) => {
    const job = await getJob(request.params.id);
    const id = job.jobId;
    if (!isFinished(job.status)) throw new AvatarError('AVATAR_ERR_JOB_NOT_FINISHED', { id, status: job.status });
    if (job.status !== 'completed') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: `it ended ${job.status}` });
    const output = job.result?.outputPath;
    if (typeof output !== 'string' || output === '') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'it produced no file' });
    // only files inside the storage folder are served, links followed first
    let file: string;
    let size: number;
    try {
      file = await realpath(output);
      const root = await realpath(storageDir);
      if (!file.startsWith(root + sep)) throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its file is outside the storage folder' });
      const info = await stat(file);
      if (!info.isFile()) throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its output is not a file' });
      size = info.size;
    } catch (error) {
      if (error instanceof AvatarError) throw error;
      throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its file is no longer there' });
    }
    const ext = extname(file).toLowerCase().replace(/[^.a-z0-9]/g, '');
    void reply
      .header('content-type', contentTypeFor(file))
      .header('accept-ranges', 'bytes')
      .header('content-disposition', `attachment; filename="${id}${ext}"`)
      .header('last-modified', new Date((await stat(file)).mtimeMs).toUTCString());
    const range = parseRange(request.headers.range, size);
    if (range === 'unsatisfiable') {
      void reply.header('content-range', `bytes */${size}`);
      throw new AvatarError('AVATAR_ERR_HTTP_RANGE', { size });
    }
    if (range) {
      return reply
        .code(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1)
        .send(createReadStream(file, { start: range.start, end: range.end }));
    }
    return reply.header('content-length', size).send(createReadStream(file));
  });

  api.get('/v1/stats', {
    schema: { summary: 'counts by status and type, mean run time per type', response: { 200: StatsSchema, ...errorResponses(401) } },
  }, async () => store.stats());

  api.get('/healthz', {
    schema: { summary: 'the process is alive (no key needed)', response: { 200: Type.Object({ ok: Type.Boolean() }) } },
  }, async () => ({ ok: true }));

  let readyCache: { at: number; report: ReadyReport } | undefined;
  api.get('/readyz', {
    schema: { summary: 'storage writable and every engine usable', response: { 200: ReadySchema, 503: ReadySchema, ...errorResponses(401) } },
  }, async (_request, reply) => {
    if (!readyCache || Date.now() - readyCache.at > READY_CACHE_MS) {
      const storage = await storageWritable(storageDir);
      const plugins = await Promise.all(registry.list().map(async ({ plugin }) => {
        try {
          const check = plugin.check ? await withTimeout(plugin.check(), CHECK_TIMEOUT_MS, `${plugin.stage}/${plugin.name} check`) : { ok: true, detail: 'no check offered' };
          return { stage: plugin.stage, name: plugin.name, ok: check.ok, detail: check.detail };
        } catch (error) {
          return { stage: plugin.stage, name: plugin.name, ok: false, detail: `check failed: ${(error as Error).message}` };
        }
      }));
      readyCache = { at: Date.now(), report: { ready: storage.ok && plugins.every((p) => p.ok), storage, plugins } };
    }
    const { report } = readyCache;
    return reply.code(report.ready ? 200 : 503).send(report);
  });

  api.get('/metrics', {
    schema: { summary: 'Prometheus metrics: jobs by status, queue depth, requests', response: { 200: Type.String(), ...errorResponses(401) } },
  }, async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });

  api.get('/openapi.json', {
    schema: { summary: 'this API as an OpenAPI 3 document', response: { 200: Type.Unknown(), ...errorResponses(401) } },
  }, async () => app.swagger());

  return app;
}

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
  const apiKeys = options.apiKeys ?? parseApiKeys(process.env.AVATAR_API_KEYS);
  assertSafeListen(host, apiKeys);
  const app = await buildServer({ ...options, host, apiKeys });
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
