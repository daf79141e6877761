import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeWholeFile } from './fsutil.js';
import { silentLogger, type Logger } from './log.js';
import { bootedAtMs, ownerIsDead } from './owner.js';

/**
 * What a killed process leaves: its run's work folder (`<storage>/work/<runId>`) and the hidden
 * partial beside an output (`.<name>.partial-<pid>-<hex>.<ext>`, fsutil's partialPathFor). Later
 * runs, workers and servers remove them by the store's rules for its spares: the owner is a process
 * of this host that is gone, or nothing was written for a day (an owner on another host sharing the
 * storage, or one whose process id came back). Never one that is still being written.
 */

/** The file in a work folder naming the process that made it. */
const OWNER_FILE = '.owner';
/** A partial of a dead process id, quiet this long, is left over (another host's live writer keeps writing). */
const QUIET_MS = 2 * 60_000;
/** Anything not written for this long is left over, whoever made it. */
const STALE_MS = 24 * 3600_000;
const PARTIAL_RE = /^\..+\.partial-(\d+)-[0-9a-f]{6}(\.[^.]*)?$/;

/** Marks a new work folder as this process's. */
export async function claimWorkDir(dir: string): Promise<void> {
  await writeWholeFile(join(dir, OWNER_FILE), `${JSON.stringify({ pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() })}\n`);
}

/** The newest write time under `dir` (the folder itself and its files, one level deep and below). */
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

/** Why a work folder is left over, or undefined when it may still be in use. */
async function workDirLeftOver(dir: string, now: number): Promise<string | undefined> {
  let owner: { pid?: unknown; hostname?: unknown } | undefined;
  try {
    owner = JSON.parse(await readFile(join(dir, OWNER_FILE), 'utf8')) as { pid?: unknown; hostname?: unknown };
  } catch {
    owner = undefined; // not marked yet (just made), or made by an older version
  }
  if (owner && typeof owner.pid === 'number' && ownerIsDead(owner.pid, typeof owner.hostname === 'string' ? owner.hostname : undefined)) {
    return `its process ${owner.pid} is gone`;
  }
  const written = await lastWritten(dir);
  if (written < bootedAtMs()) return 'written before this machine started';
  if (now - written > STALE_MS) return 'nothing written for a day';
  return undefined;
}

/** Why a partial is left over, or undefined when it may still be written. */
async function partialLeftOver(path: string, pid: number, now: number): Promise<string | undefined> {
  const written = (await stat(path)).mtimeMs;
  if (written < bootedAtMs()) return 'written before this machine started';
  if (now - written > STALE_MS) return 'nothing written for a day';
  // the name holds no host: a dead id here only counts once the file has been quiet a while
  if (ownerIsDead(pid, hostname()) && now - written > QUIET_MS) return `its process ${pid} is gone`;
  return undefined;
}

export interface SweepReport {
  /** what was removed (with dryRun: what would be), each with why */
  removed: { path: string; reason: string }[];
}

export interface SweepOptions {
  log?: Logger;
  now?: number;
  /** find what is left over, remove nothing */
  dryRun?: boolean;
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
        const reason = await partialLeftOver(path, Number(match[1]), now);
        if (!reason) continue;
        if (!options.dryRun) await rm(path, { force: true });
        removed.push({ path, reason });
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
      removed.push({ path: dir, reason });
      if (options.dryRun) continue;
      await rm(dir, { recursive: true, force: true });
      log.info(`removed a left-over work folder ${dir}: ${reason}`);
    } catch {
      // removed meanwhile, or not a folder
    }
  }
  removed.push(...(await sweepPartials([join(storageDir, 'outputs')], { ...options, log, now })).removed);
  return { removed };
}
