import type { ChildProcess } from 'node:child_process';
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { finished as streamFinished } from 'node:stream/promises';
import ffmpeg from 'fluent-ffmpeg';
import {
  AvatarError,
  checkImageFile,
  checkOutputExtension,
  checkReadableFile,
  checkWritableTarget,
  guardedCommand,
  isAvatarError,
  killChild,
  partialPathFor,
  readMp4Summary,
  silentLogger,
  storageError,
  type ComputePath,
  type AudioStream,
  type EncodeInput,
  type EncodeAhead,
  type EncodedVideo,
  type EncodeSettings,
  type FrameStream,
  type Logger,
  type WatchedVideo,
} from '@avatar/core';
import { recallFacts, rememberFacts, toolIdentity } from './facts.js';
import { probeMedia, readAudioInfo, readImageInfo } from './probe.js';
import { GpuEncodeQueue, chooseGpuEncoder } from './nvenc.js';
import { COLOR_FILTER, codecArgs, mp4Container, outputGeometry } from './settings.js';
import { meaningfulLines, resolveTools, toolMissing, toolVersion, type FfmpegToolPaths, type ResolvedTools } from './tools.js';
import { Stop } from './stop.js';
import { aheadSupported, spawnAhead } from './ahead.js';

export interface EncodeRunOptions {
  signal?: AbortSignal;
  progress?: (fraction: number, detail?: string) => void;
  log?: Logger;
}

export type EncodeOptions = EncodeRunOptions & FfmpegToolPaths;

const STAGE = 'encode';

function cancelled(): AvatarError {
  return new AvatarError('AVATAR_ERR_CANCELLED', { stage: STAGE });
}

function encodeFailed(outputPath: string, reason: string, cause?: unknown): AvatarError {
  return new AvatarError('AVATAR_ERR_ENCODE_FAILED', { output: outputPath, reason }, { cause });
}

/** ffmpeg's own words for a file system's failures, as the errno they stand for. */
const DISK_FAULTS: readonly (readonly [RegExp, string])[] = [
  [/No space left on device/i, 'ENOSPC'],
  [/Disk quota exceeded/i, 'EDQUOT'],
  [/Read-only file system/i, 'EROFS'],
  [/Input\/output error/i, 'EIO'],
];

/** ffmpeg's lines about writing its output (what a failing input says is not the disk's fault). */
const WRITING = /av_interleaved_write_frame|Error writing trailer|Error submitting a packet to the muxer|Could not write header|Error opening output/i;

/**
 * A file system's failure that ffmpeg reported while writing `path`, as the error of its code: only
 * from a line about the output (its path, or the muxer writing), never a decoder's or an input's.
 */
function diskFault(stderr: string, path: string): AvatarError | undefined {
  const lines = stderr.split('\n').filter((line) => line.includes(path) || WRITING.test(line));
  for (const [pattern, code] of DISK_FAULTS) {
    if (lines.some((line) => pattern.test(line))) return storageError(Object.assign(new Error(`${code}: ffmpeg writing ${path}`), { code, path, syscall: 'write' }));
  }
  return undefined;
}

/** "00:01:02.50" -> 62.5 */
function timemark(line: string): number | undefined {
  const m = /time=\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)/.exec(line);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : undefined;
}

interface Job {
  tools: ResolvedTools;
  outputPath: string;
  partialPath: string;
  settings: EncodeSettings;
  signal: AbortSignal | undefined;
  log: Logger;
  /** the video encoder that ran, when not the format's usual one */
  computePath?: ComputePath;
}

interface RunningFfmpeg {
  /** settles when ffmpeg has exited (and its stderr is read) */
  done: Promise<void>;
  /** resolves with the process once spawned; never rejects (a spawn failure settles `done`) */
  started: Promise<ChildProcess | undefined>;
  /** kills ffmpeg (at once if it has started, else as it starts) */
  stop(): void;
}

/**
 * Starts a prepared fluent-ffmpeg command. Failures become AVATAR_ERR_ENCODE_FAILED carrying the last
 * meaningful stderr lines; a missing binary becomes AVATAR_ERR_TOOL_MISSING.
 */
function start(command: ffmpeg.FfmpegCommand, job: Job, onStderr: (line: string) => void): RunningFfmpeg {
  let proc: ChildProcess | undefined;
  let killRequested = false;
  let markStarted: (p: ChildProcess | undefined) => void = () => {};
  const started = new Promise<ChildProcess | undefined>((resolve) => { markStarted = resolve; });
  const done = new Promise<void>((resolve, reject) => {
    command
      .on('start', (line: string) => {
        job.log.debug('ffmpeg started', { command: line });
        // fluent-ffmpeg sets ffmpegProc just before 'start'; the frame writer needs its stdin.
        proc = (command as unknown as { ffmpegProc?: ChildProcess }).ffmpegProc;
        if (killRequested && proc) killChild(proc, 'SIGKILL');
        markStarted(proc);
      })
      .on('stderr', onStderr)
      .on('error', (error: Error, _stdout: string | null, stderr: string | null) => {
        markStarted(undefined);
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || /spawn .* ENOENT/.test(error.message)) {
          reject(toolMissing('ffmpeg', job.tools.ffmpeg, error));
          return;
        }
        // what ffmpeg wrote to failed on our side (LiveTee): the live reader went away, or the disk
        const fromOutput = (error as { outputStreamError?: unknown }).outputStreamError;
        if (fromOutput !== undefined) {
          reject(isAvatarError(fromOutput) ? fromOutput : storageError(fromOutput) ?? encodeFailed(job.outputPath, String(fromOutput), fromOutput));
          return;
        }
        const reason = meaningfulLines(stderr ?? '', 3) || error.message;
        // the disk under the output filled up: that is the machine, not the encoding
        const storage = diskFault(stderr ?? '', job.partialPath);
        reject(storage ?? encodeFailed(job.outputPath, reason, error));
      })
      .on('end', (_stdout: string | null, stderr: string | null) => {
        // ffmpeg 5.1 can exit 0 after "Error writing trailer ...: No space left on device" (seen with a
        // subtitle stream): a file it could not finish is the disk's failure, not a success
        const storage = diskFault(stderr ?? '', job.partialPath);
        if (storage) reject(storage);
        else resolve();
      });
    command.run();
  });
  // Callers may stop awaiting `done` early (an error in the frame writer); never leave it unhandled.
  done.catch(() => {});
  return {
    done,
    started,
    stop() {
      killRequested = true;
      if (proc) killChild(proc, 'SIGKILL');
    },
  };
}

/** The two steps of fluent-ffmpeg's spawn that dieWithThisProcess takes over (fluent-ffmpeg 2.1's own methods). */
interface FfmpegSpawnSteps {
  _getFfmpegPath(callback: (error: Error | null, path?: string) => void): void;
  _spawnFfmpeg(args: string[], ...rest: unknown[]): unknown;
}

/**
 * Makes the command's ffmpeg die with this process (guardedCommand): an encoder orphaned by a SIGKILL
 * would otherwise encode to the end into a file nobody takes. fluent-ffmpeg spawns the path it finds
 * with the arguments it built and offers no prefix, so both steps are taken over for this command.
 */
function dieWithThisProcess(command: ffmpeg.FfmpegCommand, ffmpegPath: string): void {
  const guarded = guardedCommand(ffmpegPath, []);
  if (guarded.command === ffmpegPath) return;
  const steps = command as unknown as FfmpegSpawnSteps;
  if (typeof steps._getFfmpegPath !== 'function' || typeof steps._spawnFfmpeg !== 'function') return; // another fluent-ffmpeg
  const spawnFfmpeg = steps._spawnFfmpeg.bind(command);
  steps._getFfmpegPath = (callback) => callback(null, guarded.command);
  steps._spawnFfmpeg = (args, ...rest) => spawnFfmpeg([...guarded.args, ...args], ...rest);
}

/**
 * Changes the spawn options fluent-ffmpeg gives the command's ffmpeg (2.1 passes them to spawn as they
 * are): a pipe for the sound beside stdin, no copy of stdout kept as text when stdout is a watched video.
 */
function spawnWith(command: ffmpeg.FfmpegCommand, change: (options: Record<string, unknown>) => Record<string, unknown>): void {
  const steps = command as unknown as FfmpegSpawnSteps;
  if (typeof steps._spawnFfmpeg !== 'function') return; // another fluent-ffmpeg
  const spawnFfmpeg = steps._spawnFfmpeg.bind(command);
  steps._spawnFfmpeg = (args, options, ...rest) => spawnFfmpeg(args, typeof options === 'object' && options !== null ? change(options as Record<string, unknown>) : options, ...rest);
}

/** Writes the sound into ffmpeg's extra pipe as it comes; a pipe ffmpeg closed (it failed) ends it quietly. */
async function feedAudio(pipe: Writable, chunks: AsyncIterable<Int16Array>, signal: AbortSignal): Promise<void> {
  pipe.on('error', () => {});
  for await (const chunk of chunks) {
    if (signal.aborted || pipe.destroyed) return;
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (!pipe.write(bytes)) {
      await new Promise<void>((resolve) => {
        const go = (): void => {
          pipe.off('drain', go);
          pipe.off('close', go);
          resolve();
        };
        pipe.on('drain', go);
        pipe.on('close', go);
      });
    }
  }
  pipe.end();
}

/**
 * A YUV4MPEG stream's header for I420 frames: progressive, square pixels, chroma sited as MPEG-2 has it,
 * which encodes to the same bytes as raw I420 with its size and rate on ffmpeg's command line.
 */
function y4mHeader(width: number, height: number, fps: number): string {
  return `YUV4MPEG2 W${width} H${height} F${fps}:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2\n`;
}

/** The line before each frame of a YUV4MPEG stream (one buffer for every frame: the stream copies it) */
const Y4M_FRAME = Buffer.from('FRAME\n', 'latin1');

/** Where a command's ffmpeg comes from: started now and kept for a later encode, or one kept taken (spawnAhead). */
type Ahead = { keep: AbortSignal; standby?: boolean } | { take: (pid: number) => void };

function newCommand(job: Pick<Job, 'tools'>, ahead?: Ahead): ffmpeg.FfmpegCommand {
  // setFfmpegPath writes fluent-ffmpeg's module-wide setting; it is read when the command spawns,
  // so set it on every command (the path may come from an option or the environment).
  const command = ffmpeg({ stdoutLines: 200 }).setFfmpegPath(job.tools.ffmpeg);
  // (first: it sees the command line as the other changes below leave it)
  if (ahead) spawnAhead(command, ahead);
  dieWithThisProcess(command, job.tools.ffmpeg);
  // fluent-ffmpeg asks these two before it spawns; with the answers at hand it starts no extra process
  const known = answered.get(job.tools.ffmpeg);
  if (known) {
    command.availableFormats = (callback) => (callback as (error: Error | null, formats: ffmpeg.Formats) => void)(null, known.formats);
    command.availableEncoders = (callback) => (callback as (error: Error | null, encoders: ffmpeg.Encoders) => void)(null, known.encoders);
  }
  return command;
}

/** The CPU encoder this engine runs for a format, and why not NVENC, for a still image (frames say their own why: chooseGpuEncoder). */
function computePathOf(settings: EncodeSettings): ComputePath {
  return settings.format === 'webm'
    ? { path: 'libvpx-vp9', notUsed: 'nvenc: NVENC has no VP9 encoder' }
    : { path: 'libx264', notUsed: 'nvenc: a still image is encoded on the CPU' };
}

/** Checks, temp file, rename on success, cleanup on failure: the part every encode shares. */
async function withPartialOutput(
  outputPath: string,
  settings: EncodeSettings,
  options: EncodeOptions,
  body: (job: Job) => Promise<void>,
): Promise<EncodedVideo> {
  const log = options.log ?? silentLogger;
  const tools = resolveTools(options);
  const job: Job = { tools, outputPath, partialPath: partialPathFor(outputPath), settings, signal: options.signal, log };
  try {
    if (options.signal?.aborted) throw cancelled();
    await body(job);
    if (options.signal?.aborted) throw cancelled();
    const written = await checkWritten(job.partialPath, outputPath, settings, options);
    const { size } = await stat(job.partialPath);
    await rename(job.partialPath, outputPath);
    return { outputPath, format: settings.format, ...written, fps: settings.fps, bytes: size, computePath: job.computePath ?? computePathOf(settings) };
  } catch (error) {
    await rm(job.partialPath, { force: true });
    if (options.signal?.aborted && !isAvatarError(error, 'AVATAR_ERR_TOOL_MISSING')) throw cancelled();
    throw error;
  }
}

/**
 * What ffmpeg wrote, read back from the file: a video stream with a size, an audio stream, the duration.
 * An MP4's own movie header answers this without a process start; anything else goes to ffprobe.
 */
async function checkWritten(
  partialPath: string,
  outputPath: string,
  settings: EncodeSettings,
  options: EncodeOptions,
): Promise<{ width: number; height: number; durationSeconds: number }> {
  const mp4 = settings.format === 'mp4' ? await readMp4Summary(partialPath) : undefined;
  const video = mp4?.tracks.find((t) => t.type === 'video');
  // (a fragmented MP4's header has no samples and no duration: ffprobe reads its fragments)
  if (mp4 && video?.width && video.height && mp4.durationSeconds > 0 && mp4.tracks.some((t) => t.type === 'audio')) {
    return { width: video.width, height: video.height, durationSeconds: mp4.durationSeconds };
  }
  const info = await probeMedia(partialPath, { ...options, input: 'encoded video' });
  const stream = info.streams.find((s) => s.type === 'video');
  if (!stream?.width || !stream.height) throw encodeFailed(outputPath, 'ffmpeg finished but wrote no video stream');
  if (!info.streams.some((s) => s.type === 'audio')) throw encodeFailed(outputPath, 'ffmpeg finished but wrote no audio stream');
  return { width: stream.width, height: stream.height, durationSeconds: info.durationSeconds ?? stream.durationSeconds ?? 0 };
}

async function checkCommon(audioPath: string | undefined, outputPath: string, settings: EncodeSettings, options: EncodeOptions): Promise<void> {
  checkOutputExtension(outputPath, settings.format, 'output video');
  if (audioPath !== undefined) await checkReadableFile(audioPath, 'audio');
  await checkWritableTarget(outputPath, 'output video');
  if (!(settings.fps > 0) || !(settings.size >= 2)) {
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', {
      field: 'encode settings', problem: 'need fps above 0 and size of at least 2', value: `fps ${settings.fps}, size ${settings.size}`,
      expected: 'Use a quality preset or valid overrides.',
    });
  }
  const tools = resolveTools(options);
  // A missing ffmpeg must show here: fluent-ffmpeg, once its per-process lists are filled, spawns it
  // without asking and crashes on the failed spawn. Both answers are cached, so after the first run
  // (or the plugin's prewarm) this starts no process; ffprobe shows when the audio is probed.
  await firstFailure([toolVersion('ffmpeg', tools.ffmpeg), warmCapabilities(tools.ffmpeg)]);
}

/**
 * Settles every promise, then throws the first failure in the order given (not in the order they
 * happened), so the same inputs always give the same error.
 */
async function firstFailure<T extends readonly unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(promises);
  for (const result of settled) if (result.status === 'rejected') throw result.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

interface Capabilities {
  formats: ffmpeg.Formats;
  encoders: ffmpeg.Encoders;
}

const capabilities = new Map<string, Promise<Capabilities | undefined>>();
/** Answers at hand, by ffmpeg path: every command is given them (see newCommand). */
const answered = new Map<string, Capabilities>();

/**
 * fluent-ffmpeg checks the formats and encoders an ffmpeg offers before each run. Its own answers
 * cost two ffmpeg runs per process; these are kept on disk with the binary's other facts (facts.ts),
 * asked for only when the binary is new or changed, and handed to each command. A missing ffmpeg is
 * AVATAR_ERR_TOOL_MISSING; other failures are left for the run, whose error carries ffmpeg's own words.
 */
function warmCapabilities(ffmpegPath: string): Promise<Capabilities | undefined> {
  let warm = capabilities.get(ffmpegPath);
  if (!warm) {
    warm = (async () => {
      const identity = await toolIdentity(ffmpegPath);
      const kept = await recallFacts(identity);
      if (kept.formats && kept.encoders) {
        answered.set(ffmpegPath, { formats: kept.formats, encoders: kept.encoders });
        return answered.get(ffmpegPath);
      }
      const command = ffmpeg().setFfmpegPath(ffmpegPath);
      // the typings say the callback's error is always an Error; fluent-ffmpeg passes null on success
      const ask = <T>(what: (callback: (error: Error | null, answer: T) => void) => void): Promise<T | undefined> =>
        new Promise((resolve, reject) => what((error, answer) => {
          if (!error) return resolve(answer);
          if (/ENOENT|EACCES/.test(String((error as NodeJS.ErrnoException).code ?? error.message))) reject(toolMissing('ffmpeg', ffmpegPath, error));
          else resolve(undefined);
        }));
      const [formats, encoders] = await firstFailure([
        ask<ffmpeg.Formats>((callback) => command.availableFormats(callback as ffmpeg.FormatsCallback)),
        ask<ffmpeg.Encoders>((callback) => command.availableEncoders(callback as ffmpeg.EncodersCallback)),
      ]);
      if (!formats || !encoders) return undefined;
      answered.set(ffmpegPath, { formats, encoders });
      await rememberFacts(identity, { formats, encoders });
      return answered.get(ffmpegPath);
    })();
    capabilities.set(ffmpegPath, warm);
    // a failure or a partial answer is asked again next time
    warm.then((known) => { if (!known) capabilities.delete(ffmpegPath); }, () => capabilities.delete(ffmpegPath));
  }
  return warm;
}

/**
 * Captions drawn into the picture by libass: white on a dark outline at the bottom, 15 lines of the
 * 288-line script space ffmpeg gives converted captions (about a twentieth of the picture's height:
 * libass scales that space to the video), so they read the same at every size. The path is escaped twice: once as a filter option, once for the graph.
 */
export function burnFilter(path: string): string {
  const option = path.replace(/[\\':]/g, (c) => `\\${c}`);
  const graph = option.replace(/[\\'[\],;]/g, (c) => `\\${c}`);
  const style = 'FontName=DejaVu Sans,FontSize=15,PrimaryColour=&H00FFFFFF,OutlineColour=&H00000000,BackColour=&H80000000,BorderStyle=1,Outline=1.8,Shadow=0.8,MarginV=14';
  return `subtitles=filename=${graph}:force_style='${style.replace(/,/g, '\\,')}'`;
}

/**
 * A still image and an audio file into one video as long as the audio. The image is decoded, scaled
 * and colour-converted once, then repeated (tpad clone) at the frame rate; output stops at the audio's
 * measured duration (-t), not at -shortest, which overshoots to the next frame or audio packet.
 */
export async function encodeStill(
  input: { imagePath: string; audioPath: string; outputPath: string; settings: EncodeSettings },
  options: EncodeOptions = {},
): Promise<EncodedVideo> {
  const { imagePath, audioPath, outputPath, settings } = input;
  // the photo's kind and pixel count from its header, before any decoder sees it
  await checkImageFile(imagePath, 'avatar image');
  const [, image, audio] = await firstFailure([
    checkCommon(audioPath, outputPath, settings, options),
    readImageInfo(imagePath, { ...options, input: 'avatar image' }),
    readAudioInfo(audioPath, { ...options, input: 'audio' }),
  ]);
  const geometry = outputGeometry(image.width, image.height, settings.size);
  const codec = codecArgs(settings, true);
  const duration = audio.durationSeconds;

  return withPartialOutput(outputPath, settings, options, async (job) => {
    job.log.info('encoding still image', { width: geometry.width, height: geometry.height, seconds: duration, format: settings.format });
    const command = newCommand(job)
      .input(imagePath)
      .inputOptions(['-framerate', String(settings.fps)])
      .input(audioPath)
      .outputOptions([
        '-hide_banner', '-nostdin',
        '-map', '0:v:0', '-map', '1:a:0',
        '-vf', `${geometry.filter},${COLOR_FILTER},tpad=stop=-1:stop_mode=clone`,
        '-r', String(settings.fps),
        '-t', duration.toFixed(6),
        ...codec.options,
      ])
      .videoCodec(codec.videoCodec)
      .audioCodec(codec.audioCodec)
      .format(codec.muxer)
      .output(job.partialPath);
    const running = start(command, job, (line) => {
      const t = timemark(line);
      if (t !== undefined) options.progress?.(Math.min(0.99, t / duration), 'encoding');
    });
    const onAbort = (): void => running.stop();
    job.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await running.done;
    } finally {
      job.signal?.removeEventListener('abort', onAbort);
    }
    options.progress?.(1, 'encoded');
  });
}

/** Waits until `stream` has taken `chunk` (handed it to the OS), or fails if the pipe broke. */
function writeChunk(stream: Writable, chunk: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
}

class FrameSizeError extends Error {
  override readonly name = 'FrameSizeError';
}

/** Writes all of `chunk`: a write may take part of it (a disk filling up) without failing. */
async function writeAll(file: FileHandle, chunk: Buffer): Promise<void> {
  for (let at = 0; at < chunk.byteLength;) {
    const { bytesWritten } = await file.write(chunk, at);
    if (bytesWritten <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    at += bytesWritten;
  }
}

/**
 * A chunk for the watcher (an inspector): taken before the next is asked for, so a slow watcher slows
 * the encode rather than filling memory; one that went away (destroyed its stream) is skipped.
 */
function toWatcher(watched: PassThrough, chunk: Buffer): Promise<void> {
  if (watched.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    // (a stream destroyed with this write pending never calls its callback: its closing says it)
    const done = (): void => {
      watched.off('close', done);
      resolve();
    };
    watched.on('close', done);
    watched.write(chunk, done);
  });
}

/**
 * ffmpeg's second output (the watched copy) from its stdout into the watcher's stream, at the watcher's
 * pace; resolves once ffmpeg's stdout has ended (the stream itself is ended only when the encode has
 * succeeded: a watcher must not take a video that failed for a whole one).
 */
function feedWatcher(stdout: Readable, watched: PassThrough): Promise<void> {
  const drained = new Promise<void>((resolve) => {
    stdout.once('end', resolve);
    stdout.once('close', resolve);
  });
  stdout.on('data', (chunk: Buffer) => {
    // a watcher that went away: the bytes are read and dropped, so ffmpeg never waits on them
    if (watched.destroyed || watched.write(chunk)) return;
    stdout.pause();
    const go = (): void => {
      watched.off('drain', go);
      watched.off('close', go);
      stdout.resume();
    };
    watched.on('drain', go);
    watched.on('close', go);
  });
  return drained;
}

/**
 * ffmpeg's tee muxer names its outputs in a list that `|`, `[`, `]`, `:` and quotes structure: a path
 * with none of those (nor spaces, which it trims) goes in as it is; any other output is not watched.
 */
const TEE_SAFE_PATH = /^[\w/.,+=@%~-]+$/;

/** Options without `name` and its value (the tee's outputs carry their muxer options themselves). */
function without(options: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < options.length; i++) {
    if (options[i] === name) i++;
    else out.push(options[i] as string);
  }
  return out;
}

/** What ffmpeg's AAC encoder puts before the sound (its priming, in samples at the output's 48 kHz). */
const AAC_PRIMING_SAMPLES = 1024;
const AUDIO_RATE = 48000;

/**
 * ffmpeg's fragmented MP4 as it comes out, into the partial file and into the live stream: each chunk is
 * taken by both before the next is asked for, so a slow reader slows the encoder (and with it the
 * renderer) instead of filling memory. A failing live stream fails the encode with
 * AVATAR_ERR_LIVE_OUTPUT_CLOSED; a failing file with the storage error it is.
 */
class LiveTee extends Writable {
  /** bytes the live stream has taken */
  bytes = 0;
  private file: FileHandle | undefined;
  private liveError: unknown;
  private readonly onLiveError = (error: unknown): void => {
    this.liveError ??= error;
  };

  constructor(private readonly path: string, private readonly live: Writable, private readonly watched?: PassThrough) {
    // no 'close' for fluent-ffmpeg to see: it takes a closed output for a failure and kills ffmpeg
    super({ emitClose: false });
    // a reader that goes away shows as an 'error' on the stream, maybe after the write's callback
    live.on('error', this.onLiveError);
  }

  override _construct(callback: (error?: Error | null) => void): void {
    open(this.path, 'w').then((file) => {
      this.file = file;
      callback();
    }, callback);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // the watcher (an inspector) gets a chunk once the viewer has it: the watcher starts a decoding
    // process when a fragment is in, and that start (10-40 ms in which this process stands still) came
    // before the segment was written
    const { watched } = this;
    Promise.all([writeAll(this.file as FileHandle, chunk), this.toLive(chunk)])
      .then(() => (watched ? toWatcher(watched, chunk) : undefined))
      .then(() => callback(), (error: Error) => callback(error));
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.release().then(() => callback(), callback);
  }

  // (the watched stream is ended or destroyed by the encode once it knows how it went: this tee is
  // destroyed after it finishes, too)
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.release().then(() => callback(error), () => callback(error));
  }

  private async release(): Promise<void> {
    this.live.off('error', this.onLiveError);
    const file = this.file;
    this.file = undefined;
    await file?.close();
  }

  private toLive(chunk: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      // a live stream that writes files (HLS) may fail as a disk does; any other failure is its reader's
      const closed = (cause: unknown): AvatarError => storageError(cause) ?? new AvatarError('AVATAR_ERR_LIVE_OUTPUT_CLOSED', { bytes: this.bytes }, { cause });
      if (this.liveError !== undefined || this.live.destroyed || this.live.writableEnded) {
        reject(closed(this.liveError));
        return;
      }
      this.live.write(chunk, (error) => {
        if (error ?? this.liveError) {
          reject(closed(error ?? this.liveError));
          return;
        }
        this.bytes += chunk.byteLength;
        resolve();
      });
    });
  }
}

/**
 * Raw RGBA frames piped into ffmpeg's stdin and encoded with the audio in one pass; no frame touches
 * the disk. A producer that cycles through `ring` buffers lets up to `ring - 1` frames be in flight
 * while it draws the next, so drawing and encoding overlap; with the default of one buffer, each frame
 * is handed to the OS before the next is requested. Either way memory stays flat however long the
 * stream, and no buffer is overwritten while ffmpeg may still read it.
 */
export async function encodeFrames(
  input: {
    frames: FrameStream; audioPath: string; audioStream?: AudioStream; outputPath: string; settings: EncodeSettings; live?: Writable;
    captions?: { path: string; mode: 'soft' | 'burn' }; watch?: (video: WatchedVideo) => void;
  },
  options: EncodeOptions = {},
): Promise<EncodedVideo> {
  const { frames, audioPath, outputPath, live } = input;
  // The stream's own frame rate is the truth: frames were rendered for it.
  const settings: EncodeSettings = { ...input.settings, fps: frames.fps };
  const { width, height } = frames;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 2 || height < 2 || !(frames.fps > 0)) {
    throw encodeFailed(outputPath, `the frame stream is ${width}x${height} at ${frames.fps} fps; need whole sizes of at least 2x2 and fps above 0`);
  }
  // (sound that comes as it is made has no file to check yet)
  const streamed = input.audioStream;
  if (streamed && !(streamed.sampleRate > 0 && Number.isFinite(streamed.sampleRate))) {
    throw encodeFailed(outputPath, `the sound stream's rate is ${streamed.sampleRate} Hz`);
  }
  const [, audio] = await firstFailure([
    checkCommon(streamed ? undefined : audioPath, outputPath, settings, options),
    streamed ? Promise.resolve(undefined) : readAudioInfo(audioPath, { ...options, input: 'audio' }),
  ]);
  if (live && settings.format !== 'mp4') {
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', {
      field: 'output format', problem: 'must be mp4 for live output', value: settings.format, expected: 'Stream MP4, or write WebM to a file.',
    });
  }
  if (frames.pixelFormat === 'yuv420p' && (width % 2 !== 0 || height % 2 !== 0)) {
    throw encodeFailed(outputPath, `a yuv420p frame stream needs even sizes, got ${width}x${height}`);
  }
  const expected = frames.frameCount;
  const videoSeconds = expected / frames.fps;
  const log = options.log ?? silentLogger;
  if (audio && expected > 0 && Math.abs(videoSeconds - audio.durationSeconds) > 1 / frames.fps + 0.05) {
    log.warn('frame count and audio length differ', { videoSeconds, audioSeconds: audio.durationSeconds });
  }

  // the watched copy ends only once the encode has succeeded (file checked and in place); else it is destroyed
  const watching: { stream?: PassThrough } = {};
  try {
    const video = await encodeFramesInto(input, settings, options, (stream) => { watching.stream = stream; });
    watching.stream?.end();
    return video;
  } catch (error) {
    watching.stream?.destroy(isAvatarError(error) ? error : undefined);
    throw error;
  }
}

/** encodeFrames' work once its inputs are checked: ffmpeg, the frames into it, the file in place. */
async function encodeFramesInto(
  input: Parameters<typeof encodeFrames>[0],
  settings: EncodeSettings,
  options: EncodeOptions,
  onWatched: (watched: PassThrough) => void,
): Promise<EncodedVideo> {
  const { frames, audioPath, outputPath, live, captions, watch } = input;
  const { width, height } = frames;
  const geometry = outputGeometry(width, height, settings.size);
  const yuv = frames.pixelFormat === 'yuv420p';
  const frameBytes = yuv ? (width * height * 3) / 2 : width * height * 4;
  const frameKind = yuv ? 'yuv420p' : 'RGBA';
  const expected = frames.frameCount;
  return withPartialOutput(outputPath, settings, options, async (job) => {
    job.log.info('encoding frame stream', { width: geometry.width, height: geometry.height, frames: expected, fps: frames.fps, format: settings.format, live: live !== undefined });
    // A watcher (an inspector measuring while the video is made) gets fragmented MP4: a live encode's own
    // bytes, or else a second output of the same packets through ffmpeg's tee muxer on its stdout.
    const watchable = watch && settings.format === 'mp4' && (live || TEE_SAFE_PATH.test(job.partialPath));
    if (watch && !watchable) job.log.debug('the video is not watched while it is encoded', { reason: settings.format !== 'mp4' ? 'not MP4' : 'a path the tee muxer cannot take' });
    const watched = watchable ? new PassThrough() : undefined;
    if (watched) {
      // its failure is the encode's to report; a watcher learns it from the stream closing before its end
      watched.on('error', () => {});
      onWatched(watched);
    }
    const teeToStdout = watched !== undefined && !live;
    const tee = live ? new LiveTee(job.partialPath, live, watched) : undefined;
    // (fluent-ffmpeg listens only once ffmpeg is spawned: a file that cannot be opened fails before; the
    // failure reaches the run through ffmpeg's end and streamFinished below)
    tee?.on('error', () => {});
    // frames drawn on a GPU go to its NVENC when it has one; ffmpeg then only muxes the H.264 it makes
    const choice = chooseGpuEncoder(frames, settings, {
      burn: captions?.mode === 'burn', resized: geometry.filter !== 'null', live: live !== undefined, ffmpegVersion: await toolVersion('ffmpeg', job.tools.ffmpeg),
    });
    const gpu = choice.ok ? choice.gpu : undefined;
    // (a whole number of frames a second: YUV4MPEG's rate is a ratio, and -r's parsing of another number
    // is not repeated here)
    const y4m = yuv && !gpu && Number.isInteger(frames.fps);
    try {
      if (choice.ok) {
        job.computePath = { path: `nvenc (${choice.gpu.device})` };
        choice.gpu.frames.leaveOnGpu();
        job.log.info(`the video is encoded on the GPU (${choice.gpu.device}) by NVENC, from the frames where they are drawn`);
      } else {
        job.computePath = { ...computePathOf(settings), notUsed: `nvenc: ${choice.reason}` };
        if (frames.gpu) job.log.info(`the video is encoded on the CPU (${computePathOf(settings).path}): NVENC is not used: ${choice.reason}`);
      }
      const command = framesCommand(job, {
        settings, filter: geometry.filter,
        video: gpu ? { kind: 'h264' } : y4m ? { kind: 'y4m' } : { kind: 'raw', pixelFormat: yuv ? 'yuv420p' : 'rgba', width, height },
        sound: input.audioStream ? { sampleRate: input.audioStream.sampleRate } : { path: audioPath },
        ...(captions && { captions }), live: live !== undefined, output: tee ? { stream: tee } : { file: job.partialPath, teeToStdout },
      }, { take: (pid) => job.log.debug('ffmpeg started ahead of the encode taken', { pid }) });
      if (watched) {
        watch?.({ bytes: watched, width: geometry.width, height: geometry.height, fps: frames.fps, audioPrimingSamples: AAC_PRIMING_SAMPLES, audioSampleRate: AUDIO_RATE });
      }
      const running = start(command, job, () => {});

      const stop = new Stop<'aborted' | 'exited'>();
      const onAbort = (): void => {
        running.stop();
        stop.stop('aborted');
      };
      job.signal?.addEventListener('abort', onAbort, { once: true });
      if (job.signal?.aborted) onAbort();

      const iterator = frames.frames[Symbol.asyncIterator]();
      // a sound stream that failed is why ffmpeg stopped: the run reports it, not ffmpeg's end
      let soundFailure: unknown;
      let written = 0;
      let finished = false;
      try {
        const proc = await stop.race(running.started);
        if (proc === 'aborted') throw cancelled();
        if (proc === 'exited' || !proc?.stdin) {
          await running.done; // a spawn failure: `done` carries the reason
          throw encodeFailed(outputPath, 'ffmpeg did not start');
        }
        const stdin = proc.stdin;
        const fed = teeToStdout && watched && proc.stdout ? feedWatcher(proc.stdout, watched) : undefined;
        // the sound goes in as it comes, beside the frames (it leads them: a frame is drawn once the
        // speech is 0.6 s past it); a failing sound stream fails the encode
        const audioPipe = input.audioStream ? proc.stdio[3] : undefined;
        const sounding = input.audioStream && audioPipe && 'write' in audioPipe ? feedAudio(audioPipe as Writable, input.audioStream.chunks, job.signal ?? new AbortController().signal) : undefined;
        sounding?.catch((error: unknown) => {
          soundFailure = error;
          running.stop();
        });
        // A broken pipe is reported through the write callback; ffmpeg's exit carries the reason.
        stdin.on('error', () => {});
        const exit = (): void => stop.stop('exited');
        running.done.then(exit, exit);
        // writes not yet taken by the OS; each holds one of the producer's buffers
        const maxInFlight = Math.max(1, Math.floor(frames.ring ?? 1) - 1);
        const inFlight: Promise<void>[] = [];
        /** Hands a chunk to ffmpeg's stdin; false once ffmpeg stopped reading (`done` says why). */
        const send = async (chunk: Uint8Array): Promise<boolean> => {
          // (a YUV4MPEG stream: its header, then each frame after a line of its own; both are copied
          // into the stream's buffer, so they ask nothing of the frame's ring)
          if (y4m) stdin.write(written === 0 ? Buffer.from(`${y4mHeader(width, height, frames.fps)}FRAME\n`, 'latin1') : Y4M_FRAME);
          const write = writeChunk(stdin, chunk);
          write.catch(() => {}); // awaited below or after the loop; this keeps an early failure from going unobserved
          inFlight.push(write);
          if (inFlight.length < maxInFlight) return true;
          try {
            await inFlight.shift();
            return true;
          } catch {
            return false;
          }
        };
        // On NVENC, a frame is encoded on the thread pool while the next one is drawn; its bytes go to
        // ffmpeg in order once it is done (two frames at most between drawn and written).
        const queue = gpu ? new GpuEncodeQueue(gpu) : undefined;
        const encoding: Promise<Buffer>[] = [];
        const sendEncoded = async (): Promise<boolean> => send(await (encoding.shift() as Promise<Buffer>));
        let reading = true;
        for (;;) {
          const pending = iterator.next();
          pending.catch(() => {}); // still observed below; this only keeps a late rejection after abort quiet
          const next = await stop.race(pending);
          if (next === 'aborted') throw cancelled();
          if (next === 'exited') break;
          if (next.done) {
            finished = true;
            break;
          }
          const frame = next.value;
          if (frame.byteLength !== frameBytes) {
            throw new FrameSizeError(
              `frame ${written + 1} has ${frame.byteLength} bytes; a ${width}x${height} ${frameKind} frame has ${frameBytes}`,
            );
          }
          if (queue) {
            const encoded = queue.push(frame);
            encoded.catch(() => {}); // awaited in order below; this keeps a failure after another quiet
            encoding.push(encoded);
            if (encoding.length >= 2 && !(reading = await sendEncoded())) break;
          } else if (!(reading = await send(frame))) {
            break; // ffmpeg stopped reading: `done` says why
          }
          written += 1;
          // (frames drawn as the speech is made: as many as the sound has, once the speech is whole)
          const total = expected > 0 ? expected : Math.round((input.audioStream?.seconds?.() ?? 0) * frames.fps);
          if (total > 0) options.progress?.(Math.min(0.99, written / total), 'encoding');
        }
        while (reading && finished && encoding.length > 0) reading = await sendEncoded();
        if (!reading) finished = false;
        try {
          await Promise.all(inFlight.splice(0));
        } catch {
          finished = false;
        }
        if (finished && gpu) await writeChunk(stdin, gpu.encoder.finish()).catch(() => { finished = false; });
        // (ffmpeg would refuse a YUV4MPEG stream without a header: what is wrong is the frames)
        if (finished && written === 0) throw encodeFailed(outputPath, 'the frame stream had no frames');
        if (finished) stdin.end();
        await running.done;
        await sounding;
        // the last fragments may still be on their way to the file and the readers
        if (tee) await streamFinished(tee);
        await fed;
        if (!finished) throw encodeFailed(outputPath, `ffmpeg stopped after ${written} frames`);
        if (written === 0) throw encodeFailed(outputPath, 'the frame stream had no frames');
        if (expected > 0 && written !== expected) {
          job.log.warn('frame stream length differs from its frameCount', { frameCount: expected, written });
        }
        options.progress?.(1, 'encoded');
      } catch (error) {
        running.stop();
        await running.done.catch(() => {});
        // the tee's own failure (its file, its reader) is the cause whatever ffmpeg said of it
        const teeError = tee?.errored;
        tee?.destroy();
        if (!finished) void Promise.resolve(iterator.return?.()).catch(() => {});
        if (error instanceof FrameSizeError) throw encodeFailed(outputPath, error.message, error);
        // (the native encoder's failures name the NVENC or CUDA call)
        if (gpu && !isAvatarError(error) && error instanceof Error && /^NVENC /.test(error.message)) throw encodeFailed(outputPath, error.message, error);
        if (teeError && !isAvatarError(error, 'AVATAR_ERR_CANCELLED')) throw isAvatarError(teeError) ? teeError : storageError(teeError) ?? error;
        if (soundFailure !== undefined && !isAvatarError(error, 'AVATAR_ERR_CANCELLED')) throw soundFailure;
        throw error;
      } finally {
        job.signal?.removeEventListener('abort', onAbort);
      }
    } finally {
      // the session and its GPU memory go now, whatever happened
      gpu?.encoder.close();
    }
  });
}

/** What the command for a stream of frames depends on: the same plan gives the same command line. */
interface FramesPlan {
  /** fps is the frames' own */
  settings: EncodeSettings;
  /** outputGeometry's filter for the frames' size */
  filter: string;
  /**
   * What comes in on stdin: H.264 made on a GPU by NVENC (ffmpeg then only muxes it), I420 frames as a
   * YUV4MPEG stream (its header says their size and rate), or raw frames of a size and rate it is told
   */
  video: { kind: 'h264' } | { kind: 'y4m' } | { kind: 'raw'; pixelFormat: 'rgba' | 'yuv420p'; width: number; height: number };
  /** sound as it is made (16-bit mono at this rate, on fd 3), or a file */
  sound: { sampleRate: number } | { path: string };
  captions?: { path: string; mode: 'soft' | 'burn' };
  live: boolean;
  /**
   * where the video goes: a stream fed from stdout (the live tee), or a file (with `teeToStdout`, also as
   * fragmented MP4 on stdout for a watcher, through ffmpeg's tee muxer)
   */
  output: { stream: Writable } | { file: string; teeToStdout: boolean };
}

/**
 * The ffmpeg command that encodes a stream of frames. A live run's command line is known before its
 * frames are (I420 frames and sound as they are made come as streams that say their own size and rate),
 * so the run starts it ahead (startEncodeAhead) and the encode takes that process (`ahead`).
 */
function framesCommand(job: Pick<Job, 'tools'>, plan: FramesPlan, ahead: Ahead): ffmpeg.FfmpegCommand {
  const { settings, video, live, captions, output } = plan;
  const teeToStdout = 'file' in output && output.teeToStdout;
  const gpu = video.kind === 'h264';
  const codec = codecArgs(settings, false, { live });
  const command = newCommand(job, ahead);
  if (video.kind === 'h264') command.input('pipe:0').inputFormat('h264').inputOptions(['-framerate', String(settings.fps)]);
  else if (video.kind === 'y4m') command.input('pipe:0').inputFormat('yuv4mpegpipe');
  else command.input('pipe:0').inputFormat('rawvideo').inputOptions(['-pix_fmt', video.pixelFormat, '-s', `${video.width}x${video.height}`, '-r', String(settings.fps)]);
  // sound as it is made comes through a pipe of its own (fd 3) beside the frames on stdin. ffmpeg reads
  // 2-3 s of it before it takes a frame unless told that there is nothing to find out about raw samples
  // (measured: with 1.5 s of sound in the pipe it took two frames and waited; with these, all of them,
  // the first fragment out once 0.9 s was in): the first fragment then need not wait for later sentences.
  const { sound } = plan;
  const streamed = 'sampleRate' in sound;
  if ('sampleRate' in sound) command.input('pipe:3').inputFormat('s16le').inputOptions(['-ar', String(sound.sampleRate), '-ac', '1', '-probesize', '32', '-analyzeduration', '0']);
  else command.input(sound.path);
  if (streamed || teeToStdout) {
    spawnWith(command, (spawnOptions) => ({
      ...spawnOptions,
      ...(streamed && { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] }),
      // the watched copy is read as bytes; fluent-ffmpeg would keep its tail as text too
      ...(teeToStdout && { captureStdout: false }),
    }));
  }
  // soft captions: a subtitle track (mov_text in MP4, WebVTT in WebM); a live stream carries none (its
  // segments are video and audio), the files beside it have them
  const soft = captions?.mode === 'soft' && !live;
  if (soft) command.input(captions.path).inputFormat('webvtt');
  // I420 frames already are BT.709 limited range: only RGBA needs converting
  const filters = [video.kind === 'raw' && video.pixelFormat === 'rgba' ? `${plan.filter},${COLOR_FILTER}` : `${plan.filter},setsar=1`];
  if (captions?.mode === 'burn') filters.push(burnFilter(captions.path));
  // (spread, not an array: fluent-ffmpeg splits an array's element that holds one space in two, and a
  // caption file's path or style may hold one)
  const outputOptions = [
    '-map', '0:v:0', '-map', '1:a:0',
    ...(soft ? ['-map', '2:s:0', '-c:s', settings.format === 'webm' ? 'webvtt' : 'mov_text', '-metadata:s:s:0', 'language=und'] : []),
    // NVENC's stream has no timestamps of its own and no B-frames: picture n is shown at n / fps
    ...(gpu ? ['-bsf:v', `setts=ts=N/(${settings.fps}*TB)`, ...mp4Container(settings, live)] : ['-vf', filters.join(','), '-r', String(settings.fps), ...codec.options]),
  ];
  return command
    .outputOptions(
      '-hide_banner',
      // the tee muxer's outputs take the codecs' headers from their global extradata, which the
      // encoders only write when asked; the file's decoded frames and sound are the same either way
      ...(teeToStdout ? [...without(outputOptions, '-movflags'), '-flags', '+global_header'] : outputOptions),
    )
    .videoCodec(gpu ? 'copy' : codec.videoCodec)
    .audioCodec(codec.audioCodec)
    .format(teeToStdout ? 'tee' : codec.muxer)
    // (the file: onfail=abort, which ffmpeg 5.1 does not take as the default it documents, so a full
    // disk ends the encode; the watched copy: onfail=ignore, so a watcher that goes away costs the file
    // nothing, and a fragment a second whether or not a key frame starts it: a file's encode puts one key
    // frame in 10 s, and its watcher, which starts on its second fragment, then measured the video once
    // it was all but encoded, after the encode rather than beside it: 10.6 s clip 2.87 -> 2.63 s)
    .output('stream' in output ? output.stream : teeToStdout ? `[f=mp4:movflags=+faststart:onfail=abort]${output.file}|[f=mp4:movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=1000000:onfail=ignore]pipe:1` : output.file);
}

/**
 * Starts the ffmpeg of a live encode of drawn frames (I420, on the CPU) with its sound as it is made,
 * before the frames exist: the encode with these settings takes it (see ahead.ts). Anything else is
 * encoded as before, its ffmpeg started by the encode.
 */
export async function startEncodeAhead(plan: EncodeAhead, paths: FfmpegToolPaths = {}): Promise<void> {
  const { settings, audioStream } = plan;
  if (!plan.live || !audioStream || settings.format !== 'mp4' || !Number.isInteger(settings.fps) || plan.signal.aborted || !aheadSupported()) return;
  // (the formats and encoders fluent-ffmpeg asks for, at hand: no process starts for them)
  await warmUp(paths);
  if (plan.signal.aborted) return;
  const command = framesCommand({ tools: resolveTools(paths) }, {
    settings, filter: 'null', video: { kind: 'y4m' }, sound: { sampleRate: audioStream.sampleRate }, live: true, output: { stream: new PassThrough() },
  }, { keep: plan.signal, standby: plan.standby === true });
  // (it goes no further than the spawn, kept for the encode)
  command.on('error', () => {});
  command.run();
}

/**
 * Checks the binaries and gathers the formats and encoders fluent-ffmpeg consults before every command,
 * so the first encode does not pay for extra ffmpeg runs. The answers are kept on disk while the binaries
 * stay the same; when they must be asked, the four questions go out at once (each is a process start).
 */
export function warmUp(paths: FfmpegToolPaths = {}): Promise<void> {
  const tools = resolveTools(paths);
  const key = `${tools.ffmpeg}\n${tools.ffprobe}`;
  let warm = warmed.get(key);
  if (!warm) {
    // one answer for everyone who asks while it is on its way (a run's early start, then the stage's load)
    warm = firstFailure([toolVersion('ffmpeg', tools.ffmpeg), toolVersion('ffprobe', tools.ffprobe), warmCapabilities(tools.ffmpeg)]).then(() => undefined);
    warmed.set(key, warm);
    warm.catch(() => warmed.delete(key));
  }
  return warm;
}

const warmed = new Map<string, Promise<void>>();

/** Dispatches on the input kind. */
export function encodeVideo(input: EncodeInput, options: EncodeOptions = {}): Promise<EncodedVideo> {
  return input.kind === 'still' ? encodeStill(input, options) : encodeFrames(input, options);
}
