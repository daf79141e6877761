import { randomBytes } from 'node:crypto';
import { closeSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { link, readdir, rename, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fdatasyncFd, fsyncFd, openFd } from '../fdio.js';
import { fileExists } from '../fsutil.js';
import type { Job } from '../jobs.js';
import type { Logger } from '../log.js';
import { bootedAtMs, ownerIsDead } from '../owner.js';
import { NO_LINK, errnoCode, readSmall, unlinkQuiet } from './file-helpers.js';
import { checkJobRecord, isPlainObject } from './lifecycle.js';

// The file store's spare job files. An fsync of a new file makes ext4 commit its journal, and that
// commit first waits for the data of every other file written meanwhile; rewriting blocks of a file
// that are already allocated and committed needs only a data flush. So a submission writes the job's
// JSON over the start of a spare (the spaces after it are valid JSON whitespace), flushes it and
// renames it to jobs/<jobId>.json, while spares are made and committed in the background, several to
// a journal commit. A spare left holding a whole job by a crash before the rename was durable is moved
// into place by the next instance that starts or reconciles; see recover.

/** The size of a spare job file; a job whose JSON is longer is written the ordinary way. */
export const SPARE_BYTES = 4096;
export const SPARE_PREFIX = '.spare-';
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

export interface SparePoolOptions {
  /** the folder of job files, where spares live too */
  jobsDir: string;
  log: Logger;
  /** a spare of another host is its owner's for this long (its flush may be slow) */
  staleGuardMs: number;
  /** where a job's file goes */
  jobPath(jobId: string): string;
  /** a job recovered from a crashed submitter's spare is in place: queue it if it needs to be */
  placed(job: Job): Promise<void>;
}

/** One store instance's pool of spares, and the recovery of spares that crashed processes left. */
export class SparePool {
  /** committed spares ready for a submission */
  private readonly ready: string[] = [];
  /** names of spares this instance made and has not yet used up or removed: recovery leaves them alone */
  private readonly ownSpares = new Set<string>();
  /** how many spares the background refill keeps ready; 0 until submissions show they are needed */
  private target = 0;
  private misses = 0;
  private refilling: Promise<void> | undefined;
  /** set by close() or when spares cannot be made; submissions then write the ordinary way */
  private off = false;

  constructor(private readonly options: SparePoolOptions) {}

  /** Stops making spares and removes the unused ones (the store closes). */
  async close(): Promise<void> {
    this.off = true;
    if (this.refilling) await this.refilling;
    for (const spare of this.ready.splice(0)) await this.drop(spare);
  }

  /** A ready spare, or undefined; keeps the pool topped up and grows it when it runs dry. */
  take(): string | undefined {
    const spare = this.ready.pop();
    if (spare === undefined) {
      // The first miss is the instance's first submission: a one-shot command submits once and
      // should not pay for a pool. A miss while a refill runs says nothing about the target.
      if (++this.misses > 1 && !this.refilling && !this.off) {
        this.target = Math.min(SPARE_POOL_MAX, Math.max(SPARE_POOL_FIRST, this.target * 2));
        this.refill();
      }
    } else if (this.ready.length < this.target / 2) {
      this.refill();
    }
    return spare;
  }

  /**
   * Writes a new job over the start of a spare and renames the spare to `target`. False (the spare
   * removed) when anything goes wrong: the caller then writes the job the ordinary way.
   */
  async fill(spare: string, bytes: Buffer, target: string): Promise<boolean> {
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
      this.options.log.debug('could not use a spare job file; writing the job the ordinary way', { path: spare, reason: errnoCode(error) ?? String(error) });
      await unlinkQuiet(spare).catch(() => undefined);
      return false;
    } finally {
      this.ownSpares.delete(basename(spare));
    }
  }

  /** Starts a background refill up to spareTarget unless one is running. */
  private refill(): void {
    if (this.refilling || this.off) return;
    const run = async (): Promise<void> => {
      try {
        await this.make(this.target - this.ready.length);
      } catch (error) {
        // Submissions do not need spares: stop making them for this instance and say so once.
        this.off = true;
        const reason = errnoCode(error) ?? String(error);
        const fields = { path: this.options.jobsDir, reason };
        if (reason === 'ENOENT') this.options.log.debug('stopped making spare job files: the folder is gone', fields);
        else this.options.log.warn('cannot make spare job files; submissions are written the ordinary way', fields);
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
  private async make(count: number): Promise<void> {
    const host = hostname();
    const names = Array.from({ length: count }, () => `${SPARE_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}-${host}`);
    // Claimed before they exist, so a recovery pass of this instance never looks at them.
    for (const name of names) this.ownSpares.add(name);
    const opened = await Promise.allSettled(names.map((name) => openFd(join(this.options.jobsDir, name), 'wx')));
    const waiting: { path: string; fd: number }[] = [];
    let failure: unknown;
    opened.forEach((outcome, i) => {
      const name = names[i] as string;
      if (outcome.status === 'fulfilled') {
        waiting.push({ path: join(this.options.jobsDir, name), fd: outcome.value });
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
        if (this.off) await this.drop(spare.path);
        else this.ready.push(spare.path);
        if (failure !== undefined || this.off) return;
      }
    };
    if (failure === undefined) await Promise.all(Array.from({ length: SPARE_LANES }, lane));
    // what is left was not committed: close() came, or making spares failed
    for (const spare of waiting.splice(0)) {
      closeSync(spare.fd);
      await this.drop(spare.path);
    }
    if (failure !== undefined) throw failure;
  }

  private async drop(path: string): Promise<void> {
    await unlinkQuiet(path).catch(() => undefined);
    this.ownSpares.delete(basename(path));
  }

  /** Looks at every spare of other instances and processes; see recoverSpare. Never throws. */
  async recoverAll(): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(this.options.jobsDir)).filter((name) => name.startsWith(SPARE_PREFIX) && !this.ownSpares.has(name));
    } catch (error) {
      this.options.log.warn('could not look for spare job files', { path: this.options.jobsDir, reason: errnoCode(error) ?? String(error) });
      return;
    }
    for (const name of names) {
      try {
        await this.recover(name);
      } catch (error) {
        this.options.log.warn('could not recover a spare job file', { path: join(this.options.jobsDir, name), reason: errnoCode(error) ?? String(error) });
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
  private async recover(name: string): Promise<void> {
    const path = join(this.options.jobsDir, name);
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
    const gone = dead || (local ? mtimeMs < bootedAtMs() : ageMs >= this.options.staleGuardMs);
    const body = text.trim();
    if (body === '') {
      if (dead) await unlinkQuiet(path);
      return;
    }
    const job = spareJob(body);
    if (job) {
      if (gone) await this.place(path, job);
      return;
    }
    if (gone) {
      this.options.log.warn('removed a torn spare job file left by a crashed process', { path, ageMs: Math.round(ageMs) });
      await unlinkQuiet(path);
    }
  }

  /** Puts a recovered job in place unless its file exists, then drops the spare. */
  private async place(path: string, job: Job): Promise<void> {
    const target = this.options.jobPath(job.jobId);
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
    this.options.log.info(`recovered submitted job ${job.jobId} from a spare file`, { jobId: job.jobId, path });
    await this.options.placed(job);
  }
}
