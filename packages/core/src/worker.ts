import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AvatarError, isAvatarError, toAvatarError } from './errors.js';
import type { Job, JobResult, JobType } from './jobs.js';
import { silentLogger, type Logger } from './log.js';
import type { JobStore } from './store/types.js';

export interface JobContext {
  job: Job;
  /** aborts with reason 'cancelled', 'shutdown' or 'lease-lost' */
  signal: AbortSignal;
  /** reports progress (0..1) and the current stage; writes are throttled, stage changes always written */
  progress(fraction: number, stage: string | null): void;
  log: Logger;
  workerId: string;
}

export type JobHandler = (ctx: JobContext) => Promise<JobResult>;
export type JobHandlers = Partial<Record<JobType, JobHandler>>;

export interface WorkerOptions {
  store: JobStore;
  handlers: JobHandlers;
  /** default `${hostname}-${pid}-<4 hex>` */
  workerId?: string;
  /** jobs run at once (default 1) */
  concurrency?: number;
  /** claim lease, ms (default 30 000) */
  leaseMs?: number;
  /** lease renewal period, ms (default leaseMs / 6) */
  heartbeatMs?: number;
  /** wait between looks at an empty queue, ms (default 500) */
  pollMs?: number;
  /** at most one progress write per job per this many ms (default 250); stage changes always go through */
  progressIntervalMs?: number;
  /** how long an aborted handler may take to stop before the job is handed on, ms (default 10 000) */
  abortGraceMs?: number;
  log?: Logger;
}

export type WorkerEvent =
  | { type: 'claimed' | 'completed' | 'failed' | 'cancelled' | 'released'; job: Job }
  | { type: 'progress'; job: Job; progress: number; stage: string | null }
  | { type: 'idle' };

export interface WorkerRunSummary {
  completed: number;
  failed: number;
  cancelled: number;
  released: number;
  /**
   * With `once`: why the last claim failed, when it did (a full disk, a store gone away); the jobs
   * it could not claim are still queued.
   */
  claimError?: AvatarError;
}

/** Why a running job's signal aborted. */
export type AbortReason = 'cancelled' | 'shutdown' | 'lease-lost';

interface Running {
  job: Job;
  controller: AbortController;
  done: Promise<void>;
}

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
}

/**
 * Takes jobs from a JobStore and runs the handler for each job type, holding the claim with
 * heartbeats, throttling progress writes and honouring cancellation, lease loss and shutdown.
 */
export class Worker {
  readonly workerId: string;
  private readonly store: JobStore;
  private readonly handlers: JobHandlers;
  private readonly concurrency: number;
  private readonly leaseMs: number;
  private readonly heartbeatMs: number;
  private readonly pollMs: number;
  private readonly progressIntervalMs: number;
  private readonly abortGraceMs: number;
  private readonly log: Logger;
  private readonly listeners = new Set<(event: WorkerEvent) => void>();
  private readonly running = new Map<string, Running>();
  private summary: WorkerRunSummary = { completed: 0, failed: 0, cancelled: 0, released: 0 };
  private stopping = false;
  private runPromise: Promise<WorkerRunSummary> | undefined;
  /** resolves the loop's current wait early (a job finished, or stop was called) */
  private wake: (() => void) | undefined;
  private poked = false;

  constructor(options: WorkerOptions) {
    this.store = options.store;
    this.handlers = options.handlers;
    this.workerId = options.workerId ?? defaultWorkerId();
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? 1));
    this.leaseMs = options.leaseMs ?? 30_000;
    this.heartbeatMs = options.heartbeatMs ?? Math.max(1, Math.floor(this.leaseMs / 6));
    this.pollMs = options.pollMs ?? 500;
    this.progressIntervalMs = options.progressIntervalMs ?? 250;
    this.abortGraceMs = options.abortGraceMs ?? 10_000;
    this.log = options.log ?? silentLogger;
  }

  /** Subscribes to events; returns the unsubscribe function. */
  on(listener: (event: WorkerEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: WorkerEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (error) {
        this.log.warn('a worker event listener threw', { event: event.type, reason: String(error) });
      }
    }
  }

  /**
   * Claims and runs jobs until stop(); with `once`, until no job is pending and none is running.
   * Resolves with what this run did.
   */
  run(options: { once?: boolean } = {}): Promise<WorkerRunSummary> {
    if (this.runPromise) throw new Error('Worker.run is already running');
    this.stopping = false;
    this.poked = false;
    this.summary = { completed: 0, failed: 0, cancelled: 0, released: 0 };
    this.runPromise = this.loop(options.once ?? false).finally(() => {
      this.runPromise = undefined;
    });
    return this.runPromise;
  }

  private async loop(once: boolean): Promise<WorkerRunSummary> {
    let lastRecover = 0;
    let idle = false;
    let claimError: AvatarError | undefined;
    while (!this.stopping) {
      if (Date.now() - lastRecover >= this.leaseMs / 2) {
        lastRecover = Date.now();
        try {
          const ids = await this.store.recoverExpired();
          if (ids.length > 0) this.log.info(`took back ${ids.length} job(s) from lost workers`, { jobIds: ids });
        } catch (error) {
          this.log.warn('recovering expired claims failed', { reason: String(error) });
        }
      }
      let queueEmpty = false;
      while (!this.stopping && this.running.size < this.concurrency) {
        let job: Job | undefined;
        try {
          job = await this.store.claim(this.workerId, { leaseMs: this.leaseMs });
          if (claimError) this.log.warn('claiming jobs works again', { workerId: this.workerId });
          claimError = undefined;
        } catch (thrown) {
          // Said once per cause, not on every poll; the job stays queued and the next poll tries again.
          const error = toAvatarError(thrown, 'claim');
          if (claimError?.message !== error.message) {
            this.log.warn(`claiming a job failed: ${error.code}: ${error.message}. ${error.hint}`, { workerId: this.workerId });
          }
          claimError = error;
          queueEmpty = true;
          break;
        }
        if (!job) {
          queueEmpty = true;
          break;
        }
        if (this.stopping) {
          // stop() came while this claim was on its way: give the job straight back
          await this.store.release(job.jobId, this.workerId).catch((error: unknown) =>
            this.log.warn(`job ${job.jobId}: could not give it back on stop`, { jobId: job.jobId, reason: String(error) }),
          );
          break;
        }
        idle = false;
        this.start(job);
      }
      if (this.stopping) break;
      if (queueEmpty && this.running.size === 0) {
        if (once) break;
        if (!idle) this.emit({ type: 'idle' });
        idle = true;
      }
      // An empty queue is polled; with every slot busy the loop sleeps until a job ends, waking
      // now and then to take back claims of lost workers.
      await this.waitForWake(queueEmpty ? this.pollMs : Math.max(this.pollMs, this.leaseMs / 2));
    }
    await Promise.all([...this.running.values()].map((r) => r.done));
    return { ...this.summary, ...(once && claimError ? { claimError } : {}) };
  }

  /** A job was just submitted: look for it now rather than at the next poll. */
  jobSubmitted(): void {
    this.poke();
  }

  /** Ends the loop's current (or next) wait: a job ended or stop was called. */
  private poke(): void {
    this.poked = true;
    this.wake?.();
  }

  private waitForWake(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.poked) {
        this.poked = false;
        resolve();
        return;
      }
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        this.wake = undefined;
        this.poked = false;
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Stops claiming. Running jobs get `graceMs` to finish; then their signals abort with reason
   * 'shutdown' and the jobs go back to the queue. Resolves when run() has returned.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    this.stopping = true;
    this.poke();
    const all = (): Promise<unknown> => Promise.all([...this.running.values()].map((r) => r.done));
    const graceMs = options.graceMs ?? 0;
    if (this.running.size > 0 && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all(), new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    for (const r of this.running.values()) if (!r.controller.signal.aborted) r.controller.abort('shutdown' satisfies AbortReason);
    await all();
    await this.runPromise?.catch(() => undefined);
  }

  private start(job: Job): void {
    const controller = new AbortController();
    const entry: Running = { job, controller, done: Promise.resolve() };
    entry.done = this.execute(job, controller)
      .catch((error: unknown) => this.log.error(`job ${job.jobId}: the worker failed to record its outcome`, { jobId: job.jobId, reason: String(error) }))
      .finally(() => {
        this.running.delete(job.jobId);
        this.poke();
      });
    this.running.set(job.jobId, entry);
  }

  private async execute(job: Job, controller: AbortController): Promise<void> {
    const { signal } = controller;
    const id = job.jobId;
    const log = this.log;
    this.emit({ type: 'claimed', job });
    const abort = (reason: AbortReason): void => {
      if (!signal.aborted) controller.abort(reason);
    };

    // set once the handler is over: a heartbeat or progress write still on its way then changes nothing
    let settled = false;
    const checkCancel = async (): Promise<void> => {
      if (!signal.aborted && !settled && (await this.store.isCancelRequested(id)) && !settled) abort('cancelled');
    };

    let beating = false;
    // when the lease was last renewed (at worst): the claim holds until this plus the lease
    let lastRenewed = Date.now();
    const heartbeat = setInterval(() => {
      if (beating || signal.aborted || settled) return;
      beating = true;
      void (async () => {
        try {
          const beganAt = Date.now();
          const renewed = await this.store.heartbeat(id, this.workerId, { leaseMs: this.leaseMs });
          if (renewed) lastRenewed = Math.max(lastRenewed, beganAt);
          if (settled) return;
          if (!renewed) {
            log.warn(`job ${id}: lost its claim; stopping it`, { jobId: id, workerId: this.workerId });
            abort('lease-lost');
            return;
          }
          await checkCancel();
        } catch (error) {
          // A transient storage error: the lease still has time, the next beat retries.
          log.warn(`job ${id}: heartbeat failed`, { jobId: id, reason: String(error) });
        } finally {
          beating = false;
        }
      })();
    }, this.heartbeatMs);

    let lastStage: string | null = job.stage;
    let writtenStage: string | null = job.stage;
    let lastWriteAt = 0;
    let writes: Promise<void> = Promise.resolve();
    const progress = (fraction: number, stage: string | null): void => {
      if (signal.aborted || settled) return;
      const value = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
      lastStage = stage;
      const now = Date.now();
      if (stage === writtenStage && now - lastWriteAt < this.progressIntervalMs) return;
      writtenStage = stage;
      lastWriteAt = now;
      writes = writes.then(async () => {
        if (signal.aborted) return;
        try {
          if (!(await this.store.progress(id, this.workerId, value, stage))) {
            abort('lease-lost');
            return;
          }
          this.emit({ type: 'progress', job: { ...job, progress: value, stage }, progress: value, stage });
          await checkCancel();
        } catch (error) {
          log.warn(`job ${id}: progress write failed`, { jobId: id, reason: String(error) });
        }
      });
    };

    type Outcome = { kind: 'ok'; result: JobResult } | { kind: 'error'; error: unknown } | { kind: 'aborted' };
    const aborted = new Promise<Outcome>((resolve) => {
      if (signal.aborted) resolve({ kind: 'aborted' });
      else signal.addEventListener('abort', () => resolve({ kind: 'aborted' }), { once: true });
    });

    let outcome: Outcome;
    try {
      const handler = this.handlers[job.jobType];
      if (!handler) {
        outcome = { kind: 'error', error: new AvatarError('AVATAR_ERR_STAGE_NOT_INSTALLED', { stage: job.jobType }) };
      } else {
        const ctx: JobContext = { job, signal, progress, log, workerId: this.workerId };
        const handled = Promise.resolve()
          .then(() => handler(ctx))
          .then(
            (result): Outcome => ({ kind: 'ok', result }),
            (error: unknown): Outcome => ({ kind: 'error', error }),
          );
        outcome = await Promise.race([handled, aborted]);
        if (outcome.kind === 'aborted') {
          // Give the handler time to stop (kill its children, remove its files) before the job is handed
          // on: a job given back while its old run still writes could be run twice. A handler that
          // ignores its signal is not waited for forever.
          const grace = new Promise<Outcome>((resolve) => {
            const timer = setTimeout(() => resolve({ kind: 'aborted' }), this.abortGraceMs);
            timer.unref();
          });
          const settledOutcome = await Promise.race([handled, grace]);
          if (settledOutcome.kind === 'aborted') log.warn(`job ${id}: its handler did not stop within ${this.abortGraceMs} ms of being aborted`, { jobId: id });
        }
      }
    } finally {
      settled = true;
      clearInterval(heartbeat);
    }
    await writes;

    const reason = signal.aborted ? (signal.reason as AbortReason) : undefined;
    if (reason === 'lease-lost') {
      // Someone else owns the job now: write nothing.
      log.warn(`job ${id}: abandoned after losing its claim`, { jobId: id, workerId: this.workerId });
      return;
    }
    // the outcome is written while the claim may still hold: a store that does not answer for a
    // while (a Redis restart) gets it once it is back, so the job is neither lost nor run again
    const until = lastRenewed + this.leaseMs;
    if (outcome.kind === 'ok') {
      const result = outcome.result;
      await this.record('completed', await this.persist(id, until, () => this.store.complete(id, this.workerId, result)), id);
    } else if (reason === 'cancelled') {
      await this.record('cancelled', await this.persist(id, until, () => this.store.markCancelled(id, this.workerId, lastStage)), id);
    } else if (reason === 'shutdown') {
      await this.record('released', await this.persist(id, until, () => this.store.release(id, this.workerId)), id);
    } else if (outcome.kind === 'error') {
      const error = isAvatarError(outcome.error) ? outcome.error : toAvatarError(outcome.error, lastStage ?? job.jobType);
      log.warn(`job ${id} failed: ${error.message}`, { jobId: id, code: error.code });
      await this.record('failed', await this.persist(id, until, () => this.store.fail(id, this.workerId, error.toJSON())), id);
    }
  }

  /**
   * A final write, tried again while the store does not answer (AVATAR_ERR_STORE_UNAVAILABLE) and the
   * claim's lease may still hold; any other error, or the lease's end, is thrown.
   */
  private async persist(id: string, until: number, write: () => Promise<boolean>): Promise<boolean> {
    for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
      try {
        return await write();
      } catch (error) {
        if (!isAvatarError(error, 'AVATAR_ERR_STORE_UNAVAILABLE') || Date.now() + wait > until) throw error;
        this.log.warn(`job ${id}: ${error.code}: ${error.message}; trying again in ${wait} ms`, { jobId: id });
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
  }

  private async record(type: 'completed' | 'failed' | 'cancelled' | 'released', written: boolean, id: string): Promise<void> {
    if (!written) {
      this.log.warn(`job ${id}: could not record ${type}: the claim was lost`, { jobId: id, workerId: this.workerId });
      return;
    }
    const job = await this.store.get(id);
    // a released job that had a cancel request pending ends cancelled, not back in the queue
    const actual = type === 'released' && job?.status === 'cancelled' ? 'cancelled' : type;
    this.summary[actual] += 1;
    if (job) this.emit({ type: actual, job });
  }
}
