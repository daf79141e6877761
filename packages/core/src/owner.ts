import { createHash } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname, uptime } from 'node:os';

/** When this machine started (epoch ms): a file last written before it has no live writer here. */
export const bootedAtMs = (): number => Date.now() - uptime() * 1000;

/**
 * True when `pid` on `host` names a process on this host that no longer exists. A process on
 * another host, or this very process, is never known to be dead.
 */
export function ownerIsDead(pid: number, host: string | undefined): boolean {
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

let namespace: string | undefined;

/**
 * This process's pid namespace ("pid:[4026531836]" on Linux, '' elsewhere): containers that share a
 * host name need not share process ids, so a process id only says something within one namespace.
 */
export function pidNamespace(): string {
  if (namespace === undefined) {
    try {
      namespace = readlinkSync('/proc/self/ns/pid');
    } catch {
      namespace = '';
    }
  }
  return namespace;
}

/**
 * Six hex digits naming this host and pid namespace, for names that must say whose they are (partials:
 * a process id is checked only where it means the same process).
 */
export function ownerTag(): string {
  return createHash('sha256').update(`${hostname()}\n${pidNamespace()}`).digest('hex').slice(0, 6);
}
