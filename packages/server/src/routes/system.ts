import { randomBytes } from 'node:crypto';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { STAGE_KINDS, checkPlugin, describePlugins } from '@avatar/core';
import type { JobStore, StageKind } from '@avatar/core';
import { PluginSchema, ReadySchema, StatsSchema, errorResponses } from '../schemas.js';
import type { Api, RouteContext } from './context.js';

const READY_CACHE_MS = 10_000;
const CHECK_TIMEOUT_MS = 5_000;

interface ReadyReport {
  ready: boolean;
  storage: { ok: boolean; detail: string };
  queue: { ok: boolean; detail: string };
  plugins: { stage: string; name: string; ok: boolean; detail: string }[];
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

/** A store on a server (Redis) answers; the file store is the storage folder, checked above. */
async function queueAnswers(store: JobStore): Promise<{ ok: boolean; detail: string }> {
  if (!store.ping) return { ok: true, detail: 'the file store in the storage folder' };
  try {
    await store.ping();
    return { ok: true, detail: 'answers' };
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : String(error) };
  }
}

/** Stats, health, readiness, metrics and the OpenAPI document. */
export function registerSystemRoutes(api: Api, ctx: RouteContext, app: FastifyInstance): void {
  const { store, registry, storageDir, metrics } = ctx;

  api.get('/v1/stats', {
    schema: { summary: 'counts by status and type, mean run time per type', response: { 200: StatsSchema, ...errorResponses(401) } },
  }, async () => store.stats());

  api.get('/healthz', {
    schema: { summary: 'the process is alive (no key needed)', response: { 200: Type.Object({ ok: Type.Boolean() }) } },
  }, async () => ({ ok: true }));

  let readyCache: { at: number; report: ReadyReport } | undefined;
  const pluginsCache = new Map<string, { at: number; list: Awaited<ReturnType<typeof describePlugins>> }>();
  api.get('/readyz', {
    schema: { summary: 'storage writable, the job store answering and every engine usable', response: { 200: ReadySchema, 503: ReadySchema, ...errorResponses(401) } },
  }, async (_request, reply) => {
    if (!readyCache || Date.now() - readyCache.at > READY_CACHE_MS) {
      const storage = await storageWritable(storageDir);
      const queue = await queueAnswers(store);
      const plugins = await Promise.all(registry.list().map(async ({ plugin }) => {
        const check = await checkPlugin(plugin, { timeoutMs: CHECK_TIMEOUT_MS });
        return { stage: plugin.stage, name: plugin.name, ok: check.ok, detail: check.detail };
      }));
      readyCache = { at: Date.now(), report: { ready: storage.ok && queue.ok && plugins.every((p) => p.ok), storage, queue, plugins } };
    }
    const { report } = readyCache;
    return reply.code(report.ready ? 200 : 503).send(report);
  });

  api.get('/v1/plugins', {
    schema: {
      summary: 'the installed engines for each stage: package, options, licences, whether each can run here',
      querystring: Type.Object({ stage: Type.Optional(Type.Union(STAGE_KINDS.map((s) => Type.Literal(s)))) }),
      response: { 200: Type.Array(PluginSchema), ...errorResponses(400, 401) },
    },
  }, async (request) => {
    const { stage } = request.query as { stage?: StageKind };
    // each engine's check may start programs: answered from the last look for 10 s, as /readyz is
    const key = stage ?? '*';
    const kept = pluginsCache.get(key);
    if (kept && Date.now() - kept.at < READY_CACHE_MS) return kept.list;
    const list = await describePlugins(registry, { ...(stage && { stage }), check: true, defaults: ctx.coordinator.engineDefaults });
    pluginsCache.set(key, { at: Date.now(), list });
    return list;
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

}
