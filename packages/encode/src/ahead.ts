import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import type ffmpeg from 'fluent-ffmpeg';
import { isRunning, killChild } from '@avatar/core';

/**
 * ffmpeg started ahead of its encode. ffmpeg takes some 0.15 s from its start to its first frame read
 * (most of it the dynamic linker binding its 200-odd libraries; 0.26 s with both cores busy, as they
 * are while a run speaks and draws), and a live run knows its command line before its first frames: it
 * starts one then, and the encode takes it when it would spawn the very same command line (program,
 * arguments and spawn options), else it starts its own and the one made ahead is stopped.
 *
 * One is kept at a time (a newer one replaces it). One not taken is stopped when the run it was made
 * for ends (its signal) or after IDLE_MS, whichever comes first; it dies with this process like any
 * other ffmpeg of ours (the command line carries the same guard).
 */
const IDLE_MS = 30_000;

interface Spare {
  key: string;
  proc: ChildProcess;
  /** forgets it, without stopping it (taken, or gone by itself) */
  release(): void;
  stop(): void;
}

let spare: Spare | undefined;

/** The ffmpeg made ahead, while one is kept: for tests and logs. */
export function spareProcess(): ChildProcess | undefined {
  return spare?.proc;
}

function keep(key: string, proc: ChildProcess, signal: AbortSignal): void {
  spare?.stop();
  // a start that fails shows as the encode not finding it running; nothing to report here
  proc.on('error', () => {});
  const release = (): void => {
    if (spare?.proc === proc) spare = undefined;
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  };
  const stop = (): void => {
    release();
    killChild(proc, 'SIGKILL');
  };
  const timer = setTimeout(stop, IDLE_MS);
  timer.unref();
  signal.addEventListener('abort', stop, { once: true });
  proc.once('exit', release);
  spare = { key, proc, release, stop };
  if (signal.aborted) stop();
}

/** The ffmpeg made ahead for exactly this command line, still running; any other kept one is stopped. */
function take(key: string): ChildProcess | undefined {
  const kept = spare;
  if (!kept) return undefined;
  if (kept.key !== key || !isRunning(kept.proc)) {
    kept.stop();
    return undefined;
  }
  kept.release();
  return kept.proc;
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

/**
 * Where the command's ffmpeg comes from, set before any other change to its spawn (so it sees the
 * final command line): `keep` starts it now and keeps it for a later encode, and the command itself
 * never runs further; `take` uses the one kept for the same command line, or spawns as usual.
 */
export function spawnAhead(command: ffmpeg.FfmpegCommand, mode: { keep: AbortSignal } | 'take'): void {
  const steps = command as unknown as SpawnStep;
  // another fluent-ffmpeg than 2.1: its encodes start their own ffmpeg
  if (typeof steps._spawnFfmpeg !== 'function' || typeof steps._getFfmpegPath !== 'function' || !linesRing) return;
  const usual = steps._spawnFfmpeg.bind(command);
  steps._spawnFfmpeg = (args, options, processCB, endCB) => {
    const spawnOptions = options as SpawnOptions & { niceness?: number; captureStdout?: boolean; stdoutLines?: number };
    if (typeof options !== 'object' || options === null || spawnOptions.niceness) {
      usual(args, options, processCB, endCB);
      return;
    }
    steps._getFfmpegPath((error, path) => {
      if (error || !path) {
        usual(args, options, processCB, endCB);
        return;
      }
      const key = JSON.stringify([path, args, options]);
      if (mode !== 'take') {
        // (called back from fluent-ffmpeg's own steps, where a throw would be uncaught: the encode
        // starts its own instead)
        try {
          keep(key, spawn(path, args, spawnOptions), mode.keep);
        } catch {
          // nothing kept
        }
        return;
      }
      const proc = take(key);
      if (!proc) usual(args, options, processCB, endCB);
      else adopt(proc, spawnOptions.stdoutLines ?? steps.options.stdoutLines ?? 100, spawnOptions.captureStdout === true, processCB, endCB);
    });
  };
}

/** fluent-ffmpeg 2.1's wiring of a process it spawned (its _spawnFfmpeg after the spawn), for one made ahead. */
function adopt(proc: ChildProcess, maxLines: number, captureStdout: boolean, processCB: ProcessCallback, endCB: EndCallback): void {
  const ring = linesRing as (max: number) => LinesRing;
  const stdoutRing = ring(maxLines);
  const stderrRing = ring(maxLines);
  let exited = false;
  let stdoutClosed = false;
  let stderrClosed = false;
  let exitError: Error | null = null;
  const settle = (error?: Error): void => {
    if (error) exitError = error;
    if (exited && (stdoutClosed || !captureStdout) && stderrClosed) endCB(exitError, stdoutRing, stderrRing);
  };
  proc.stderr?.setEncoding('utf8');
  proc.on('error', (error) => endCB(error));
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
