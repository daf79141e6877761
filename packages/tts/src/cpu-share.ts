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
  try {
    setPriority(pid, Math.min(19, getPriority() + 10));
  } catch {
    // (gone already, or not allowed: it only runs sooner)
  }
}
