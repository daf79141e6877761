import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { release } from 'node:os';
import { delimiter, join } from 'node:path';
import { binaryIdentity, cacheDir } from './cache-dir.js';
import { atomicWriteSmallFile } from './fsutil.js';

/**
 * Children that die with this process. A tool that writes a file (ffmpeg encoding, a speech engine)
 * and is orphaned by a SIGKILL of its parent would otherwise run to its end, writing for nobody. On
 * Linux, util-linux's `setpriv --pdeathsig KILL` asks the kernel to kill the child when its parent
 * dies, then runs the tool in its place (same process, so signals, pipes and exit codes are the
 * tool's own). Where setpriv is missing (another system) the tool runs as it is.
 */

const resolved = new Map<string, string>();

/**
 * The absolute path `command` runs from, searched in PATH as the shell does. Where it was found is
 * kept per command and PATH; that it was not is not, so a tool installed while a server runs is seen.
 */
export function findExecutable(command: string): string | undefined {
  const key = `${command}\0${process.env.PATH ?? ''}`;
  const known = resolved.get(key);
  if (known !== undefined) return known;
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  let found: string | undefined;
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      found = candidate;
      break;
    } catch {
      // not here
    }
  }
  if (found !== undefined) resolved.set(key, found);
  return found;
}

let pdeathsig: boolean | undefined;

/** Where the answer is kept between runs, beside the ffmpeg facts (one setpriv per machine: one answer). */
const KEPT = 'setpriv.json';

/**
 * The binary's identity (resolved path, inode, size, times) and the kernel's release: another setpriv, or
 * the same one under another kernel (which might refuse the request), is asked again.
 */
function identityOf(path: string): string | undefined {
  try {
    const real = realpathSync(path);
    return `${binaryIdentity(real, statSync(real, { bigint: true }))}|${release()}`;
  } catch {
    return undefined;
  }
}

/**
 * Whether this setpriv knows --pdeathsig (util-linux 2.33 on; busybox's applet does not). Trying it is
 * a process started and waited for, some 15 ms in which nothing else runs, before a run's first tool:
 * so it is tried once per binary and the answer kept in the cache folder.
 */
function setprivKnowsPdeathsig(setpriv: string): boolean {
  if (pdeathsig !== undefined) return pdeathsig;
  const dir = cacheDir();
  const identity = dir === undefined ? undefined : identityOf(setpriv);
  if (dir !== undefined && identity !== undefined) {
    try {
      const kept = JSON.parse(readFileSync(join(dir, KEPT), 'utf8')) as { identity?: unknown; pdeathsig?: unknown };
      if (kept.identity === identity && typeof kept.pdeathsig === 'boolean') {
        pdeathsig = kept.pdeathsig;
        return pdeathsig;
      }
    } catch {
      // none kept yet, or unreadable: tried below
    }
  }
  const tried = spawnSync(setpriv, ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore', timeout: 5000 });
  pdeathsig = tried.status === 0;
  // only a clear answer is kept: yes, or setpriv's own refusal (exit 1); a timeout on a busy machine, a
  // spawn that failed or a signal says nothing about the binary, and is tried again by the next process
  const clear = tried.status === 0 || (tried.status === 1 && tried.error === undefined && tried.signal === null);
  if (clear && dir !== undefined && identity !== undefined) {
    // best effort: a folder that cannot be written only means the next run tries again
    const answer = JSON.stringify({ identity, pdeathsig });
    mkdir(dir, { recursive: true }).then(() => atomicWriteSmallFile(join(dir, KEPT), answer)).catch(() => {});
  }
  return pdeathsig;
}

/**
 * The command line that runs `command` with `args` and dies with this process: setpriv in front
 * where it can be (on Linux with util-linux, and when `command` itself is found: a missing tool then
 * still fails to spawn with ENOENT, as callers expect), else the command as given.
 */
export function guardedCommand(command: string, args: readonly string[]): { command: string; args: string[] } {
  const found = process.platform === 'linux' ? findExecutable('setpriv') : undefined;
  const setpriv = found && setprivKnowsPdeathsig(found) ? found : undefined;
  const tool = setpriv ? findExecutable(command) : undefined;
  if (!setpriv || !tool) return { command, args: [...args] };
  return { command: setpriv, args: ['--pdeathsig', 'KILL', '--', tool, ...args] };
}
