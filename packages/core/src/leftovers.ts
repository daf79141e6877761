import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeWholeFile } from './fsutil.js';
import { silentLogger, type Logger } from './log.js';
import { bootedAtMs, ownerIsDead, ownerTag, pidNamespace } from './owner.js';

/**
 * What a killed process leaves: its run's work folder (`<storage>/work/<runId>`) and the hidden
 * partial beside an output (`.<name>.partial-<pid>-<owner tag>-<hex>.<ext>`, fsutil's partialPathFor).
 * Later runs, workers and servers remove them, never one that is still in use:
 * - a work folder whose process (same host, same pid namespace) is gone, or, whoever made it, that
 *   nothing was written in for a day; never one a run kept on purpose (--keep-intermediates);
 * - a partial whose owner tag is this host's and pid namespace's, whose process is gone, and that has
 *   been quiet two minutes (a process id can come back); in the storage folder's outputs also any
 *   partial not written for a day (another host's, or an older name without a tag). In a user's own
 *   folder only this host's dead processes' partials are touched.
 */

/** The file in a work folder naming the process that made it. */
const OWNER_FILE = '.owner';
/** A partial of a dead process of this host, quiet this long, is left over. */
const QUIET_MS = 2 * 60_000;
/** Anything in the storage folder not written for this long is left over, whoever made it. */
const STALE_MS = 24 * 3600_000;
/** partialPathFor's names: pid, owner tag (absent in older names), random */
const PARTIAL_RE = /^\..+\.partial-(\d+)-(?:([0-9a-f]{6})-)?[0-9a-f]{6}(\.[^.]*)?$/;

interface Owner {
  pid?: unknown;
  hostname?: unknown;
  pidns?: unknown;
  /** the run kept its folder on purpose: never swept */
  kept?: unknown;
}

/** Marks a new work folder as this process's. */
export async function claimWorkDir(dir: string): Promise<void> {
  const owner = { pid: process.pid, hostname: hostname(), pidns: pidNamespace(), startedAt: new Date().toISOString() };
  await writeWholeFile(join(dir, OWNER_FILE), `${JSON.stringify(owner)}\n`);
}

/** Marks a work folder a run keeps on purpose (--keep-intermediates): no sweep removes it. */
export async function keepWorkDir(dir: string): Promise<void> {
  await writeWholeFile(join(dir, OWNER_FILE), `${JSON.stringify({ kept: true, keptAt: new Date().toISOString() })}\n`);
}

/** The newest write time under `dir` (the folder itself and everything in it). */
async function lastWritten(dir: string): Promise<number> {
  let newest = (await stat(dir)).mtimeMs;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    try {
      newest = Math.max(newest, (await stat(join(entry.parentPath, entry.name))).mtimeMs);
    } catch {
      // removed meanwhile
    }
  }
  return newest;
}

/** Why a work folder is left over, or undefined when it may still be in use (or was kept). */
async function workDirLeftOver(dir: string, now: number): Promise<string | undefined> {
  let owner: Owner | undefined;
  try {
    owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as Owner;
  } catch {
    owner = undefined; // not marked yet (just made), or made by an older version
  }
  if (owner?.kept === true) return undefined;
  const here = owner !== undefined && owner.hostname === hostname() && owner.pidns === pidNamespace();
  if (here && typeof owner?.pid === 'number' && ownerIsDead(owner.pid, hostname())) return `its process ${owner.pid} is gone`;
  const written = await lastWritten(dir);
  // (this machine's start says nothing of another host's writers)
  if (here && written < bootedAtMs()) return 'written before this machine started';
  if (now - written > STALE_MS) return 'nothing written for a day';
  return undefined;
}

/** Why a partial is left over, or undefined when it may still be written. */
async function partialLeftOver(path: string, pid: number, tag: string | undefined, now: number, anyOwner: boolean): Promise<string | undefined> {
  const written = (await stat(path)).mtimeMs;
  if (tag === ownerTag() && ownerIsDead(pid, hostname()) && now - written > QUIET_MS) return `its process ${pid} is gone`;
  if (anyOwner && now - written > STALE_MS) return 'nothing written for a day';
  return undefined;
}

export interface SweepReport {
  /** what was removed (with dryRun: what would be), each with what it is and why */
  removed: { path: string; kind: 'work' | 'partial'; reason: string }[];
}

export interface SweepOptions {
  log?: Logger;
  now?: number;
  /** find what is left over, remove nothing */
  dryRun?: boolean;
  /**
   * also partials of any owner not written for a day: for the storage folder's own outputs, not for
   * a user's folder (default false)
   */
  anyOwner?: boolean;
}

/**
 * Removes left-over partials in `folders` (only names of partialPathFor's form); never throws: a
 * folder that cannot be read is skipped.
 */
export async function sweepPartials(folders: readonly string[], options: SweepOptions = {}): Promise<SweepReport> {
  const now = options.now ?? Date.now();
  const removed: SweepReport['removed'] = [];
  for (const folder of folders) {
    let names: string[];
    try {
      names = await readdir(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      const match = PARTIAL_RE.exec(name);
      if (!match) continue;
      const path = join(folder, name);
      try {
        const reason = await partialLeftOver(path, Number(match[1]), match[2], now, options.anyOwner ?? false);
        if (!reason) continue;
        if (!options.dryRun) await rm(path, { force: true });
        removed.push({ path, kind: 'partial', reason });
      } catch {
        // gone meanwhile (its owner renamed it into place)
      }
    }
  }
  if (!options.dryRun) for (const { path, reason } of removed) (options.log ?? silentLogger).info(`removed a left-over partial ${path}: ${reason}`);
  return { removed };
}

/**
 * Removes what killed processes left in a storage folder: work folders and the partials of
 * `<storage>/outputs`. Runs at the start of runs, workers and servers; never throws.
 */
export async function sweepLeftovers(storageDir: string, options: SweepOptions = {}): Promise<SweepReport> {
  const now = options.now ?? Date.now();
  const log = options.log ?? silentLogger;
  const removed: SweepReport['removed'] = [];
  const work = join(storageDir, 'work');
  let runs: string[] = [];
  try {
    runs = await readdir(work);
  } catch {
    // no work folder yet
  }
  for (const name of runs) {
    const dir = join(work, name);
    try {
      const reason = await workDirLeftOver(dir, now);
      if (!reason) continue;
      removed.push({ path: dir, kind: 'work', reason });
      if (options.dryRun) continue;
      await rm(dir, { recursive: true, force: true });
      log.info(`removed a left-over work folder ${dir}: ${reason}`);
    } catch {
      // removed meanwhile, or not a folder
    }
  }
  removed.push(...(await sweepPartials([join(storageDir, 'outputs')], { ...options, log, now, anyOwner: true })).removed);
  return { removed };
}
