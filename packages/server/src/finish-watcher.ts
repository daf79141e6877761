import fp from 'fastify-plugin';
import { isFinished } from '@avatar/core';
import type { Job, JobParams, JobStore, Logger } from '@avatar/core';

// Noticing jobs that end, whoever runs them (this server's worker, `avatar worker` processes, workers
// on other machines sharing the store): webhooks, stage metrics and the clean-up of uploaded files
// listen here. The `avatar-finishes` plugin gives the server one watcher (app.avatarFinishes).

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error)).slice(0, 300);

export interface FinishWatcherOptions {
  store: JobStore;
  log: Logger;
  /** how often tracked unfinished jobs are looked at, ms (default 1000) */
  pollIntervalMs?: number;
  /** how often the whole store is listed to find jobs submitted elsewhere, ms (default 30 000) */
  scanIntervalMs?: number;
  /** most jobs read per poll, so a long queue costs a bounded amount per second (default 50) */
  maxReadsPerPoll?: number;
}

/** `fresh`: it finished while this process watched (false: it had finished before the first scan). */
export type FinishListener = (job: Job, fresh: boolean) => void | Promise<void>;

/**
 * Notices jobs finishing, whoever runs them (this process or `avatar worker` processes on the same
 * storage). Jobs submitted here are tracked from the start and read one by one, a bounded number
 * per poll; a slower full listing picks up jobs submitted elsewhere.
 */
export class FinishWatcher {
  private readonly store: JobStore;
  private readonly log: Logger;
  private readonly pollMs: number;
  private readonly scanMs: number;
  private readonly maxReads: number;
  private readonly tracked = new Set<string>();
  private finished = new Set<string>();
  private readonly listeners: FinishListener[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private scanned = false;
  private busy: Promise<void> = Promise.resolve();

  constructor(options: FinishWatcherOptions) {
    this.store = options.store;
    this.log = options.log;
    this.pollMs = options.pollIntervalMs ?? 1000;
    this.scanMs = options.scanIntervalMs ?? 30_000;
    this.maxReads = options.maxReadsPerPoll ?? 50;
  }

  onFinish(listener: FinishListener): void {
    this.listeners.push(listener);
  }

  /** A job just submitted (or claimed) here: watch it from now on. */
  track(jobId: string): void {
    if (!this.finished.has(jobId)) this.tracked.add(jobId);
  }

  /** Look at one job now (the in-process worker says it ended). */
  notify(jobId: string): void {
    this.track(jobId);
    this.serial(() => this.check([jobId]));
  }

  async start(): Promise<void> {
    await this.serial(() => this.scan());
    this.pollTimer = setInterval(() => this.serial(() => this.poll()), this.pollMs);
    this.scanTimer = setInterval(() => this.serial(() => this.scan()), this.scanMs);
    this.pollTimer.unref();
    this.scanTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.scanTimer);
    await this.busy;
  }

  /** one look at a time: a slow store never gets overlapping scans */
  private serial(fn: () => Promise<void>): Promise<void> {
    this.busy = this.busy.then(async () => {
      if (this.stopped) return;
      try {
        await fn();
      } catch (error) {
        this.log.warn('watching jobs: reading the store failed', { reason: errorText(error) });
      }
    });
    return this.busy;
  }

  private async emit(job: Job, fresh: boolean): Promise<void> {
    for (const listener of this.listeners) {
      try {
        await listener(job, fresh);
      } catch (error) {
        this.log.error(`handling the end of ${job.jobId} failed`, { reason: errorText(error) });
      }
    }
  }

  private async scan(): Promise<void> {
    const jobs = await this.store.list();
    const finishedNow = new Set<string>();
    for (const job of jobs) {
      if (isFinished(job.status)) {
        finishedNow.add(job.jobId);
        if (!this.finished.has(job.jobId)) {
          this.tracked.delete(job.jobId);
          this.finished.add(job.jobId);
          await this.emit(job, this.scanned);
        }
      } else {
        this.tracked.add(job.jobId);
      }
    }
    // forget deleted jobs, so memory follows the store
    for (const id of this.finished) if (!finishedNow.has(id) && !this.tracked.has(id)) this.finished.delete(id);
    this.scanned = true;
  }

  private cursor = 0;

  private async poll(): Promise<void> {
    if (this.tracked.size === 0) return;
    const ids = [...this.tracked];
    const count = Math.min(this.maxReads, ids.length);
    const start = this.cursor % ids.length;
    const batch = Array.from({ length: count }, (_, i) => ids[(start + i) % ids.length]!);
    this.cursor = start + count;
    await this.check(batch);
  }

  private async check(ids: string[]): Promise<void> {
    for (const id of ids) {
      const job = await this.store.get(id);
      if (!job) {
        this.tracked.delete(id);
      } else if (isFinished(job.status) && !this.finished.has(id)) {
        this.tracked.delete(id);
        this.finished.add(id);
        await this.emit(job, true);
      }
    }
  }
}

/**
 * The store the routes use: every submit (JSON or form) passes `before` (webhook checks) and the
 * new job goes to `after` (watched from the start). Everything else is the store itself.
 */
export function withSubmitHooks(store: JobStore, hooks: { before(params: JobParams): void; after(job: Job): void }): JobStore {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'submit') {
        return async (jobType: Job['jobType'], params: JobParams): Promise<Job> => {
          hooks.before(params);
          const job = await target.submit(jobType, params);
          hooks.after(job);
          return job;
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the server's finish watcher (plugin avatar-finishes) */
    avatarFinishes: FinishWatcher;
  }
}

/**
 * One FinishWatcher for the server: started once every plugin is ready (its first look at the store
 * may already find finished jobs for the listeners), stopped on close.
 */
export const finishesPlugin = fp<FinishWatcherOptions>(async (app, options) => {
  const watcher = new FinishWatcher(options);
  app.decorate('avatarFinishes', watcher);
  app.addHook('onReady', async () => watcher.start());
  app.addHook('onClose', async () => watcher.stop());
}, { name: 'avatar-finishes', fastify: '5.x' });
