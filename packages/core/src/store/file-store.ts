import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AvatarError, storageError, type AvatarErrorJSON } from '../errors.js';
import { atomicWriteSmallFile, fileExists, writeWholeFile } from '../fsutil.js';
import { isFinished, isJobId, type Job, type JobParams, type JobResult, type JobType } from '../jobs.js';
import { silentLogger, type Logger } from '../log.js';
import {
  abandonedJob,
  cancelledJob,
  checkJobRecord,
  claimedJob,
  completedJob,
  failedJob,
  jobStats,
  newJob,
  progressedJob,
  releasedJob,
  selectJobs,
} from './lifecycle.js';
import { errnoCode, readSmall, unlinkQuiet } from './file-helpers.js';
import { SPARE_BYTES, SparePool } from './spare-pool.js';
import { ClaimLocks, GUARD_RE, LOCK_RE } from './claim-locks.js';
export type { LockInfo } from './claim-locks.js';
import { PendingMarkers, markerJobId, nextMarkerKey } from './pending-markers.js';
import type { CancelOutcome, ClaimOptions, JobStats, JobStore, ListFilter, StorageFinding } from './types.js';

export interface FileJobStoreOptions {
  /** the shared folder; `jobs/` and `queue/` live under it */
  storageDir: string;
  /** a job whose worker vanished this many times is failed instead of re-queued (default 3) */
  maxAttempts?: number;
  log?: Logger;
  /** a guard file older than this belongs to a crashed process and may be broken (default 60 s) */
  staleGuardMs?: number;
  /** how often recoverExpired also looks for pending jobs without a marker (default 5 min) */
  reconcileIntervalMs?: number;
}

/** how long cancel/delete wait for a claimer that holds a pending job's lock */
const BUSY_WAIT_MS = 10_000;









/** Reads between two turns of the event loop: about two milliseconds of small-file reads. */
const READS_PER_TURN = 100;

/**
 * Maps over many job files. The reads are synchronous (see readSmall), so without a pause a listing of
 * thousands of jobs would hold every other request up until it ends; every READS_PER_TURN items the
 * event loop gets a turn.
 */
async function mapYielding<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i > 0 && i % READS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    out.push(await fn(items[i] as T));
  }
  return out;
}

/**
 * The embedded job store: one JSON file per job plus a folder of marker files that claimers scan.
 * Several processes, on one host or several sharing a folder, may use one storage folder at once.
 *
 *   jobs/<jobId>.json                 the job, always replaced whole (temp file, fsync, rename)
 *   jobs/.spare-<pid>-<hex>-<host>    a spare: SPARE_BYTES of spaces, committed ahead of time (below)
 *   queue/pending/<key>--<jobId>      empty marker of a pending job; keys sort oldest first
 *   queue/locks/<jobId>.lock          the claim: {workerId, pid, hostname, leaseUntil}
 *   queue/locks/<jobId>.recover       the job's guard (below)
 *   queue/cancel/<jobId>              a cancellation request for a running job
 *   queue/holders/<host>-<pid>-<hex>  "pid hostname" of a process; its guards are hard links of it
 *
 * Its parts, each in a file named for it: the job lifecycle every store shares (lifecycle.ts), the
 * pending markers (pending-markers.ts), claims and guards (claim-locks.ts: every write that depends
 * on who owns a claim runs under the job's guard, so a worker being declared dead cannot write at the
 * same moment as the process that takes its job back), spare job files that make submissions cheap
 * (spare-pool.ts). This file holds the job files and what ties the parts together: each operation,
 * recovery of expired claims and the reconcile pass that repairs what a crash between two steps left.
 */
export class FileJobStore implements JobStore {
  readonly storageDir: string;
  readonly maxAttempts: number;
  private readonly log: Logger;
  private readonly staleGuardMs: number;
  private readonly reconcileIntervalMs: number;
  private readonly jobsDir: string;
  private readonly cancelDir: string;
  /** pending jobs' markers in queue/pending (pending-markers.ts) */
  private readonly markers: PendingMarkers;
  /** claims and guards in queue/locks (claim-locks.ts) */
  private readonly locks: ClaimLocks;
  private ready: Promise<void> | undefined;
  private lastReconcile = 0;
  /** ids of finished jobs seen by reconcile: finished is final, so they are not read again */
  private readonly knownFinished = new Set<string>();
  private reconciling: Promise<void> | undefined;
  /** spare job files that submissions write into (spare-pool.ts) */
  private readonly spares: SparePool;

  constructor(options: FileJobStoreOptions) {
    this.storageDir = options.storageDir;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.log = options.log ?? silentLogger;
    this.staleGuardMs = options.staleGuardMs ?? 60_000;
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? 5 * 60_000;
    this.jobsDir = join(this.storageDir, 'jobs');
    this.cancelDir = join(this.storageDir, 'queue', 'cancel');
    this.markers = new PendingMarkers(join(this.storageDir, 'queue', 'pending'), join(this.storageDir, 'queue', '.marker'));
    this.locks = new ClaimLocks(join(this.storageDir, 'queue', 'locks'), join(this.storageDir, 'queue', 'holders'), this.staleGuardMs, this.log);
    this.spares = new SparePool({
      jobsDir: this.jobsDir,
      log: this.log,
      staleGuardMs: this.staleGuardMs,
      jobPath: (id) => this.jobPath(id),
      // queued now rather than at the next reconcile, which may be minutes away in a worker
      placed: async (job) => {
        if (job.status === 'pending' && !(await fileExists(this.locks.path(job.jobId)))) await this.markers.ensure(job);
      },
    });
  }

  // ---- paths (only ever built from ids that passed isJobId) ----
  private jobPath(id: string): string { return join(this.jobsDir, `${id}.json`); }
  private cancelPath(id: string): string { return join(this.cancelDir, id); }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      try {
        for (const dir of [this.jobsDir, this.markers.dir, this.locks.dir, this.cancelDir, this.locks.holdersDir]) await mkdir(dir, { recursive: true });
        await this.markers.prepare();
      } catch (error) {
        this.ready = undefined;
        throw storageError(error) ?? new AvatarError('AVATAR_ERR_STORAGE_NOT_WRITABLE', { path: this.storageDir, reason: errnoCode(error) ?? String(error) }, { cause: error });
      }
      // Before the first read: a job recovered here is then seen by this instance's get and list.
      await this.spares.recoverAll();
    })();
    return this.ready;
  }

  // ---- job files ----

  private async writeJob(job: Job): Promise<void> {
    await atomicWriteSmallFile(this.jobPath(job.jobId), `${JSON.stringify(job, null, 2)}\n`);
  }

  /** writeJob for a new job: through a spare when one is ready and the job fits in it. */
  private async writeNewJob(job: Job): Promise<void> {
    const text = `${JSON.stringify(job, null, 2)}\n`;
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length <= SPARE_BYTES) {
      const spare = this.spares.take();
      if (spare !== undefined && (await this.spares.fill(spare, bytes, this.jobPath(job.jobId)))) return;
    }
    await atomicWriteSmallFile(this.jobPath(job.jobId), text);
  }

  /** The job, undefined when its file does not exist, or a reason when the file is damaged. */
  private async loadJob(id: string): Promise<Job | undefined | { corrupt: string }> {
    let text: string;
    try {
      text = await readSmall(this.jobPath(id));
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return { corrupt: `invalid JSON (${(error as Error).message})` };
    }
    const job = checkJobRecord(value, id);
    return typeof job === 'string' ? { corrupt: job } : job;
  }

  private corruptError(id: string, reason: string): AvatarError {
    return new AvatarError('AVATAR_ERR_QUEUE_CORRUPT_FILE', { path: this.jobPath(id), reason });
  }

  private warnCorrupt(id: string, reason: string): void {
    const err = this.corruptError(id, reason);
    this.log.warn(err.message, { code: err.code, path: this.jobPath(id), reason, hint: err.hint });
  }

  /** Like loadJob, but a damaged file is an error. */
  private async readJob(id: string): Promise<Job | undefined> {
    const loaded = await this.loadJob(id);
    if (loaded && 'corrupt' in loaded) throw this.corruptError(id, loaded.corrupt);
    return loaded;
  }

  /** Runs fn under the guard when `workerId` holds the claim and the job is still its running job. */
  private async asOwner(id: string, workerId: string, fn: (job: Job) => Promise<void>): Promise<boolean> {
    if (!isJobId(id)) return false;
    await this.init();
    return this.locks.withGuard(id, async () => {
      // Under the guard the job file alone tells the owner: a claimer writes it after taking the
      // lock, and whoever removes a lock rewrites the job first.
      const job = await this.readJob(id);
      if (!job || job.status !== 'running' || job.workerId !== workerId) return false;
      await fn(job);
      return true;
    });
  }

  /** Writes a finished (or re-queued) job, then drops the claim and any cancel request. */
  private async finish(job: Job): Promise<void> {
    await this.writeJob(job);
    if (job.status === 'pending') await this.markers.ensure(job);
    await unlinkQuiet(this.locks.path(job.jobId));
    await unlinkQuiet(this.cancelPath(job.jobId));
  }

  // ---- JobStore: clients ----

  async submit(jobType: JobType, params: JobParams): Promise<Job> {
    const now = new Date();
    const job = newJob(jobType, params, now);
    await this.init();
    // Job first, marker second: a crash in between leaves a pending job without a marker, which
    // reconcile() repairs; the other order could let a claimer see a marker with no job.
    await this.writeNewJob(job);
    await this.markers.create(job.jobId, nextMarkerKey(now.getTime()));
    return job;
  }

  async get(jobId: string): Promise<Job | undefined> {
    if (typeof jobId !== 'string' || !isJobId(jobId)) return undefined;
    await this.init();
    return this.readJob(jobId);
  }

  async list(filter: ListFilter = {}): Promise<Job[]> {
    await this.init();
    return selectJobs(await this.loadAll(), filter);
  }

  /**
   * What is wrong in the queue's files, changing nothing (avatar doctor): damaged job files, and
   * claims whose lease ran out with no worker to take the job back yet.
   */
  async checkConsistency(): Promise<StorageFinding[]> {
    const now = Date.now();
    await this.init();
    const findings: StorageFinding[] = [];
    for (const name of await readdir(this.jobsDir)) {
      const id = name.endsWith('.json') && !name.startsWith('.') ? name.slice(0, -'.json'.length) : '';
      if (!isJobId(id)) continue;
      const loaded = await this.loadJob(id);
      if (loaded && 'corrupt' in loaded) {
        const error = this.corruptError(id, loaded.corrupt);
        findings.push({ kind: 'damaged_job', path: this.jobPath(id), detail: loaded.corrupt, advice: error.hint });
      }
    }
    for (const name of await readdir(this.locks.dir)) {
      const id = LOCK_RE.exec(name)?.[1];
      if (!id) continue;
      const lock = await this.locks.read(id).catch(() => undefined);
      if (!lock || !this.locks.expired(lock, now)) continue;
      findings.push({
        kind: 'expired_claim',
        path: this.locks.path(id),
        detail: lock.info
          ? `job ${id} was claimed by ${lock.info.workerId} (process ${lock.info.pid} on ${lock.info.hostname}), whose lease ended ${new Date(lock.info.leaseUntil).toISOString()}`
          : `job ${id} has an empty or unreadable claim`,
        advice: 'Start a worker ("avatar worker"): it takes the job back and runs it again, or fails it once out of attempts.',
      });
    }
    return findings;
  }

  /** Every readable job; damaged files are skipped with a warning, temp files ignored. */
  private async loadAll(warn = true): Promise<Job[]> {
    const ids = (await readdir(this.jobsDir))
      .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
      .map((name) => name.slice(0, -'.json'.length))
      .filter(isJobId);
    const loaded = await mapYielding(ids, async (id) => {
      const job = await this.loadJob(id);
      if (job && 'corrupt' in job) {
        if (warn) this.warnCorrupt(id, job.corrupt);
        return undefined;
      }
      return job;
    });
    return loaded.filter((job): job is Job => job !== undefined);
  }

  async cancel(jobId: string): Promise<CancelOutcome> {
    return this.whenSettled(jobId, 'cancelled', async (job) => {
      if (job.status === 'running') {
        // exclusive: a failed write must never remove a request made before (it is then already asked)
        await writeWholeFile(this.cancelPath(jobId), new Date().toISOString(), { exclusive: true }).catch((error: unknown) => {
          if (errnoCode(error) !== 'EEXIST') throw error;
        });
        // The worker may have finished between our read and the request: drop the stale request.
        const now = await this.readJob(jobId);
        if (now?.status === 'running') return { job: now, outcome: 'requested' };
        await unlinkQuiet(this.cancelPath(jobId));
        return undefined;
      }
      const cancelled = cancelledJob(job, null);
      await this.writeJob(cancelled);
      await this.markers.remove(jobId);
      return { job: cancelled, outcome: 'cancelled' };
    });
  }

  async delete(jobId: string): Promise<void> {
    await this.whenSettled(jobId, 'deleted', async (job) => {
      if (job.status === 'running') throw new AvatarError('AVATAR_ERR_JOB_RUNNING', { id: jobId, action: 'deleted' });
      await unlinkQuiet(this.jobPath(jobId));
      await this.markers.remove(jobId);
      await unlinkQuiet(this.cancelPath(jobId));
      return true;
    });
  }

  /**
   * Shared by cancel and delete: finished jobs are rejected (cancel) or handled without a lock
   * (delete: nothing writes a finished job); pending jobs are handled while holding their lock so
   * no claimer takes them meanwhile; running jobs are passed as they are. `act` returns undefined
   * to have the job looked at again.
   */
  private async whenSettled<T>(jobId: string, action: 'cancelled' | 'deleted', act: (job: Job) => Promise<T | undefined>): Promise<T> {
    const notFound = (): AvatarError => new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id: String(jobId) });
    if (typeof jobId !== 'string' || !isJobId(jobId)) throw notFound();
    await this.init();
    const deadline = Date.now() + BUSY_WAIT_MS;
    for (;;) {
      const job = await this.readJob(jobId);
      if (!job) throw notFound();
      if (isFinished(job.status)) {
        if (action === 'cancelled') throw new AvatarError('AVATAR_ERR_JOB_FINISHED', { id: jobId, status: job.status, action });
        const done = await act(job);
        if (done !== undefined) return done;
      } else if (job.status === 'running') {
        const done = await act(job);
        if (done !== undefined) return done;
      } else if (await this.locks.create(jobId, `${action}:${process.pid}`, BUSY_WAIT_MS)) {
        try {
          const fresh = await this.readJob(jobId);
          if (fresh?.status === 'pending') {
            const done = await act(fresh);
            if (done !== undefined) return done;
          }
        } finally {
          await unlinkQuiet(this.locks.path(jobId));
        }
        continue;
      } else {
        // Locked while pending: a claimer is taking it right now, or one died doing so.
        const lock = await this.locks.read(jobId);
        if (lock && this.locks.expired(lock)) await this.locks.withGuard(jobId, () => this.recoverLocked(jobId));
      }
      if (Date.now() > deadline) throw new AvatarError('AVATAR_ERR_JOB_RUNNING', { id: jobId, action });
      await sleep(5);
    }
  }

  async stats(): Promise<JobStats> {
    return jobStats(await this.list());
  }

  // ---- JobStore: workers ----

  async claim(workerId: string, options: ClaimOptions): Promise<Job | undefined> {
    await this.init();
    await this.reconcileIfDue(true);
    const names = (await readdir(this.markers.dir)).filter((n) => !n.startsWith('.')).sort();
    for (const name of names) {
      const id = markerJobId(name);
      const markerPath = join(this.markers.dir, name);
      if (!isJobId(id)) {
        this.log.warn('removed a malformed queue marker', { path: markerPath });
        await unlinkQuiet(markerPath);
        continue;
      }
      // Taken by another claimer (or running, its marker not yet removed): skip it.
      if (!(await this.locks.create(id, workerId, options.leaseMs))) continue;
      let claimed: Job | undefined;
      try {
        const job = await this.loadJob(id);
        if (job && 'corrupt' in job) {
          this.warnCorrupt(id, job.corrupt);
          await unlinkQuiet(markerPath);
          continue;
        }
        if (!job || job.status !== 'pending') {
          // A stale marker: we hold the lock, so nothing re-queues this job meanwhile.
          await unlinkQuiet(markerPath);
          continue;
        }
        const running = claimedJob(job, workerId);
        await this.writeJob(running);
        claimed = running;
        await unlinkQuiet(markerPath);
        return running;
      } finally {
        if (!claimed) await unlinkQuiet(this.locks.path(id));
      }
    }
    return undefined;
  }

  async heartbeat(jobId: string, workerId: string, options: ClaimOptions): Promise<boolean> {
    if (!isJobId(jobId)) return false;
    await this.init();
    return this.locks.withGuard(jobId, async () => {
      const lock = await this.locks.read(jobId);
      if (lock?.info?.workerId !== workerId) return false;
      await atomicWriteSmallFile(this.locks.path(jobId), this.locks.text(workerId, options.leaseMs));
      return true;
    });
  }

  progress(jobId: string, workerId: string, progress: number, stage: string | null): Promise<boolean> {
    return this.asOwner(jobId, workerId, (job) => this.writeJob(progressedJob(job, progress, stage)));
  }

  complete(jobId: string, workerId: string, result: JobResult): Promise<boolean> {
    return this.asOwner(jobId, workerId, (job) => this.finish(completedJob(job, result)));
  }

  fail(jobId: string, workerId: string, error: AvatarErrorJSON): Promise<boolean> {
    return this.asOwner(jobId, workerId, (job) => this.finish(failedJob(job, error)));
  }

  markCancelled(jobId: string, workerId: string, stage: string | null): Promise<boolean> {
    return this.asOwner(jobId, workerId, (job) => this.finish(cancelledJob(job, stage)));
  }

  release(jobId: string, workerId: string): Promise<boolean> {
    return this.asOwner(jobId, workerId, async (job) => this.finish(releasedJob(job, { cancelRequested: await fileExists(this.cancelPath(jobId)) })));
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    if (!isJobId(jobId)) return false;
    return fileExists(this.cancelPath(jobId));
  }

  async recoverExpired(): Promise<string[]> {
    await this.init();
    const recovered = await this.reconcileIfDue(false);
    const now = Date.now();
    for (const name of await readdir(this.locks.dir)) {
      const lockMatch = LOCK_RE.exec(name);
      if (lockMatch?.[1]) {
        const id = lockMatch[1];
        const lock = await this.locks.read(id);
        if (lock && this.locks.expired(lock, now) && (await this.locks.withGuard(id, () => this.recoverLocked(id)))) recovered.push(id);
        continue;
      }
      const path = join(this.locks.dir, name);
      if (GUARD_RE.test(name)) {
        await this.locks.breakIfStale(path);
      } else if (name.startsWith('.')) {
        // temp files of heartbeats whose process died before the rename
        const info = await stat(path).catch(() => undefined);
        if (info && now - info.mtimeMs > this.staleGuardMs) await unlinkQuiet(path);
      }
    }
    return recovered;
  }

  /** Under the job's guard: takes back an expired claim. True when the job was re-queued or finished. */
  private async recoverLocked(id: string): Promise<boolean> {
    const lock = await this.locks.read(id);
    if (!lock || !this.locks.expired(lock)) return false;
    const loaded = await this.loadJob(id);
    if (loaded && 'corrupt' in loaded) {
      this.warnCorrupt(id, loaded.corrupt);
      await unlinkQuiet(this.locks.path(id));
      return false;
    }
    if (!loaded || loaded.status !== 'running') {
      // A claimer or finisher died between its steps: the job itself is consistent.
      if (loaded?.status === 'pending') await this.markers.ensure(loaded);
      await unlinkQuiet(this.locks.path(id));
      if (loaded && isFinished(loaded.status)) await unlinkQuiet(this.cancelPath(id));
      return false;
    }
    await this.takeBack(loaded, lock.info?.workerId ?? loaded.workerId ?? 'unknown');
    return true;
  }

  /** A running job whose worker is gone: cancelled if asked, failed when out of attempts, else pending. */
  private async takeBack(job: Job, workerId: string): Promise<void> {
    const next = abandonedJob(job, { workerId, maxAttempts: this.maxAttempts, cancelRequested: await fileExists(this.cancelPath(job.jobId)) });
    this.log.warn(`job ${job.jobId} lost its worker ${workerId}: now ${next.status}`, {
      code: 'AVATAR_ERR_QUEUE_WORKER_LOST',
      jobId: job.jobId,
      workerId,
      attempts: job.attempts,
      status: next.status,
    });
    await this.finish(next);
  }

  /**
   * Repairs what a crash between two steps can leave: a job left in a spare (SparePool.recover), a
   * pending job without a marker (crash between writing the job and its marker) and a running job
   * without a lock. Runs on the first claim or recovery of this instance, then from
   * recoverExpired every reconcileIntervalMs.
   */
  private async reconcileIfDue(firstOnly: boolean): Promise<string[]> {
    const recovered: string[] = [];
    if (this.lastReconcile !== 0 && (firstOnly || Date.now() - this.lastReconcile < this.reconcileIntervalMs)) return recovered;
    if (this.reconciling) {
      await this.reconciling;
      return recovered;
    }
    this.reconciling = (async () => {
      // Spares first: a job recovered from one is then given its marker below if it needs one.
      await this.spares.recoverAll();
      // Markers before jobs: a marker seen here was written after its job, so the job is listed below.
      const marked = new Set((await readdir(this.markers.dir)).map(markerJobId));
      const locked = new Set((await readdir(this.locks.dir)).map((n) => LOCK_RE.exec(n)?.[1]));
      // Only jobs with neither a marker nor a lock can need repair; finished ones are remembered.
      const ids = (await readdir(this.jobsDir))
        .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
        .map((name) => name.slice(0, -'.json'.length))
        .filter((id) => isJobId(id) && !marked.has(id) && !locked.has(id) && !this.knownFinished.has(id));
      const loaded = await mapYielding(ids, (id) => this.loadJob(id).catch(() => undefined));
      const jobs = loaded.filter((job): job is Job => job !== undefined && !('corrupt' in job));
      for (const job of jobs) {
        if (isFinished(job.status)) this.knownFinished.add(job.jobId);
        if (job.status === 'pending' && !(await fileExists(this.locks.path(job.jobId)))) {
          await this.markers.ensure(job);
          this.log.info(`re-queued pending job ${job.jobId} that had no queue marker`, { jobId: job.jobId });
        } else if (job.status === 'running' && !(await fileExists(this.locks.path(job.jobId)))) {
          const taken = await this.locks.withGuard(job.jobId, async () => {
            // Under the guard nothing removes a lock, so a running job without one is truly orphaned.
            const fresh = await this.readJob(job.jobId);
            if (fresh?.status !== 'running' || (await fileExists(this.locks.path(job.jobId)))) return false;
            await this.takeBack(fresh, fresh.workerId ?? 'unknown');
            return true;
          });
          if (taken) recovered.push(job.jobId);
        }
      }
      await this.locks.removeDeadHolders();
      this.lastReconcile = Date.now();
    })();
    try {
      await this.reconciling;
    } finally {
      this.reconciling = undefined;
    }
    return recovered;
  }

  async close(): Promise<void> {
    await this.spares.close();
    if (this.reconciling) await this.reconciling.catch(() => undefined);
    await this.locks.close();
  }
}
