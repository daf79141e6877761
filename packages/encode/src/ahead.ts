import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import ffmpeg from 'fluent-ffmpeg';
import { isRunning, killChild } from '@avatar/core';

/**
 * ffmpeg started ahead of its encode. ffmpeg takes some 0.15 s from its start to its first frame read
 * (most of it the dynamic linker binding its 200-odd libraries; 0.26 s with both cores busy, as they
 * are while a run speaks and draws), and a live run knows its command line before its first frames: it
 * starts one then, and an encode that would spawn the very same command line (program, arguments and
 * spawn options: nothing in it is particular to a run) takes it instead.
 *
 * One not taken is stopped when the run it was made for ends (its signal) or after IDLE_MS, whichever
 * comes first; it dies with this process like any other ffmpeg of ours (the command line carries the same
 * guard). Runs side by side each keep their own. A service's standby (started after a run, for the next)
 * serves the first run that then asks for one of the same line, which starts none of its own: the standby
 * is reserved for it (its idle time counted again), and a run asking beside it starts its own.
 */
const IDLE_MS = 30_000;

interface Spare {
  proc: ChildProcess;
  /** started for a service's next run rather than for a run under way */
  standby: boolean;
  /** a standby that a run under way counts on (until that run ends) */
  reserved: boolean;
  /** forgets it, without stopping it (taken, or gone by itself) */
  release(): void;
  /** its idle time counted from now */
  rewind(): void;
}

/** by command line, oldest first */
const spares = new Map<string, Spare[]>();

/** The ffmpeg processes made ahead and kept: for tests. */
export function spareProcesses(): ChildProcess[] {
  return [...spares.values()].flat().map((spare) => spare.proc);
}

function keep(key: string, proc: ChildProcess, signal: AbortSignal, standby: boolean): void {
  // a start that fails shows as the encode not finding it running; nothing to report here
  proc.on('error', () => {});
  const release = (): void => {
    const list = spares.get(key)?.filter((spare) => spare.proc !== proc) ?? [];
    if (list.length > 0) spares.set(key, list);
    else spares.delete(key);
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  };
  const stop = (): void => {
    release();
    killChild(proc, 'SIGKILL');
  };
  let timer = setTimeout(stop, IDLE_MS);
  timer.unref();
  const rewind = (): void => {
    clearTimeout(timer);
    timer = setTimeout(stop, IDLE_MS);
    timer.unref();
  };
  signal.addEventListener('abort', stop, { once: true });
  proc.once('exit', release);
  spares.set(key, [...(spares.get(key) ?? []), { proc, standby, reserved: false, release, rewind }]);
  if (signal.aborted) stop();
}

/** Running, with its pipes open (one that is dying may have closed them before its exit is known). */
function usable(proc: ChildProcess): boolean {
  return isRunning(proc) && proc.stdio.every((stream) => !stream || (!stream.destroyed && !stream.closed));
}

/** A standby for this command line that no run counts on yet. */
function freeStandby(key: string): Spare | undefined {
  return (spares.get(key) ?? []).find((kept) => kept.standby && !kept.reserved && usable(kept.proc));
}

/**
 * A standby for this command line that no run counts on yet, reserved for the run of `signal` (until it
 * ends): that run then starts none of its own. False when there is none.
 */
function reserveStandby(key: string, signal: AbortSignal): boolean {
  const spare = freeStandby(key);
  if (!spare) return false;
  spare.reserved = true;
  spare.rewind();
  signal.addEventListener('abort', () => { spare.reserved = false; }, { once: true });
  return true;
}

/** A process made ahead for exactly this command line that can still take an encode. */
function take(key: string): ChildProcess | undefined {
  const spare = (spares.get(key) ?? []).find((kept) => usable(kept.proc));
  spare?.release();
  return spare?.proc;
}

/** fluent-ffmpeg 2.1's ring of output lines, which its run reads ffmpeg's stderr through. */
interface LinesRing {
  append(data: string | Buffer): void;
  close(): void;
}
type ProcessCallback = (proc: ChildProcess, stdoutRing: LinesRing, stderrRing: LinesRing) => void;
type EndCallback = (error: Error | null, stdoutRing?: LinesRing, stderrRing?: LinesRing) => void;

interface SpawnStep {
  options: { stdoutLines?: number };
  _getFfmpegPath(callback: (error: Error | null, path?: string) => void): void;
  _spawnFfmpeg(args: string[], options: unknown, processCB: ProcessCallback, endCB: EndCallback): void;
}

const linesRing = (() => {
  try {
    const utils = createRequire(import.meta.url)('fluent-ffmpeg/lib/utils') as { linesRing?: (max: number) => LinesRing };
    return typeof utils.linesRing === 'function' ? utils.linesRing : undefined;
  } catch {
    return undefined;
  }
})();

let supported: boolean | undefined;

/** Whether this fluent-ffmpeg is one whose spawn spawnAhead knows (2.1's); asked once. */
export function aheadSupported(): boolean {
  if (supported === undefined) {
    const steps = ffmpeg() as unknown as Partial<SpawnStep>;
    supported = linesRing !== undefined && typeof steps._spawnFfmpeg === 'function' && typeof steps._getFfmpegPath === 'function';
  }
  return supported;
}

/**
 * Where the command's ffmpeg comes from, set before any other change to its spawn (so it sees the
 * final command line). `keep`: started now and kept for a later encode; the command itself goes no
 * further, and nothing is started where the line cannot be known as fluent-ffmpeg 2.1 would spawn it.
 * `take`: the one kept for the same command line (its pid told to `take`), else spawned as usual.
 * False where this fluent-ffmpeg is not one it knows: nothing is changed then.
 */
export function spawnAhead(command: ffmpeg.FfmpegCommand, mode: { keep: AbortSignal; standby?: boolean } | { take: (pid: number) => void }): boolean {
  // another fluent-ffmpeg than 2.1: its encodes start their own ffmpeg
  if (!aheadSupported()) return false;
  const steps = command as unknown as SpawnStep;
  const usual = steps._spawnFfmpeg.bind(command);
  steps._spawnFfmpeg = (args, options, processCB, endCB) => {
    const spawnOptions = options as SpawnOptions & { niceness?: number; captureStdout?: boolean; stdoutLines?: number };
    const plain = typeof options === 'object' && options !== null && !spawnOptions.niceness;
    if ('keep' in mode) {
      // (called back from fluent-ffmpeg's own steps, where a throw would be uncaught)
      if (!plain || mode.keep.aborted) return;
      steps._getFfmpegPath((error, path) => {
        if (error || !path || mode.keep.aborted) return;
        const key = JSON.stringify([path, args, options]);
        // (a service's standby waiting for this line serves the run; one for the next is not needed twice)
        if (mode.standby ? freeStandby(key) !== undefined : reserveStandby(key, mode.keep)) return;
        try {
          keep(key, spawn(path, args, spawnOptions), mode.keep, mode.standby === true);
        } catch {
          // nothing kept: the encode starts its own
        }
      });
      return;
    }
    if (!plain) {
      usual(args, options, processCB, endCB);
      return;
    }
    steps._getFfmpegPath((error, path) => {
      const proc = !error && path ? take(JSON.stringify([path, args, options])) : undefined;
      if (!proc) {
        usual(args, options, processCB, endCB);
        return;
      }
      if (proc.pid !== undefined) mode.take(proc.pid);
      adopt(proc, spawnOptions.stdoutLines ?? steps.options.stdoutLines ?? 100, spawnOptions.captureStdout === true, processCB, endCB);
    });
  };
  return true;
}

/** fluent-ffmpeg 2.1's wiring of a process it spawned (its _spawnFfmpeg after the spawn), for one made ahead. */
function adopt(proc: ChildProcess, maxLines: number, captureStdout: boolean, processCB: ProcessCallback, endCB: EndCallback): void {
  const ring = linesRing as (max: number) => LinesRing;
  const stdoutRing = ring(maxLines);
  const stderrRing = ring(maxLines);
  let exited = false;
  let stdoutClosed = proc.stdout?.closed === true;
  let stderrClosed = proc.stderr?.closed === true;
  let exitError: Error | null = null;
  const settle = (error?: Error): void => {
    if (error) exitError = error;
    if (exited && (stdoutClosed || !captureStdout) && stderrClosed) endCB(exitError, stdoutRing, stderrRing);
  };
  proc.stderr?.setEncoding('utf8');
  proc.on('error', (error) => endCB(error, stdoutRing, stderrRing));
  proc.on('exit', (code, signal) => {
    exited = true;
    settle(signal ? new Error(`ffmpeg was killed with signal ${signal}`) : code ? new Error(`ffmpeg exited with code ${code}`) : undefined);
  });
  if (captureStdout) {
    proc.stdout?.on('data', (data: Buffer) => stdoutRing.append(data));
    proc.stdout?.on('close', () => {
      stdoutRing.close();
      stdoutClosed = true;
      settle();
    });
  }
  proc.stderr?.on('data', (data: string) => stderrRing.append(data));
  proc.stderr?.on('close', () => {
    stderrRing.close();
    stderrClosed = true;
    settle();
  });
  processCB(proc, stdoutRing, stderrRing);
}
