import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, readFile, readdir, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeWholeFile } from '../fsutil.js';
import type { Logger } from '../log.js';
import { ownerIsDead } from '../owner.js';
import { NO_LINK, errnoCode, readSmall, unlinkQuiet } from './file-helpers.js';
import { isPlainObject } from './lifecycle.js';

// The file store's claims and guards. A claim is queue/locks/<jobId>.lock, created exclusively and
// holding who holds it until when; every write that depends on who owns a claim runs under the job's
// guard (queue/locks/<jobId>.recover), a hard link of the process's holder file in queue/holders, so
// a worker being declared dead cannot write at the same moment as the process that takes its job back.

/** Content of `queue/locks/<jobId>.lock`: who holds the claim and until when. */
export interface LockInfo {
  workerId: string;
  pid: number;
  hostname: string;
  /** epoch ms */
  leaseUntil: number;
}

export const LOCK_RE = /^(job-\d{14}-[0-9a-f]{8})\.lock$/;
export const GUARD_RE = /^(job-\d{14}-[0-9a-f]{8})\.recover$/;

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

export interface LockState {
  info: LockInfo | undefined;
  mtimeMs: number;
}

export class ClaimLocks {
  /** this instance's guard content ("pid hostname"); guards are hard links of it ('none': links do not work here) */
  private holderPath: string | undefined;

  /**
   * @param dir queue/locks
   * @param holdersDir queue/holders
   * @param staleGuardMs an unreadable lock, or a guard of another host, counts as left behind after this long
   */
  constructor(readonly dir: string, readonly holdersDir: string, private readonly staleGuardMs: number, private readonly log: Logger) {}

  path(id: string): string { return join(this.dir, `${id}.lock`); }
  private guardPath(id: string): string { return join(this.dir, `${id}.recover`); }

  async create(id: string, workerId: string, leaseMs: number): Promise<boolean> {
    try {
      // whole or not at all: an empty lock (a full disk) would hold the job until it counts as stale
      await writeWholeFile(this.path(id), this.text(workerId, leaseMs), { exclusive: true });
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    }
    return true;
  }

  text(workerId: string, leaseMs: number): string {
    const info: LockInfo = { workerId, pid: process.pid, hostname: hostname(), leaseUntil: Date.now() + leaseMs };
    return JSON.stringify(info);
  }

  async read(id: string): Promise<LockState | undefined> {
    try {
      const info = parseLock(await readSmall(this.path(id)));
      // the time only matters for a lock that cannot be read
      return { info, mtimeMs: info ? 0 : (await stat(this.path(id))).mtimeMs };
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw error;
    }
  }

  expired(lock: LockState, now = Date.now()): boolean {
    // An unreadable lock gets the stale-guard delay: its writer may still be filling it in.
    return lock.info ? lock.info.leaseUntil <= now : lock.mtimeMs + this.staleGuardMs <= now;
  }

  /** Runs fn while holding the job's guard file, waiting for it if another process holds it. */
  async withGuard<T>(id: string, fn: () => Promise<T>): Promise<T> {
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
  async breakIfStale(path: string): Promise<boolean> {
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

  /** Holder files of processes on this host that are gone. */
  async removeDeadHolders(): Promise<void> {
    for (const name of await readdir(this.holdersDir)) {
      const path = join(this.holdersDir, name);
      if (path !== this.holderPath && (await this.holderIsDead(path))) await unlinkQuiet(path);
    }
  }

  /** Removes this instance's holder file (the store closes). */
  async close(): Promise<void> {
    const holder = this.holderPath;
    if (holder && holder !== 'none') {
      this.holderPath = undefined;
      await unlinkQuiet(holder).catch(() => undefined);
    }
  }
}
