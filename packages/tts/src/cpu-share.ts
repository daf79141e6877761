import { existsSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/**
 * The processes of speech parts that may run behind: once `yieldCpu()` is called, each of them (those
 * running, and those started after) runs at a lower CPU priority, its nice 10 above ours. A run taking
 * the parts as they come calls it once the parts made cover the first second of video: the speech after
 * that is some 60 times faster than real time, and on a busy machine the renderer and the encoder then go
 * first. One known from the start to run behind (its part comes after that much speech) is lowered at
 * once. Where the system refuses, a process runs as it is.
 */
export class CpuShare {
  private yielded = false;
  private readonly running = new Set<number>();

  /**
   * A part's process, once spawned: remembered until `forget` (its part has settled, so it has exited).
   * `behind`: a part known not to be needed for the first second of video, lowered at once.
   */
  add(pid: number, options: { behind?: boolean } = {}): void {
    if (this.yielded || options.behind === true) lower(pid);
    else this.running.add(pid);
  }

  forget(pids: readonly number[]): void {
    for (const pid of pids) this.running.delete(pid);
  }

  yieldCpu(): void {
    if (this.yielded) return;
    this.yielded = true;
    for (const pid of this.running) lower(pid);
    this.running.clear();
  }
}

function lower(pid: number): void {
  // a part's process that has exited but whose part has not settled yet may have its pid taken by
  // another process: only a child of this process is lowered (where /proc says whose child it is)
  if (parentOf(pid) !== process.pid) return;
  try {
    setPriority(pid, Math.min(19, getPriority() + 10));
  } catch {
    // (gone already, or not allowed: it only runs sooner)
  }
}

/** The parent of `pid` from /proc (the field after the command's closing parenthesis), or ours where /proc has no answer. */
function parentOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (error) {
    // no /proc (not Linux): trusted as before; a process that is gone: not ours to lower
    return (error as NodeJS.ErrnoException).code === 'ENOENT' && existsSync('/proc/self/stat') ? undefined : process.pid;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[1]);
}
