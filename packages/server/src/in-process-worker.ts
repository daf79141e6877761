import fp from 'fastify-plugin';
import { Worker, createJobHandlers } from '@avatar/core';
import type { JobStore, Logger, PipelineCoordinator, WorkerOptions } from '@avatar/core';

declare module 'fastify' {
  interface FastifyInstance {
    /** the worker that runs jobs in the server's own process (plugin avatar-worker) */
    avatarWorker: Worker;
  }
}

export interface InProcessWorkerOptions {
  store: JobStore;
  coordinator: PipelineCoordinator;
  log: Logger;
  worker: Omit<WorkerOptions, 'store' | 'handlers' | 'log'>;
  /** how long a running job may finish on shutdown before it goes back to the queue, ms */
  shutdownGraceMs: number;
}

/**
 * Runs jobs in the server's process (plugin avatar-worker): from when the server is ready until it
 * closes, when a running job gets the grace period and then goes back to the queue. A job submitted to
 * this server is claimed at once, and a job it ends is looked at by the finish watcher at once, rather
 * than at their next polls.
 */
export const workerPlugin = fp<InProcessWorkerOptions>(async (app, options) => {
  const { log } = options;
  const worker = new Worker({ ...options.worker, store: options.store, handlers: createJobHandlers(options.coordinator), log });
  app.decorate('avatarWorker', worker);
  worker.on((e) => {
    if (e.type === 'completed' || e.type === 'failed' || e.type === 'cancelled') app.avatarFinishes.notify(e.job.jobId);
  });
  let run: Promise<unknown> | undefined;
  app.addHook('onReady', async () => {
    run = worker.run().catch((error: unknown) => log.error('the in-process worker stopped', { reason: String(error) }));
  });
  // a job submitted here is claimed at once, not at the worker's next poll (up to pollMs later)
  app.addHook('onResponse', async (request, reply) => {
    if (request.method === 'POST' && request.routeOptions.url === '/v1/jobs' && reply.statusCode === 202) worker.jobSubmitted();
  });
  app.addHook('preClose', async () => {
    await worker.stop({ graceMs: options.shutdownGraceMs });
    await run;
  });
}, { name: 'avatar-worker', dependencies: ['avatar-finishes'], fastify: '5.x' });
