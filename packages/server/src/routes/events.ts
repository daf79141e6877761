import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import { AvatarError, isFinished } from '@avatar/core';
import { errorBody } from '../http-errors.js';
import { JobIdParamsSchema, errorResponses } from '../schemas.js';
import type { Api, RouteContext } from './context.js';

/** GET /v1/jobs/:id/events: a job's progress as Server-Sent Events. */
export function registerEventRoutes(api: Api, ctx: RouteContext): void {
  const { store, log, streams, eventsIntervalMs, getJob } = ctx;
  const notFound = (id: string): AvatarError => new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id });

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

}
