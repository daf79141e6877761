import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Job, JobStore, Logger, PipelineCoordinator, PluginRegistry } from '@avatar/core';
import type { ServerMetrics } from '../metrics.js';
import type { Redactor } from '../redact.js';

/** The fastify instance with TypeBox schemas giving request and reply types. */
export type Api = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

/** What every group of routes shares; built once by buildServer. */
export interface RouteContext {
  store: JobStore;
  /** checks a job's inputs before it is queued, as its run would */
  coordinator: PipelineCoordinator;
  registry: PluginRegistry;
  /** absolute */
  storageDir: string;
  log: Logger;
  metrics: ServerMetrics;
  /** open event streams, each with its way to end; all ended on shutdown */
  streams: Set<() => void>;
  eventsIntervalMs: number;
  /** the job, or AVATAR_ERR_JOB_NOT_FOUND */
  getJob(id: string): Promise<Job>;
  /** takes server paths out of what clients see; replies are redacted by a hook, raw streams call it */
  redact: Redactor;
}
