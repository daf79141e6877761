import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import { Gauge } from 'prom-client';
import { AvatarError, isFinished } from '@avatar/core';
import type { Job } from '@avatar/core';
import { errorBody } from '../http-errors.js';
import { JobIdParamsSchema, errorResponses } from '../schemas.js';
import type { Api, RouteContext } from './context.js';

/** A comment goes to a stream that has had nothing for this long, so proxies keep it open. */
const KEEP_ALIVE_MS = 15_000;

/**
 * The one place a job becomes event data ('state' and 'end'). Today it is the job as it is (server paths
 * are taken out before, by the redactor); a field ever kept from clients would be dropped here.
 */
export function jobEventData(job: Job): unknown {
  return job;
}

const frame = (event: string, data: unknown): string => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** The part of a job the 'stage' and 'progress' events report. */
interface Seen {
  status: Job['status'];
  progress: number;
  stage: string | null;
}
const seenOf = (job: Job): Seen => ({ status: job.status, progress: job.progress, stage: job.stage });

/** One open stream. It holds no queue: only what it was last told, so a slow reader costs O(1). */
interface Client {
  raw: ServerResponse;
  told: Seen;
  /** its socket buffer is full: nothing more is written until 'drain', then only the latest */
  blocked: boolean;
  lastWriteAt: number;
  ended: boolean;
  end(): void;
}

/** One job's poller, shared by every stream on that job; gone with its last stream. */
interface Watcher {
  jobId: string;
  /** the latest state read */
  job: Job;
  clients: Set<Client>;
  timer: NodeJS.Timeout | undefined;
  stopped: boolean;
  /** frames of `job`, built once for all its clients, dropped when the job changes */
  frames: { state?: string; progress?: string; end?: string };
}

/**
 * GET /v1/jobs/:id/events: a job's progress as Server-Sent Events.
 *
 * However many clients follow a job, the store is read once per interval for it: one watcher per
 * job fans each change out to all of them. A client whose socket cannot keep up is skipped until
 * it drains, then sent the difference between what it was last told and the job now, so memory per
 * client stays bounded; 'end' is always written.
 */
export function registerEventRoutes(api: Api, ctx: RouteContext): void {
  const { store, log, streams, eventsIntervalMs, getJob } = ctx;
  // server paths never reach a client: the job is redacted before it becomes event data
  const eventData = (job: Job): unknown => jobEventData(ctx.redact.job(job));
  const watchers = new Map<string, Watcher>();
  let openStreams = 0;

  new Gauge({
    name: 'avatar_http_event_streams', help: 'open event streams', registers: [ctx.metrics.registry],
    collect() { this.set(openStreams); },
  });
  new Gauge({
    name: 'avatar_http_event_watchers', help: 'jobs being watched for event streams (one store read per interval each)', registers: [ctx.metrics.registry],
    collect() { this.set(watchers.size); },
  });

  const stateFrame = (w: Watcher): string => (w.frames.state ??= frame('state', eventData(w.job)));
  const endFrame = (w: Watcher): string => (w.frames.end ??= frame('end', eventData(w.job)));
  const progressFrame = (w: Watcher): string => {
    const { jobId, status, progress, stage } = w.job;
    return (w.frames.progress ??= frame('progress', { jobId, status, progress, stage }));
  };

  const write = (w: Watcher, client: Client, text: string): void => {
    client.lastWriteAt = Date.now();
    if (client.raw.write(text) || client.blocked) return;
    client.blocked = true;
    client.raw.once('drain', () => {
      client.blocked = false;
      if (!client.ended && !w.stopped) catchUp(w, client);
    });
  };

  /** Tells the client what changed since it was last told (several changes in between become one). */
  const catchUp = (w: Watcher, client: Client): void => {
    const job = w.job;
    const told = client.told;
    let text = '';
    if (job.stage !== told.stage) text += frame('stage', { jobId: job.jobId, stage: job.stage, previous: told.stage });
    if (job.status !== told.status || job.progress !== told.progress || job.stage !== told.stage) text += progressFrame(w);
    if (text === '') return;
    client.told = seenOf(job);
    write(w, client, text);
  };

  const stop = (w: Watcher): void => {
    w.stopped = true;
    clearTimeout(w.timer);
    if (watchers.get(w.jobId) === w) watchers.delete(w.jobId);
  };

  const poll = async (w: Watcher): Promise<void> => {
    let job: Job | undefined;
    try {
      job = await store.get(w.jobId);
    } catch (error) {
      if (!w.stopped) log.warn(`events for ${w.jobId}: reading the job failed`, { reason: String(error) });
      schedule(w);
      return;
    }
    if (w.stopped) return;
    if (!job) {
      const gone = frame('error', errorBody(new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id: w.jobId })).error);
      stop(w);
      for (const client of [...w.clients]) {
        client.raw.write(gone);
        client.end();
      }
      return;
    }
    const changed = job.status !== w.job.status || job.progress !== w.job.progress || job.stage !== w.job.stage;
    // any field may have changed (attempts, timestamps): frames are rebuilt from this read
    w.frames = {};
    w.job = job;
    if (isFinished(job.status)) {
      stop(w);
      // the end goes out whether or not the client keeps up: one frame, and the stream closes
      for (const client of [...w.clients]) {
        client.blocked = false;
        catchUp(w, client);
        client.raw.write(endFrame(w));
        client.end();
      }
      return;
    }
    const now = Date.now();
    for (const client of w.clients) {
      if (client.blocked) continue;
      if (changed) catchUp(w, client);
      else if (now - client.lastWriteAt >= KEEP_ALIVE_MS) write(w, client, ': keep-alive\n\n');
    }
    schedule(w);
  };

  const schedule = (w: Watcher): void => {
    if (!w.stopped) w.timer = setTimeout(() => void poll(w), eventsIntervalMs);
  };

  api.get('/v1/jobs/:id/events', {
    schema: {
      summary: 'Server-Sent Events: the job now, then its progress and stage changes, ending with its final state',
      params: JobIdParamsSchema,
      response: { 200: Type.String({ description: 'text/event-stream' }), ...errorResponses(400, 401, 404) },
    },
  }, async (request, reply) => {
    const id = request.params.id;
    // a job already watched is as fresh as one more read would be
    const first = watchers.get(id)?.job ?? await getJob(id);
    reply.hijack();
    const raw: ServerResponse = reply.raw;
    // a client gone while the job was read has already had its 'close': nothing would ever end its stream
    if (raw.destroyed || request.raw.destroyed || request.raw.socket?.destroyed) {
      if (!raw.destroyed) raw.destroy();
      return;
    }
    // headers set by hooks (security, CORS) still go out, as on every other reply
    const fromHooks = Object.entries(reply.getHeaders()).filter((e): e is [string, string | number | string[]] => e[1] !== undefined);
    raw.writeHead(200, {
      ...Object.fromEntries(fromHooks),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });

    if (isFinished(first.status)) {
      raw.end(frame('state', eventData(first)) + frame('end', eventData(first)));
      return;
    }

    let w = watchers.get(id);
    if (!w) {
      w = { jobId: id, job: first, clients: new Set(), timer: undefined, stopped: false, frames: {} };
      watchers.set(id, w);
      schedule(w);
    }
    const watcher = w;
    const client: Client = {
      raw,
      told: seenOf(first),
      blocked: false,
      lastWriteAt: 0,
      ended: false,
      end: () => {
        if (client.ended) return;
        client.ended = true;
        openStreams--;
        streams.delete(client.end);
        watcher.clients.delete(client);
        if (watcher.clients.size === 0) stop(watcher);
        raw.end();
      },
    };
    openStreams++;
    streams.add(client.end);
    raw.on('close', client.end);
    raw.on('error', client.end);
    watcher.clients.add(client);
    write(watcher, client, first === watcher.job ? stateFrame(watcher) : frame('state', eventData(first)));
  });
}
