import type { BigIntStats } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/**
 * The folder for facts kept between runs (what a binary said about itself, keyed by its identity):
 * $AVATAR_CACHE_DIR, else $XDG_CACHE_HOME/avatar, else ~/.cache/avatar. Undefined when none can be
 * named (no home folder); nothing is kept then. Deleting it is always safe: the facts are asked again.
 */
export function cacheDir(): string | undefined {
  const own = process.env.AVATAR_CACHE_DIR?.trim();
  if (own) return resolve(own);
  const xdg = process.env.XDG_CACHE_HOME?.trim();
  if (xdg && isAbsolute(xdg)) return join(xdg, 'avatar');
  let home: string;
  try {
    home = homedir();
  } catch {
    return undefined; // no HOME and no passwd entry (a container's arbitrary uid): nothing is kept
  }
  return home ? join(home, '.cache', 'avatar') : undefined;
}

/**
 * What facts kept about a binary are keyed by: its resolved path, device and inode, size and times, so a
 * binary replaced or updated in place is asked again.
 */
export function binaryIdentity(realPath: string, stats: BigIntStats): string {
  return [realPath, `${stats.dev}:${stats.ino}`, stats.size, stats.mtimeNs, stats.ctimeNs].join('|');
}
