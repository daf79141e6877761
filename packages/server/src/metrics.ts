import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { JOB_STATUSES } from '@avatar/core';
import type { JobStore } from '@avatar/core';

export interface ServerMetrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
}

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
  return { registry, httpRequests };
}
