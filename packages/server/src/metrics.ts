import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { JOB_STATUSES } from '@avatar/core';
import type { Job, JobStore } from '@avatar/core';

export interface ServerMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  stageSeconds: Histogram<'stage'>;
  jobSeconds: Histogram<'type' | 'status'>;
  /** records the stage timings and run time of a job that just finished */
  observeFinished(job: Job): void;
}

// pipeline stages run from well under a second (loading a profile) to many minutes (encoding)
const SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/**
 * A registry of its own (not prom-client's global one), so several servers in one process never
 * share or clash over metrics. Job figures are read from the store when scraped.
 */
export function createMetrics(store: JobStore): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'avatar_' });
  new Gauge({
    name: 'avatar_jobs',
    help: 'jobs in the store by status',
    labelNames: ['status'] as const,
    registers: [registry],
    async collect() {
      const stats = await store.stats();
      for (const status of JOB_STATUSES) this.set({ status }, stats.byStatus[status]);
    },
  });
  new Gauge({
    name: 'avatar_queue_depth',
    help: 'jobs waiting for a worker',
    registers: [registry],
    async collect() {
      this.set((await store.stats()).byStatus.pending);
    },
  });
  const httpRequests = new Counter({
    name: 'avatar_http_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const stageSeconds = new Histogram({
    name: 'avatar_stage_duration_seconds',
    help: 'wall time of each pipeline stage in finished jobs',
    labelNames: ['stage'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const jobSeconds = new Histogram({
    name: 'avatar_job_duration_seconds',
    help: 'run time (start to end) of finished jobs',
    labelNames: ['type', 'status'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [registry],
  });
  const observeFinished = (job: Job): void => {
    // the coordinator's stage reports, as the job handlers store them in the result
    const stages = job.result?.stages;
    if (Array.isArray(stages)) {
      for (const s of stages) {
        if (s === null || typeof s !== 'object' || Array.isArray(s)) continue;
        if (typeof s.stage === 'string' && typeof s.wallSeconds === 'number' && Number.isFinite(s.wallSeconds) && s.wallSeconds >= 0) {
          stageSeconds.observe({ stage: s.stage }, s.wallSeconds);
        }
      }
    }
    if (job.startedAt && job.completedAt) {
      const seconds = (Date.parse(job.completedAt) - Date.parse(job.startedAt)) / 1000;
      if (Number.isFinite(seconds) && seconds >= 0) jobSeconds.observe({ type: job.jobType, status: job.status }, seconds);
    }
  };
  return { registry, httpRequests, stageSeconds, jobSeconds, observeFinished };
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the server's Prometheus metrics (plugin avatar-metrics) */
    avatarMetrics: ServerMetrics;
  }
}

/** Request counts by route and status, and the timings of every job that finishes (plugin avatar-metrics). */
export const metricsPlugin = fp<{ store: JobStore }>(async (app, { store }) => {
  const metrics = createMetrics(store);
  app.decorate('avatarMetrics', metrics);
  app.addHook('onResponse', async (request, reply) => {
    metrics.httpRequests.inc({ method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });
  // only jobs that ended while this server watched: a restart does not count old ones again
  app.avatarFinishes.onFinish((job, fresh) => {
    if (fresh) metrics.observeFinished(job);
  });
}, { name: 'avatar-metrics', dependencies: ['avatar-finishes'], fastify: '5.x' });
