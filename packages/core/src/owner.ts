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
