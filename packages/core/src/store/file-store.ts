import { randomBytes } from 'node:crypto';
import { closeSync, readFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { link, mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AvatarError, storageError, type AvatarErrorJSON } from '../errors.js';
import { fdatasyncFd, fsyncFd, openFd } from '../fdio.js';
import { atomicWriteSmallFile, fileExists, writeWholeFile } from '../fsutil.js';
import { isFinished, isJobId, type Job, type JobParams, type JobResult, type JobType } from '../jobs.js';
import { silentLogger, type Logger } from '../log.js';
import { bootedAtMs, ownerIsDead } from '../owner.js';
import {
  abandonedJob,
  cancelledJob,
  checkJobRecord,
  claimedJob,
  completedJob,
  failedJob,
  isPlainObject,
  jobStats,
  newJob,
  progressedJob,
  releasedJob,
  selectJobs,
} from './lifecycle.js';
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

/** Content of `queue/locks/<jobId>.lock`: who holds the claim and until when. */
export interface LockInfo {
  workerId: string;
  pid: number;
  hostname: string;
  /** epoch ms */
  leaseUntil: number;
}

const LOCK_RE = /^(job-\d{14}-[0-9a-f]{8})\.lock$/;
const GUARD_RE = /^(job-\d{14}-[0-9a-f]{8})\.recover$/;
const MARKER_SEP = '--';
/** how long cancel/delete wait for a claimer that holds a pending job's lock */
const BUSY_WAIT_MS = 10_000;

/** The size of a spare job file; a job whose JSON is longer is written the ordinary way. */
const SPARE_BYTES = 4096;
const SPARE_PREFIX = '.spare-';
/** `.spare-<pid>-<6 hex>-<hostname>`: the hostname goes last because it may contain '-' */
const SPARE_RE = /^\.spare-(\d+)-[0-9a-f]{6}-(.+)$/;
/** A spare is all spaces until a job is written over its start; JSON allows the trailing blanks. */
const SPARE_FILL = Buffer.alloc(SPARE_BYTES, 0x20);
/** The pool starts at this many spares and doubles, up to SPARE_POOL_MAX, each time it runs dry. */
const SPARE_POOL_FIRST = 16;
const SPARE_POOL_MAX = 128;
/**
 * How many spare fsyncs run at once: enough to share journal commits, one fewer than the thread
 * pool has threads so that a submission's own steps never queue behind them.
 */
const SPARE_LANES = Math.max(1, Math.min(8, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 1));

// Per-process sequence: keeps FIFO among jobs submitted within the same millisecond.
let markerSeq = 0;
const markerKey = (ms: number, seq: number): string =>
  `${String(ms).padStart(15, '0')}-${(seq >>> 0).toString(16).padStart(8, '0')}`;

const errnoCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
}

/**
 * Reads a small file (a job record, a lock) on the calling thread. These files are a few KB and
 * hot in the page cache, so the read itself takes microseconds, while the asynchronous way costs
 * an open, a read and a close, each a round trip through the thread pool: that overhead, not the
 * disk, set the cost of reading one job and of listing many.
 */
async function readSmall(path: string): Promise<string> {
  return readFileSync(path, 'utf8');
}

/** Errors that mean "this file system cannot hard-link here": fall back to creating a file. */
const NO_LINK = new Set(['EMLINK', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS']);

/** The job a spare file holds, or undefined when it holds no whole, valid job. */
function spareJob(text: string): Job | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isPlainObject(value) || typeof value.jobId !== 'string') return undefined;
  const job = checkJobRecord(value, value.jobId);
  return typeof job === 'string' ? undefined : job;
}

function parseLock(text: string): LockInfo | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (isPlainObject(v) && typeof v.workerId === 'string' && typeof v.leaseUntil === 'number') {
      return {
        workerId: v.workerId,
        leaseUntil: v.leaseUntil,
        pid: typeof v.pid === 'number' ? v.pid : 0,
        hostname: typeof v.hostname === 'string' ? v.hostname : '',
      };
    }
  } catch {
    // a lock is written right after its exclusive create, so it can be read empty for an instant
  }
  return undefined;
}

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

interface LockState {
  info: LockInfo | undefined;
  mtimeMs: number;
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
 * Claims are exclusive creates of the lock. Every write that depends on who owns a claim
 * (heartbeat, progress, finishing, release, recovery) runs under the job's guard, so a worker
 * being declared dead cannot write at the same moment as the process that takes its job back.
 * A guard whose process is gone (same host) or that is older than staleGuardMs is broken.
 *
 * Submissions write into spares. An fsync of a new file makes ext4 commit its journal, and that
 * commit first waits for the data of every other file written meanwhile; rewriting blocks of a file
 * that are already allocated and committed needs only a data flush. So a submission writes the job's
 * JSON over the start of a spare (the spaces after it are valid JSON whitespace), flushes it and
 * renames it to jobs/<jobId>.json, while spares are made and committed in the background, several
 * to a journal commit. A spare left holding a whole job by a crash before the rename was durable is
 * moved into place by the next instance that starts or reconciles; see recoverSpare.
 */
export class FileJobStore implements JobStore {
  readonly storageDir: string;
  readonly maxAttempts: number;
  private readonly log: Logger;
  private readonly staleGuardMs: number;
  private readonly reconcileIntervalMs: number;
  private readonly jobsDir: string;
  private readonly pendingDir: string;
  private readonly locksDir: string;
  private readonly cancelDir: string;
  private readonly holdersDir: string;
  /** an empty file every marker is a hard link of */
  private readonly markerTemplate: string;
  /** this instance's guard content ("pid hostname"); guards are hard links of it */
  private holderPath: string | undefined;
  private ready: Promise<void> | undefined;
  private lastReconcile = 0;
  /** ids of finished jobs seen by reconcile: finished is final, so they are not read again */
  private readonly knownFinished = new Set<string>();
  private reconciling: Promise<void> | undefined;
  /** committed spares ready for a submission */
  private readonly spares: string[] = [];
  /** names of spares this instance made and has not yet used up or removed: recovery leaves them alone */
  private readonly ownSpares = new Set<string>();
  /** how many spares the background refill keeps ready; 0 until submissions show they are needed */
  private spareTarget = 0;
  private spareMisses = 0;
  private refilling: Promise<void> | undefined;
  /** set by close() or when spares cannot be made; submissions then write the ordinary way */
  private sparesOff = false;

  constructor(options: FileJobStoreOptions) {
    this.storageDir = options.storageDir;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.log = options.log ?? silentLogger;
    this.staleGuardMs = options.staleGuardMs ?? 60_000;
    this.reconcileIntervalMs = options.reconcileIntervalMs ?? 5 * 60_000;
    this.jobsDir = join(this.storageDir, 'jobs');
    this.pendingDir = join(this.storageDir, 'queue', 'pending');
    this.locksDir = join(this.storageDir, 'queue', 'locks');
    this.cancelDir = join(this.storageDir, 'queue', 'cancel');
    this.holdersDir = join(this.storageDir, 'queue', 'holders');
    this.markerTemplate = join(this.storageDir, 'queue', '.marker');
  }

  // ---- paths (only ever built from ids that passed isJobId) ----
  private jobPath(id: string): string { return join(this.jobsDir, `${id}.json`); }
  private lockPath(id: string): string { return join(this.locksDir, `${id}.lock`); }
  private guardPath(id: string): string { return join(this.locksDir, `${id}.recover`); }
  private cancelPath(id: string): string { return join(this.cancelDir, id); }

  private init(): Promise<void> {
    this.ready ??= (async () => {
      try {
        for (const dir of [this.jobsDir, this.pendingDir, this.locksDir, this.cancelDir, this.holdersDir]) await mkdir(dir, { recursive: true });
        await writeFile(this.markerTemplate, '', { flag: 'a' });
      } catch (error) {
        this.ready = undefined;
        throw storageError(error) ?? new AvatarError('AVATAR_ERR_STORAGE_NOT_WRITABLE', { path: this.storageDir, reason: errnoCode(error) ?? String(error) }, { cause: error });
      }
      // Before the first read: a job recovered here is then seen by this instance's get and list.
      await this.recoverSpares();
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
      const spare = this.takeSpare();
      if (spare !== undefined && (await this.fillSpare(spare, bytes, this.jobPath(job.jobId)))) return;
    }
    await atomicWriteSmallFile(this.jobPath(job.jobId), text);
  }

  // ---- spares ----

  /** A ready spare, or undefined; keeps the pool topped up and grows it when it runs dry. */
  private takeSpare(): string | undefined {
    const spare = this.spares.pop();
    if (spare === undefined) {
      // The first miss is the instance's first submission: a one-shot command submits once and
      // should not pay for a pool. A miss while a refill runs says nothing about the target.
      if (++this.spareMisses > 1 && !this.refilling && !this.sparesOff) {
        this.spareTarget = Math.min(SPARE_POOL_MAX, Math.max(SPARE_POOL_FIRST, this.spareTarget * 2));
        this.refillSpares();
      }
    } else if (this.spares.length < this.spareTarget / 2) {
      this.refillSpares();
    }
    return spare;
  }

  /**
   * Writes a new job over the start of a spare and renames the spare to `target`. False (the spare
   * removed) when anything goes wrong: the caller then writes the job the ordinary way.
   */
  private async fillSpare(spare: string, bytes: Buffer, target: string): Promise<boolean> {
    try {
      // The open, flush and rename go through the thread pool (they can wait on the disk); copying
      // a few KB into the page cache and closing take microseconds and run inline.
      const fd = await openFd(spare, 'r+');
      try {
        for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at, at);
        // The spare's blocks are allocated and committed, and its size does not change, so the file's
        // data is all that needs flushing: fdatasync does that without a journal commit.
        await fdatasyncFd(fd);
      } finally {
        closeSync(fd);
      }
      try {
        await rename(spare, target);
      } catch (error) {
        // Another process's recovery took this spare for a crashed one (a very slow flush) and
        // put it in place already: the job is there, and rewriting it could undo a claim.
        if (errnoCode(error) !== 'ENOENT' || !(await fileExists(target))) throw error;
      }
      return true;
    } catch (error) {
      this.log.debug('could not use a spare job file; writing the job the ordinary way', { path: spare, reason: errnoCode(error) ?? String(error) });
      await unlinkQuiet(spare).catch(() => undefined);
      return false;
    } finally {
      this.ownSpares.delete(basename(spare));
    }
  }

  /** Starts a background refill up to spareTarget unless one is running. */
  private refillSpares(): void {
    if (this.refilling || this.sparesOff) return;
    const run = async (): Promise<void> => {
      try {
        await this.makeSpares(this.spareTarget - this.spares.length);
      } catch (error) {
        // Submissions do not need spares: stop making them for this instance and say so once.
        this.sparesOff = true;
        const reason = errnoCode(error) ?? String(error);
        const fields = { path: this.jobsDir, reason };
        if (reason === 'ENOENT') this.log.debug('stopped making spare job files: the folder is gone', fields);
        else this.log.warn('cannot make spare job files; submissions are written the ordinary way', fields);
      }
    };
    // .finally runs on a later tick, so `refilling` is cleared only after it was set
    this.refilling = run().finally(() => {
      this.refilling = undefined;
    });
  }

  /**
   * Makes `count` spares, each added to the pool as soon as it is committed. Every file is created
   * at once, from the submission that asked for them; the fsyncs then run SPARE_LANES at a time,
   * so that ext4 commits them together while a thread stays free for submissions.
   */
  private async makeSpares(count: number): Promise<void> {
    const host = hostname();
    const names = Array.from({ length: count }, () => `${SPARE_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}-${host}`);
    // Claimed before they exist, so a recovery pass of this instance never looks at them.
    for (const name of names) this.ownSpares.add(name);
    const opened = await Promise.allSettled(names.map((name) => openFd(join(this.jobsDir, name), 'wx')));
    const waiting: { path: string; fd: number }[] = [];
    let failure: unknown;
    opened.forEach((outcome, i) => {
      const name = names[i] as string;
      if (outcome.status === 'fulfilled') {
        waiting.push({ path: join(this.jobsDir, name), fd: outcome.value });
      } else {
        this.ownSpares.delete(name);
        // a name taken already (two random suffixes alike) just means one spare fewer
        if (errnoCode(outcome.reason) !== 'EEXIST') failure ??= outcome.reason;
      }
    });
    const lane = async (): Promise<void> => {
      for (let spare = waiting.shift(); spare; spare = waiting.shift()) {
        try {
          for (let at = 0; at < SPARE_BYTES; ) at += writeSync(spare.fd, SPARE_FILL, at, SPARE_BYTES - at, at);
          await fsyncFd(spare.fd);
        } catch (error) {
          failure ??= error;
          waiting.unshift(spare); // removed below with the others
          return;
        }
        closeSync(spare.fd);
        if (this.sparesOff) await this.dropSpare(spare.path);
        else this.spares.push(spare.path);
        if (failure !== undefined || this.sparesOff) return;
      }
    };
    if (failure === undefined) await Promise.all(Array.from({ length: SPARE_LANES }, lane));
    // what is left was not committed: close() came, or making spares failed
    for (const spare of waiting.splice(0)) {
      closeSync(spare.fd);
      await this.dropSpare(spare.path);
    }
    if (failure !== undefined) throw failure;
  }

  private async dropSpare(path: string): Promise<void> {
    await unlinkQuiet(path).catch(() => undefined);
    this.ownSpares.delete(basename(path));
  }

  /** Looks at every spare of other instances and processes; see recoverSpare. Never throws. */
  private async recoverSpares(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.jobsDir)).filter((name) => name.startsWith(SPARE_PREFIX) && !this.ownSpares.has(name));
    } catch (error) {
      this.log.warn('could not look for spare job files', { path: this.jobsDir, reason: errnoCode(error) ?? String(error) });
      return;
    }
    for (const name of names) {
      try {
        await this.recoverSpare(name);
      } catch (error) {
        this.log.warn('could not recover a spare job file', { path: join(this.jobsDir, name), reason: errnoCode(error) ?? String(error) });
      }
    }
  }

  /**
   * A spare that is not this instance's. A submitter may crash after flushing a job into a spare
   * and before its rename is durable (the rename is not synced), which leaves the job only in the
   * spare. So:
   *   blank:      still unused; removed only when its owner is known dead (this host, pid gone)
   *   whole job:  moved into place (unless the job file exists) once its owner is gone: on this host,
   *               its process is dead or the spare was written before this machine booted (a pid
   *               means nothing after a reboot); on another host, it is staleGuardMs old. A live
   *               owner's flush can take seconds on a busy disk, and until it returns the job is
   *               the owner's to place.
   *   other text: a torn write; removed when its owner is gone in the same sense
   * A spare whose owner may still be running is never touched.
   */
  private async recoverSpare(name: string): Promise<void> {
    const path = join(this.jobsDir, name);
    let text: string;
    let mtimeMs: number;
    try {
      text = await readSmall(path);
      mtimeMs = (await stat(path)).mtimeMs;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return;
      throw error;
    }
    const owner = SPARE_RE.exec(name);
    const dead = owner ? ownerIsDead(Number(owner[1]), owner[2]) : false;
    const ageMs = Date.now() - mtimeMs;
    const local = owner?.[2] === hostname();
    const gone = dead || (local ? mtimeMs < bootedAtMs() : ageMs >= this.staleGuardMs);
    const body = text.trim();
    if (body === '') {
      if (dead) await unlinkQuiet(path);
      return;
    }
    const job = spareJob(body);
    if (job) {
      if (gone) await this.placeRecovered(path, job);
      return;
    }
    if (gone) {
      this.log.warn('removed a torn spare job file left by a crashed process', { path, ageMs: Math.round(ageMs) });
      await unlinkQuiet(path);
    }
  }

  /** Puts a recovered job in place unless its file exists, then drops the spare. */
  private async placeRecovered(path: string, job: Job): Promise<void> {
    const target = this.jobPath(job.jobId);
    let placed = false;
    try {
      // A hard link never replaces an existing job file (a rename would), and if a slow submitter
      // renames the spare meanwhile, its rename of one inode onto itself does nothing.
      await link(path, target);
      placed = true;
    } catch (error) {
      const code = errnoCode(error) ?? '';
      if (code === 'ENOENT') return; // moved into place by its owner or by another recoverer
      if (NO_LINK.has(code)) {
        if (!(await fileExists(target))) {
          try {
            await rename(path, target);
            placed = true;
          } catch (renameError) {
            if (errnoCode(renameError) !== 'ENOENT') throw renameError;
            return;
          }
        }
      } else if (code !== 'EEXIST') {
        throw error;
      }
    }
    await unlinkQuiet(path);
    if (!placed) return;
    this.log.info(`recovered submitted job ${job.jobId} from a spare file`, { jobId: job.jobId, path });
    // Queued now rather than at the next reconcile, which may be minutes away in a worker.
    if (job.status === 'pending' && !(await fileExists(this.lockPath(job.jobId)))) await this.ensureMarker(job);
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

  // ---- pending markers ----

  // Creating an inode costs far more than adding a name on some file systems, so markers are
  // hard links of one empty file; where links are not possible, plain empty files.
  private async createMarker(id: string, key: string): Promise<void> {
    const path = join(this.pendingDir, `${key}${MARKER_SEP}${id}`);
    try {
      await link(this.markerTemplate, path);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'EEXIST') return;
      if (code === 'ENOENT') await writeFile(this.markerTemplate, '', { flag: 'a' });
      else if (!NO_LINK.has(code ?? '')) throw error;
    }
    await (await open(path, 'w')).close();
  }

  private async markersOf(id: string): Promise<string[]> {
    const names = await readdir(this.pendingDir);
    return names.filter((n) => n.endsWith(`${MARKER_SEP}${id}`));
  }

  /** Re-queues: a marker keyed by the job's creation time puts it back in its original place. */
  private async ensureMarker(job: Job): Promise<void> {
    if ((await this.markersOf(job.jobId)).length > 0) return;
    await this.createMarker(job.jobId, markerKey(Date.parse(job.createdAt), 0));
  }

  private async removeMarkers(id: string): Promise<void> {
    for (const name of await this.markersOf(id)) await unlinkQuiet(join(this.pendingDir, name));
  }

  // ---- locks and guards ----

  private async createLock(id: string, workerId: string, leaseMs: number): Promise<boolean> {
    try {
      // whole or not at all: an empty lock (a full disk) would hold the job until it counts as stale
      await writeWholeFile(this.lockPath(id), this.lockText(workerId, leaseMs), { exclusive: true });
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    }
    return true;
  }

  private lockText(workerId: string, leaseMs: number): string {
    const info: LockInfo = { workerId, pid: process.pid, hostname: hostname(), leaseUntil: Date.now() + leaseMs };
    return JSON.stringify(info);
  }

  private async readLock(id: string): Promise<LockState | undefined> {
    try {
      const info = parseLock(await readSmall(this.lockPath(id)));
      // the time only matters for a lock that cannot be read
      return { info, mtimeMs: info ? 0 : (await stat(this.lockPath(id))).mtimeMs };
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
  }

  private lockExpired(lock: LockState, now = Date.now()): boolean {
    // An unreadable lock gets the stale-guard delay: its writer may still be filling it in.
    return lock.info ? lock.info.leaseUntil <= now : lock.mtimeMs + this.staleGuardMs <= now;
  }

  /** Runs fn while holding the job's guard file, waiting for it if another process holds it. */
  private async withGuard<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const path = this.guardPath(id);
    while (!(await this.tryGuard(path))) {
      if (!(await this.breakIfStale(path))) await sleep(1 + Math.random() * 8);
    }
    try {
      return await fn();
    } finally {
      await unlinkQuiet(path);
    }
  }

  /**
   * Takes a guard: an exclusive hard link of this instance's holder file (cheap, and it carries
   * "pid hostname" for dead-holder detection), or an exclusive create where links do not work.
   */
  private async tryGuard(path: string): Promise<boolean> {
    const content = `${process.pid} ${hostname()}`;
    try {
      if (this.holderPath !== 'none') {
        if (!this.holderPath) {
          const holder = join(this.holdersDir, `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`);
          await writeWholeFile(holder, content);
          this.holderPath = holder;
        }
        try {
          await link(this.holderPath, path);
          return true;
        } catch (error) {
          const code = errnoCode(error);
          if (code === 'ENOENT') {
            this.holderPath = undefined; // our holder file was removed: make another
            return false;
          }
          if (!NO_LINK.has(code ?? '')) throw error;
          this.holderPath = 'none';
        }
      }
      await writeWholeFile(path, content, { exclusive: true });
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    }
  }

  /** Removes a guard left by a crashed process; true when the caller should retry at once. */
  private async breakIfStale(path: string): Promise<boolean> {
    let seen;
    try {
      seen = await stat(path);
    } catch {
      return true;
    }
    // ctime, not mtime: linking a holder file refreshes its ctime, while mtime is when it was made.
    const ageMs = Date.now() - seen.ctimeMs;
    if (ageMs < this.staleGuardMs && !(await this.holderIsDead(path))) return false;
    // Move it aside rather than unlink it: if two processes break the same guard, the second one
    // notices (different inode) that it took a fresh guard and puts it back.
    const aside = `${path}.stale-${process.pid}-${randomBytes(3).toString('hex')}`;
    try {
      await rename(path, aside);
    } catch {
      return true;
    }
    const moved = await stat(aside).catch(() => undefined);
    if (moved && moved.ino !== seen.ino) {
      await link(aside, path).catch(() => undefined);
    } else {
      this.log.warn('broke a queue guard left by a crashed process', { path, ageMs: Math.round(ageMs) });
    }
    await unlinkQuiet(aside);
    return true;
  }

  /** True when the guard names a process on this host that no longer exists (killed mid-write). */
  private async holderIsDead(path: string): Promise<boolean> {
    const text = await readFile(path, 'utf8').catch(() => '');
    const [pidText, host] = text.split(' ');
    return ownerIsDead(Number(pidText), host);
  }

  /** Runs fn under the guard when `workerId` holds the claim and the job is still its running job. */
  private async asOwner(id: string, workerId: string, fn: (job: Job) => Promise<void>): Promise<boolean> {
    if (!isJobId(id)) return false;
    await this.init();
    return this.withGuard(id, async () => {
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
    if (job.status === 'pending') await this.ensureMarker(job);
    await unlinkQuiet(this.lockPath(job.jobId));
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
    await this.createMarker(job.jobId, markerKey(now.getTime(), ++markerSeq));
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
    for (const name of await readdir(this.locksDir)) {
      const id = LOCK_RE.exec(name)?.[1];
      if (!id) continue;
      const lock = await this.readLock(id).catch(() => undefined);
      if (!lock || !this.lockExpired(lock, now)) continue;
      findings.push({
        kind: 'expired_claim',
        path: this.lockPath(id),
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
      await this.removeMarkers(jobId);
      return { job: cancelled, outcome: 'cancelled' };
    });
  }

  async delete(jobId: string): Promise<void> {
    await this.whenSettled(jobId, 'deleted', async (job) => {
      if (job.status === 'running') throw new AvatarError('AVATAR_ERR_JOB_RUNNING', { id: jobId, action: 'deleted' });
      await unlinkQuiet(this.jobPath(jobId));
      await this.removeMarkers(jobId);
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
      } else if (await this.createLock(jobId, `${action}:${process.pid}`, BUSY_WAIT_MS)) {
        try {
          const fresh = await this.readJob(jobId);
          if (fresh?.status === 'pending') {
            const done = await act(fresh);
            if (done !== undefined) return done;
          }
        } finally {
          await unlinkQuiet(this.lockPath(jobId));
        }
        continue;
      } else {
        // Locked while pending: a claimer is taking it right now, or one died doing so.
        const lock = await this.readLock(jobId);
        if (lock && this.lockExpired(lock)) await this.withGuard(jobId, () => this.recoverLocked(jobId));
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
    const names = (await readdir(this.pendingDir)).filter((n) => !n.startsWith('.')).sort();
    for (const name of names) {
      const id = name.slice(name.lastIndexOf(MARKER_SEP) + MARKER_SEP.length);
      const markerPath = join(this.pendingDir, name);
      if (!isJobId(id)) {
        this.log.warn('removed a malformed queue marker', { path: markerPath });
        await unlinkQuiet(markerPath);
        continue;
      }
      // Taken by another claimer (or running, its marker not yet removed): skip it.
      if (!(await this.createLock(id, workerId, options.leaseMs))) continue;
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
        if (!claimed) await unlinkQuiet(this.lockPath(id));
      }
    }
    return undefined;
  }

  async heartbeat(jobId: string, workerId: string, options: ClaimOptions): Promise<boolean> {
    if (!isJobId(jobId)) return false;
    await this.init();
    return this.withGuard(jobId, async () => {
      const lock = await this.readLock(jobId);
      if (lock?.info?.workerId !== workerId) return false;
      await atomicWriteSmallFile(this.lockPath(jobId), this.lockText(workerId, options.leaseMs));
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
    for (const name of await readdir(this.locksDir)) {
      const lockMatch = LOCK_RE.exec(name);
      if (lockMatch?.[1]) {
        const id = lockMatch[1];
        const lock = await this.readLock(id);
        if (lock && this.lockExpired(lock, now) && (await this.withGuard(id, () => this.recoverLocked(id)))) recovered.push(id);
        continue;
      }
      const path = join(this.locksDir, name);
      if (GUARD_RE.test(name)) {
        await this.breakIfStale(path);
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
    const lock = await this.readLock(id);
    if (!lock || !this.lockExpired(lock)) return false;
    const loaded = await this.loadJob(id);
    if (loaded && 'corrupt' in loaded) {
      this.warnCorrupt(id, loaded.corrupt);
      await unlinkQuiet(this.lockPath(id));
      return false;
    }
    if (!loaded || loaded.status !== 'running') {
      // A claimer or finisher died between its steps: the job itself is consistent.
      if (loaded?.status === 'pending') await this.ensureMarker(loaded);
      await unlinkQuiet(this.lockPath(id));
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
   * Repairs what a crash between two steps can leave: a job left in a spare (recoverSpare), a
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
      await this.recoverSpares();
      // Markers before jobs: a marker seen here was written after its job, so the job is listed below.
      const marked = new Set((await readdir(this.pendingDir)).map((n) => n.slice(n.lastIndexOf(MARKER_SEP) + MARKER_SEP.length)));
      const locked = new Set((await readdir(this.locksDir)).map((n) => LOCK_RE.exec(n)?.[1]));
      // Only jobs with neither a marker nor a lock can need repair; finished ones are remembered.
      const ids = (await readdir(this.jobsDir))
        .filter((name) => name.endsWith('.json') && !name.startsWith('.'))
        .map((name) => name.slice(0, -'.json'.length))
        .filter((id) => isJobId(id) && !marked.has(id) && !locked.has(id) && !this.knownFinished.has(id));
      const loaded = await mapYielding(ids, (id) => this.loadJob(id).catch(() => undefined));
      const jobs = loaded.filter((job): job is Job => job !== undefined && !('corrupt' in job));
      for (const job of jobs) {
        if (isFinished(job.status)) this.knownFinished.add(job.jobId);
        if (job.status === 'pending' && !(await fileExists(this.lockPath(job.jobId)))) {
          await this.ensureMarker(job);
          this.log.info(`re-queued pending job ${job.jobId} that had no queue marker`, { jobId: job.jobId });
        } else if (job.status === 'running' && !(await fileExists(this.lockPath(job.jobId)))) {
          const taken = await this.withGuard(job.jobId, async () => {
            // Under the guard nothing removes a lock, so a running job without one is truly orphaned.
            const fresh = await this.readJob(job.jobId);
            if (fresh?.status !== 'running' || (await fileExists(this.lockPath(job.jobId)))) return false;
            await this.takeBack(fresh, fresh.workerId ?? 'unknown');
            return true;
          });
          if (taken) recovered.push(job.jobId);
        }
      }
      await this.removeDeadHolders();
      this.lastReconcile = Date.now();
    })();
    try {
      await this.reconciling;
    } finally {
      this.reconciling = undefined;
    }
    return recovered;
  }

  /** Holder files of processes on this host that are gone. */
  private async removeDeadHolders(): Promise<void> {
    for (const name of await readdir(this.holdersDir)) {
      const path = join(this.holdersDir, name);
      if (path !== this.holderPath && (await this.holderIsDead(path))) await unlinkQuiet(path);
    }
  }

  async close(): Promise<void> {
    this.sparesOff = true;
    if (this.refilling) await this.refilling;
    for (const spare of this.spares.splice(0)) await this.dropSpare(spare);
    if (this.reconciling) await this.reconciling.catch(() => undefined);
    const holder = this.holderPath;
    if (holder && holder !== 'none') {
      this.holderPath = undefined;
      await unlinkQuiet(holder).catch(() => undefined);
    }
  }
}
