import {
  AvatarError, abandonedJob, cancelledJob, clampProgress, isAvatarError, isJobId, jobStats, newJob, selectJobs, silentLogger,
  type AvatarErrorJSON, type CancelOutcome, type ClaimOptions, type Job, type JobParams, type JobResult, type JobStats, type JobStatus,
  type JobStore, type JobType, type ListFilter, type Logger,
} from '@avatar/core';
import { Job as BullJob, Queue, Worker as BullWorker } from 'bullmq';
import { Redis } from 'ioredis';
import { redisTarget, type RedisTarget } from './connection.js';
import { RECORD_FIELDS, jobFromHash, type QueueState, type RawRecord } from './record.js';
import { withScripts, type FinishOutcome, type StoreScripts } from './scripts.js';

export interface RedisJobStoreOptions {
  /** redis://[user:password@]host[:port][/db][?prefix=name], rediss:// for TLS */
  url: URL;
  /** a job whose worker vanished this many times is failed instead of re-queued (default 3) */
  maxAttempts?: number;
  log?: Logger;
  /** how long an operation waits for Redis to answer before AVATAR_ERR_STORE_UNAVAILABLE (default 5 s) */
  connectTimeoutMs?: number;
  /** where AVATAR_REDIS_PASSWORD is read (default process.env) */
  env?: NodeJS.ProcessEnv;
}

/** The BullMQ queue every avatar worker and server of one Redis (and prefix) shares. */
const QUEUE_NAME = 'jobs';

// BullMQ's answers when a token no longer holds a job's lock (scripts' finishedErrors): the worker
// lost its claim, which the contract reports as `false`, not as an error.
const LOST_CLAIM = /^(Missing lock for job|Lock mismatch for job|Missing key for job|Job \S+ is not in the \w+ state)/;
const lostClaim = (error: unknown): boolean => error instanceof Error && LOST_CLAIM.test(error.message);
// ioredis's and the socket's words for a connection that went away, or a command with no answer in time
const CONNECTION_LOST = /Connection is closed|Command timed out|Stream isn't writeable|ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/i;

// The state sets BullMQ keeps, by the status they stand for.
const SETS: Record<QueueState, readonly { key: string; kind: 'list' | 'zset' }[]> = {
  pending: [{ key: 'wait', kind: 'list' }, { key: 'paused', kind: 'list' }, { key: 'prioritized', kind: 'zset' }, { key: 'delayed', kind: 'zset' }],
  running: [{ key: 'active', kind: 'list' }],
  completed: [{ key: 'completed', kind: 'zset' }],
  failed: [{ key: 'failed', kind: 'zset' }],
};
/** what a read takes from a job's hash: the record, the cancel request and BullMQ's deferred failure */
const READ_FIELDS = [...RECORD_FIELDS, 'avcancel', 'defa'] as const;
const STATES_OF: Record<JobStatus, QueueState> = { pending: 'pending', running: 'running', completed: 'completed', failed: 'failed', cancelled: 'failed' };

interface Loaded {
  job: Job;
  raw: RawRecord & { avcancel?: string; defa?: string };
  state: QueueState;
}

/**
 * The job store on Redis through BullMQ: the queue, claims (BullMQ locks), lease renewal and the
 * recovery of lost workers (BullMQ's stalled-job check) are BullMQ's; the job JSON is the same as the
 * file store's (record.ts says how it is kept). Opening connects lazily: a command that never uses the
 * store never waits for Redis.
 */
export class RedisJobStore implements JobStore {
  /** the URL as it may be shown (JobStore.location) */
  readonly location: string;
  private readonly target: RedisTarget;
  private readonly redis: Redis & StoreScripts;
  private bullQueue: Queue | undefined;
  private readonly workers = new Map<string, BullWorker>();
  private readonly claimed = new Map<string, BullJob>();
  /** final moves whose answer was lost: the next try may find them done */
  private readonly inDoubt = new Set<string>();
  private readonly maxAttempts: number;
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private lastError: Error | undefined;
  private readyWait: Promise<void> | undefined;
  private closed = false;

  constructor(options: RedisJobStoreOptions) {
    this.target = redisTarget(options.url, options.env);
    this.location = this.target.shown;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.log = options.log ?? silentLogger;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
    this.redis = withScripts(new Redis({
      ...this.target.options,
      lazyConnect: true,
      // commands wait through a reconnect (a worker's complete() lands once Redis is back);
      // ready() bounds how long an operation waits when Redis is down before it starts
      maxRetriesPerRequest: null,
      // a command whose answer was lost with the connection is not sent again blindly: it fails as
      // AVATAR_ERR_STORE_UNAVAILABLE and the caller (Worker.persist) tries again knowing it may have landed
      autoResendUnfulfilledCommands: false,
      // a half-open connection must not hold an operation forever
      commandTimeout: 15_000,
      keepAlive: 10_000,
      connectTimeout: this.connectTimeoutMs,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 3_000),
      connectionName: 'avatar',
    }));
    // ioredis reports every failed (re)connect here; kept for the next error message, never thrown
    this.redis.on('error', (error: Error) => {
      if (this.lastError?.message !== error.message) this.log.debug(`job store ${this.location}: ${error.message}`);
      this.lastError = error;
    });
    this.redis.on('ready', () => {
      if (this.lastError) this.log.debug(`job store ${this.location} answers again`);
      this.lastError = undefined;
    });
  }

  /**
   * The BullMQ queue, made once Redis has answered: BullMQ sets a connection up once, and one that
   * failed to set up stays failed, so nothing of BullMQ is made while Redis is away.
   */
  private get queue(): Queue {
    if (!this.bullQueue) {
      this.bullQueue = new Queue(QUEUE_NAME, { connection: this.redis, prefix: this.target.prefix });
      this.bullQueue.on('error', (error: Error) => { this.lastError = error; });
    }
    return this.bullQueue;
  }

  // --- connection ------------------------------------------------------------------------------

  private unavailable(reason: string): AvatarError {
    return new AvatarError('AVATAR_ERR_STORE_UNAVAILABLE', { url: this.location, reason });
  }

  /** Resolves once Redis answers; rejects with AVATAR_ERR_STORE_UNAVAILABLE after connectTimeoutMs. */
  private ready(): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    if (this.closed) return Promise.reject(this.unavailable('this store was closed'));
    // one wait shared by every operation that arrives while Redis is away
    this.readyWait ??= new Promise<void>((resolve, reject) => {
      if (this.redis.status === 'wait') this.redis.connect().catch(() => undefined); // the error arrives on 'error'
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(this.unavailable(this.lastError?.message ?? `no answer within ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      this.redis.once('ready', onReady);
    }).finally(() => {
      this.readyWait = undefined;
    });
    return this.readyWait;
  }

  private key(jobId: string): string {
    return this.queue.toKey(jobId);
  }

  /** where BullMQ keeps the token of the worker that holds a job */
  private lockKey(jobId: string): string {
    return `${this.key(jobId)}:lock`;
  }

  /** A worker's operation on one job: `none` for an id that cannot be a job's, else `fn` once Redis answers. */
  private onJob<T>(jobId: string, none: T, fn: () => Promise<T>): Promise<T> {
    if (typeof jobId !== 'string' || !isJobId(jobId)) return Promise.resolve(none);
    return this.io(async () => {
      await this.ready();
      return fn();
    });
  }

  /** The job, or AVATAR_ERR_JOB_NOT_FOUND (cancel, delete). */
  private async found(jobId: string): Promise<Loaded> {
    if (typeof jobId === 'string' && isJobId(jobId)) {
      await this.ready();
      const loaded = await this.load(jobId);
      if (loaded) return loaded;
    }
    throw new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id: String(jobId) });
  }

  /**
   * A BullMQ worker per worker id: its name is what BullMQ records as the job's worker (`pb`), its
   * lock duration the lease its claims take (a claim whose reply is lost expires with that lease).
   */
  private bullWorker(workerId: string, leaseMs = 30_000): BullWorker {
    let worker = this.workers.get(workerId);
    if (!worker) {
      worker = new BullWorker(QUEUE_NAME, null, {
        connection: this.redis,
        prefix: this.target.prefix,
        name: workerId,
        autorun: false,
        lockDuration: leaseMs,
        // the contract's attempts: the job fails once it was lost maxAttempts times
        maxStalledCount: Math.max(0, this.maxAttempts - 1),
        // recoverExpired runs the stalled check itself, when the avatar worker loop asks
        stalledInterval: 1,
        skipStalledCheck: true,
        skipLockRenewal: true,
      });
      worker.on('error', (error: Error) => { this.lastError = error; });
      this.workers.set(workerId, worker);
    }
    return worker;
  }

  // --- reading ---------------------------------------------------------------------------------

  /** One job and its state, read atomically in one round trip. */
  private async load(jobId: string): Promise<Loaded | undefined> {
    const k = this.queue.keys;
    const reply = await this.redis.avatarRead(this.key(jobId), k.completed!, k.failed!, k.active!, jobId, ...READ_FIELDS);
    const state = reply[0];
    if (state !== 'pending' && state !== 'running' && state !== 'completed' && state !== 'failed') return undefined; // no such job
    return this.parse(jobId, reply.slice(1), state);
  }

  private parse(jobId: string, values: readonly (string | null)[], state: QueueState): Loaded {
    const raw: Loaded['raw'] = {};
    READ_FIELDS.forEach((field, i) => {
      const value = values[i];
      if (value !== null && value !== undefined) raw[field] = value;
    });
    const job = jobFromHash(jobId, raw, state);
    if (typeof job === 'string') throw new AvatarError('AVATAR_ERR_QUEUE_CORRUPT_FILE', { path: `${this.location} ${this.key(jobId)}`, reason: job });
    return { job, raw, state };
  }

  /** Every job in the given states (all states when none are given). */
  private async loadAll(states: readonly QueueState[] = ['pending', 'running', 'completed', 'failed']): Promise<Job[]> {
    await this.ready();
    const tx = this.redis.multi();
    const order: QueueState[] = [];
    for (const state of states) {
      for (const set of SETS[state]) {
        const key = this.queue.toKey(set.key);
        if (set.kind === 'list') tx.lrange(key, 0, -1);
        else tx.zrange(key, 0, -1);
        order.push(state);
      }
    }
    const replies = await tx.exec();
    if (!replies) throw this.unavailable('a read was interrupted');
    const stateOf = new Map<string, QueueState>();
    replies.forEach(([error, ids], i) => {
      if (error) throw error;
      for (const id of ids as string[]) stateOf.set(id, order[i]!);
    });
    const ids = [...stateOf.keys()].filter(isJobId);
    const jobs: Job[] = [];
    // batches keep one reply small however long the queue is
    for (let start = 0; start < ids.length; start += 500) {
      const batch = ids.slice(start, start + 500);
      const pipe = this.redis.pipeline();
      for (const id of batch) pipe.hmget(this.key(id), ...READ_FIELDS);
      const rows = (await pipe.exec()) ?? [];
      rows.forEach(([error, values], i) => {
        const id = batch[i]!;
        if (error) throw error;
        if ((values as (string | null)[])[0] === null) return; // deleted meanwhile
        try {
          jobs.push(this.parse(id, values as (string | null)[], stateOf.get(id)!).job);
        } catch (damaged) {
          this.log.warn(`skipping a damaged job record: ${(damaged as Error).message}`, { jobId: id });
        }
      });
    }
    return jobs;
  }

  // --- the contract ----------------------------------------------------------------------------

  async submit(jobType: JobType, params: JobParams): Promise<Job> {
    return this.io(async () => {
      const job = newJob(jobType, params);
      await this.ready();
      await this.queue.add(job.jobType, job.params, {
        jobId: job.jobId,
        timestamp: Date.parse(job.createdAt),
        attempts: 1,
        removeOnComplete: false,
        removeOnFail: false,
        stackTraceLimit: 0,
      });
      return job;
    });
  }

  async get(jobId: string): Promise<Job | undefined> {
    return this.io(async () => {
      if (typeof jobId !== 'string' || !isJobId(jobId)) return undefined;
      await this.ready();
      return (await this.load(jobId))?.job;
    });
  }

  /**
   * BullMQ keeps jobs in one set per state: a list reads the sets of the statuses asked for (all of
   * them without a status filter) and every record in them, then filters, orders and pages like
   * every store (selectJobs): its cost grows with the jobs kept, as the file store's does.
   */
  async list(filter: ListFilter = {}): Promise<Job[]> {
    return this.io(async () => {
      const statuses = filter.status === undefined ? undefined : typeof filter.status === 'string' ? [filter.status] : filter.status;
      if (statuses?.length === 0 || filter.limit === 0) return [];
      const states = statuses ? [...new Set(statuses.map((s) => STATES_OF[s]))] : undefined;
      return selectJobs(await this.loadAll(states), filter);
    });
  }

  async stats(): Promise<JobStats> {
    return this.io(async () => {
      return jobStats(await this.loadAll());
    });
  }

  async cancel(jobId: string): Promise<CancelOutcome> {
    return this.io(async () => {
      const before = await this.found(jobId);
      const finished = (job: Job): AvatarError => new AvatarError('AVATAR_ERR_JOB_FINISHED', { id: jobId, status: job.status, action: 'cancelled' });
      if (before.state === 'completed' || before.state === 'failed') throw finished(before.job);
      const reason = JSON.stringify(cancelledJob({ ...before.job, status: 'pending' }, null).error);
      const outcome = await this.finishWaiting(jobId, reason, 'cancel');
      const after = outcome === 'missing' ? undefined : await this.load(jobId);
      if (!after) throw new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id: jobId });
      if (outcome === 'finished') return { job: after.job, outcome: 'cancelled' };
      if (outcome === 'requested' || after.state === 'running') return { job: after.job, outcome: 'requested' };
      throw finished(after.job);
    });
  }

  async delete(jobId: string): Promise<void> {
    return this.io(async () => {
      const loaded = await this.found(jobId);
      const running = (): AvatarError => new AvatarError('AVATAR_ERR_JOB_RUNNING', { id: jobId, action: 'deleted' });
      if (loaded.state === 'running') throw running();
      // BullMQ removes a job only while no worker holds its lock: a claim that came first wins
      if ((await this.queue.remove(jobId)) !== 1) {
        if ((await this.load(jobId))?.state === 'running') throw running();
        throw new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id: jobId });
      }
    });
  }

  async claim(workerId: string, options: ClaimOptions): Promise<Job | undefined> {
    return this.io(async () => {
      await this.ready();
      const worker = this.bullWorker(workerId, options.leaseMs);
      for (;;) {
        // (a job that stalled too often is failed by BullMQ here and the next one is taken)
        const next = await worker.getNextJob(workerId, { block: false });
        if (!next?.id) return undefined;
        if (options.leaseMs !== worker.opts.lockDuration) await this.queue.scripts.extendLock(next.id, workerId, options.leaseMs);
        // the record as BullMQ handed it over with the claim: no second read
        const job = jobFromHash(next.id, {
          name: next.name,
          data: JSON.stringify(next.data),
          timestamp: String(next.timestamp),
          processedOn: String(next.processedOn ?? Date.now()),
          ats: String(next.attemptsStarted),
          pb: next.processedBy ?? workerId,
        }, 'running');
        if (typeof job === 'string') {
          // damaged: failed at once with the reason, so it does not come back
          const error = new AvatarError('AVATAR_ERR_QUEUE_CORRUPT_FILE', { path: `${this.location} ${this.key(next.id)}`, reason: job });
          await next.moveToFailed(new Error(JSON.stringify(error.toJSON())), workerId, false).catch(() => undefined);
          this.log.warn(error.message, { jobId: next.id });
          continue;
        }
        this.remember(next);
        return job;
      }
    });
  }

  async heartbeat(jobId: string, workerId: string, options: ClaimOptions): Promise<boolean> {
    return this.onJob(jobId, false, async () => (await this.queue.scripts.extendLock(jobId, workerId, options.leaseMs)) === 1);
  }

  async progress(jobId: string, workerId: string, progress: number, stage: string | null): Promise<boolean> {
    return this.onJob(jobId, false, async () =>
      (await this.redis.avatarProgress(this.lockKey(jobId), this.key(jobId), workerId, String(clampProgress(progress)), JSON.stringify(stage))) === 1);
  }

  async complete(jobId: string, workerId: string, result: JobResult): Promise<boolean> {
    return this.finish(jobId, workerId, (job) => job.moveToCompleted(result, workerId, false), (job) => job.status === 'completed');
  }

  async fail(jobId: string, workerId: string, error: AvatarErrorJSON): Promise<boolean> {
    return this.finish(jobId, workerId, (job) => job.moveToFailed(new Error(JSON.stringify(error)), workerId, false), (job) => job.status === 'failed' && job.error?.code === error.code);
  }

  async markCancelled(jobId: string, workerId: string, stage: string | null): Promise<boolean> {
    return this.onJob(jobId, false, async () => {
      // the stage it stopped at, written only if this worker still holds the job
      if ((await this.redis.avatarProgress(this.lockKey(jobId), this.key(jobId), workerId, '', JSON.stringify(stage))) !== 1) return false;
      const loaded = await this.load(jobId);
      if (!loaded || loaded.state !== 'running') return false;
      const error = cancelledJob(loaded.job, stage).error!;
      return this.finish(jobId, workerId, (job) => job.moveToFailed(new Error(JSON.stringify(error)), workerId, false), (job) => job.status === 'cancelled');
    });
  }

  async release(jobId: string, workerId: string): Promise<boolean> {
    return this.onJob(jobId, false, async () => {
      const k = (name: string): string => this.queue.toKey(name);
      const outcome = await this.redis.avatarRelease(
        this.key(jobId), this.lockKey(jobId), k('active'), k('wait'), k('stalled'), k('meta'), k('marker'), k('events'), jobId, workerId,
      );
      if (outcome === 'cancel') return this.markCancelled(jobId, workerId, (await this.load(jobId))?.job.stage ?? null);
      if (outcome === 'released') this.claimed.delete(jobId);
      return outcome === 'released';
    });
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    return this.onJob(jobId, false, async () => {
      const k = this.queue.keys;
      const [state, , cancel] = await this.redis.avatarRead(this.key(jobId), k.completed!, k.failed!, k.active!, jobId, 'name', 'avcancel');
      return state === 'running' && cancel === '1';
    });
  }

  /**
   * BullMQ's stalled-job check, twice: its first pass takes back jobs marked by an earlier pass and
   * marks the active ones, the second takes back those of them whose lock has expired by now. A job
   * out of attempts (or asked to stop) is then failed (or cancelled) instead of waiting to be claimed.
   */
  async recoverExpired(): Promise<string[]> {
    return this.io(async () => {
      await this.ready();
      const checker = this.bullWorker('avatar-recovery');
      // BullMQ throttles the check with a key that lives stalledInterval (1 ms): it goes first, since the
      // avatar worker loop paces recovery itself and a timer may fire within the same millisecond
      const throttle = this.queue.keys['stalled-check']!;
      await this.redis.del(throttle);
      const first = await checker.scripts.moveStalledJobsToWait();
      await this.redis.del(throttle);
      const second = await checker.scripts.moveStalledJobsToWait();
      const ids = [...new Set([...first, ...second])];
      for (const id of ids) {
        const loaded = await this.load(id);
        if (!loaded || loaded.state !== 'pending') continue;
        // the attempt that was lost, as it was while it ran
        const lost = jobFromHash(id, loaded.raw, 'running');
        if (typeof lost === 'string') continue;
        // (BullMQ's own verdict, out of stalls, counts as out of attempts)
        const outOfAttempts = loaded.raw.defa !== undefined;
        const after = abandonedJob(lost, { workerId: loaded.raw.pb ?? 'unknown', maxAttempts: outOfAttempts ? 0 : this.maxAttempts, cancelRequested: loaded.raw.avcancel === '1' });
        if (after.status !== 'pending') await this.finishWaiting(id, JSON.stringify(after.error), 'finish');
      }
      return ids;
    });
  }

  /** Counts under `<prefix>:counts:`, beside the queue's keys: one Lua call, atomic across servers. */
  async countInWindow(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }> {
    return this.io(async () => {
      // on every request: while Redis is away it fails at once (the limiter then lets requests
      // through) instead of holding each request for the connect wait
      if (this.redis.status === 'wait') await this.ready();
      else if (this.redis.status !== 'ready') throw this.unavailable(this.lastError?.message ?? `the connection is ${this.redis.status}`);
      const [count, resetInMs] = await this.redis.avatarCount(`${this.target.prefix}:counts:${key}`, String(Math.max(1, Math.round(windowMs))));
      return { count, resetInMs };
    });
  }

  async ping(): Promise<void> {
    return this.io(async () => {
      await this.ready();
      await this.redis.ping();
    });
  }

  close(): Promise<void> {
    // every caller waits for the same closing
    this.closing ??= this.shut();
    return this.closing;
  }

  private closing: Promise<void> | undefined;

  private async shut(): Promise<void> {
    this.closed = true;
    // A BullMQ object's connection starts by asking the server for its version; closed before that answer,
    // the question fails once the connection goes, where no one listens any more (an unhandled rejection).
    // So each is let finish starting first (for 5 s at most: a Redis that does not answer is not waited for).
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((resolve) => { timer = setTimeout(resolve, 5_000); });
    const starting = [...[...this.workers.values()].map((w) => w.waitUntilReady()), ...(this.bullQueue ? [this.bullQueue.waitUntilReady()] : [])];
    await Promise.race([Promise.all(starting.map((ready) => ready.catch(() => undefined))), limit]);
    clearTimeout(timer);
    await Promise.all([...this.workers.values()].map((w) => w.close().catch(() => undefined)));
    this.workers.clear();
    await this.bullQueue?.close().catch(() => undefined);
    if (this.redis.status === 'ready') await this.redis.quit().catch(() => undefined);
    else this.redis.disconnect();
  }

  // --- helpers ---------------------------------------------------------------------------------

  /** A claimed BullMQ job kept for the worker's final write (saves reading it back); bounded. */
  private remember(job: BullJob): void {
    if (this.claimed.size >= 1_000) this.claimed.delete(this.claimed.keys().next().value!);
    this.claimed.set(job.id!, job);
  }

  /**
   * A lock-checked final move. Refused for want of the lock, it may still have landed: a reply lost
   * with the connection makes the worker write again (Worker.persist), and the first write may have
   * been done; `landed` says whether the job is as this write would have left it.
   */
  private async finish(jobId: string, workerId: string, move: (job: BullJob) => Promise<unknown>, landed: (job: Job) => boolean): Promise<boolean> {
    return this.onJob(jobId, false, async () => {
      const job = this.claimed.get(jobId) ?? (await BullJob.fromId(this.queue, jobId));
      if (!job) return false;
      try {
        await move(job);
        this.claimed.delete(jobId);
        this.inDoubt.delete(jobId);
        return true;
      } catch (error) {
        if (!lostClaim(error)) {
          // no answer: the move may or may not have been done
          if (!isAvatarError(error)) this.inDoubt.add(jobId);
          throw error;
        }
        if (!this.inDoubt.delete(jobId)) return false;
        const now = await this.load(jobId);
        return now !== undefined && now.raw.pb === workerId && landed(now.job);
      }
    });
  }

  /** Runs an operation; a connection lost or timed out under it is AVATAR_ERR_STORE_UNAVAILABLE. */
  private async io<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof Error && !isAvatarError(error) && CONNECTION_LOST.test(error.message)) throw this.unavailable(error.message);
      throw error;
    }
  }

  private finishWaiting(jobId: string, reason: string, mode: 'cancel' | 'finish'): Promise<FinishOutcome> {
    const k = (name: string): string => this.queue.toKey(name);
    return this.redis.avatarFinishWaiting(
      this.key(jobId), k('wait'), k('paused'), k('prioritized'), k('active'), k('completed'), k('failed'), k('events'),
      jobId, reason, String(Date.now()), mode,
    );
  }
}

/** Opens a Redis store for `redis://` and `rediss://` URLs (the `jobStores` kind of this package). */
export function openRedisJobStore(url: URL, options: { log?: Logger; maxAttempts?: number } = {}): RedisJobStore {
  return new RedisJobStore({ url, ...(options.log && { log: options.log }), ...(options.maxAttempts !== undefined && { maxAttempts: options.maxAttempts }) });
}
