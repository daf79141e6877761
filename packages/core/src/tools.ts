import { spawn } from 'node:child_process';
import { guardedCommand, findExecutable } from './child-guard.js';
import { abortError, isRunning, killChild, killOnAbort } from './child-kill.js';
import { AvatarError } from './errors.js';

// What several engines need from the command-line tools they drive (ffmpeg above all), in one place
// that plugins may import: where the tools are, how to say one is missing, running one, decoding audio.

/** The command that installs ffmpeg and ffprobe on Debian and Ubuntu. */
export const FFMPEG_INSTALL = 'sudo apt-get install -y ffmpeg';

const nonEmpty = (value: string | undefined): string | undefined => (value === undefined || value.trim() === '' ? undefined : value.trim());

/** The ffmpeg to run: $AVATAR_FFMPEG, else "ffmpeg" from PATH (read at each call, so a changed environment counts). */
export function ffmpegPath(): string {
  return nonEmpty(process.env.AVATAR_FFMPEG) ?? 'ffmpeg';
}

/** The ffprobe to run: $AVATAR_FFPROBE, else "ffprobe" from PATH. */
export function ffprobePath(): string {
  return nonEmpty(process.env.AVATAR_FFPROBE) ?? 'ffprobe';
}

/** AVATAR_ERR_TOOL_MISSING for `tool` run as `binary` (named as well when it is not the plain name). */
export function toolMissing(tool: string, binary: string, install: string, cause?: unknown): AvatarError {
  return new AvatarError('AVATAR_ERR_TOOL_MISSING', { tool: binary === tool ? tool : `${tool} (${binary})`, install }, { cause });
}

/** The absolute path `command` runs from, searched in PATH as the shell does; undefined when absent. */
export async function whichTool(command: string): Promise<string | undefined> {
  return findExecutable(command);
}

export interface ToolRunOptions {
  /** the tool's name in errors ("flite") */
  tool: string;
  /** the command that installs it, for AVATAR_ERR_TOOL_MISSING */
  install: string;
  /** the error a non-zero exit gives, from what the tool said (the end of its stderr, else stdout) */
  failure: (said: string, code: number | null) => Error;
  /** an abort kills the child and rejects with this (default: the signal's reason) */
  cancelled?: () => Error;
  signal?: AbortSignal;
  /** written to the child's stdin, which is then closed */
  stdin?: string;
  cwd?: string;
  /** stdout kept, in characters (default 1 MiB) */
  maxStdout?: number;
  /** told the child's pid once it runs (tests use it to see that a cancelled child is gone) */
  onSpawn?: (pid: number) => void;
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

const KEEP_STDERR = 64 * 1024;

function tail(text: string, max = 2000): string {
  const trimmed = text.trim();
  return trimmed.length > max ? `...${trimmed.slice(-max)}` : trimmed;
}

/**
 * Runs a tool with an argument array (no shell, so text never becomes a command), as a child that dies
 * with this process. ENOENT or EACCES become AVATAR_ERR_TOOL_MISSING with the install command, a
 * non-zero exit the caller's `failure`, an abort kills the child at once (settling once it is gone).
 */
export function runTool(command: string, args: readonly string[], options: ToolRunOptions): Promise<ToolResult> {
  const { signal } = options;
  const cancelled = (): Error => options.cancelled?.() ?? (signal?.reason instanceof Error ? signal.reason : new Error('cancelled'));
  if (signal?.aborted) return Promise.reject(cancelled());
  const maxStdout = options.maxStdout ?? 1024 * 1024;
  return new Promise<ToolResult>((resolve, reject) => {
    const guarded = guardedCommand(command, args);
    const child = spawn(guarded.command, guarded.args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const finish = (error: Error | undefined): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ stdout, stderr });
    };
    // a cancel settles once the child is gone, not when it is told to go: a caller cleaning up after
    // a cancel (a temp folder, the next run) must not race a process still writing
    let killed = false;
    const onAbort = (): void => {
      killed = true;
      killChild(child, 'SIGKILL');
      if (!isRunning(child)) finish(cancelled());
    };
    child.on('exit', () => {
      if (killed) finish(cancelled());
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < maxStdout) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-KEEP_STDERR);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (killed) return finish(cancelled());
      if (error.code === 'ENOENT' || error.code === 'EACCES' || error.code === 'ENOTDIR') finish(toolMissing(options.tool, command, options.install, error));
      else finish(options.failure(error.message, null));
    });
    child.on('spawn', () => {
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
    });
    child.on('close', (code, sig) => {
      if (code === 0) return finish(undefined);
      const said = tail(stderr) || tail(stdout) || (sig ? `killed by ${sig}` : `exit code ${String(code)}`);
      finish(options.failure(said, code));
    });
    // a child that exits before reading stdin must not crash us with EPIPE
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

export interface DecodeAudioOptions {
  /** samples a second of the result */
  sampleRate: number;
  /** Int16 samples (default) or floats in -1..1 */
  format?: 's16' | 'f32';
  /** decode at most this much: a long file costs no more than the limit */
  maxSeconds?: number;
  /** names the file in errors (default "audio") */
  input?: string;
  /** ffmpeg's demuxer for the file, when it must not guess (an upload whose bytes were sniffed) */
  demuxer?: string;
  /** a decode that takes longer is refused as AVATAR_ERR_INPUT_NOT_AUDIO */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface DecodedAudio<T extends Int16Array | Float32Array = Int16Array | Float32Array> {
  samples: T;
  sampleRate: number;
  durationSeconds: number;
}

/**
 * Any audio ffmpeg reads (WAV, MP3, OGG, FLAC, a video's sound...), decoded to mono samples at
 * `sampleRate` through a pipe: nothing touches the disk. What is not audio, or holds none, is
 * AVATAR_ERR_INPUT_NOT_AUDIO with ffmpeg's reason; a missing ffmpeg AVATAR_ERR_TOOL_MISSING.
 */
export function decodeAudio(path: string, options: DecodeAudioOptions & { format: 'f32' }): Promise<DecodedAudio<Float32Array>>;
export function decodeAudio(path: string, options: DecodeAudioOptions & { format?: 's16' }): Promise<DecodedAudio<Int16Array>>;
export async function decodeAudio(path: string, options: DecodeAudioOptions): Promise<DecodedAudio> {
  if (options.signal?.aborted) throw abortError(options.signal);
  const input = options.input ?? 'audio';
  const float = options.format === 'f32';
  const limit = options.maxSeconds !== undefined ? ['-t', String(options.maxSeconds)] : [];
  // local files only: a file that names other files or addresses (a playlist) reads nothing else
  const demuxer = options.demuxer ? ['-f', options.demuxer] : [];
  const args = ['-nostdin', '-hide_banner', '-v', 'error', '-protocol_whitelist', 'file', ...demuxer, '-i', path, ...limit,
    '-map', '0:a:0', '-vn', '-ac', '1', '-ar', String(options.sampleRate), '-f', float ? 'f32le' : 's16le', 'pipe:1'];
  const timeout = options.timeoutMs !== undefined ? AbortSignal.timeout(options.timeoutMs) : undefined;
  const stop = timeout && options.signal ? AbortSignal.any([options.signal, timeout]) : (timeout ?? options.signal);
  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const binary = ffmpegPath();
    const guarded = guardedCommand(binary, args);
    const child = spawn(guarded.command, guarded.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // (SIGKILL: ffmpeg takes a first SIGTERM as a request, and one blocked on a read would hold the
    // cancel, or the time limit, until it ended by itself; its output is thrown away anyway)
    killOnAbort(child, stop, 'SIGKILL');
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4096); });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'EACCES') reject(toolMissing('ffmpeg', binary, FFMPEG_INSTALL, error));
      else reject(error);
    });
    child.on('close', (status) => {
      if (stop?.aborted) {
        if (timeout?.aborted && !options.signal?.aborted) {
          reject(new AvatarError('AVATAR_ERR_INPUT_NOT_AUDIO', { input, path, reason: `decoding took longer than ${Math.round((options.timeoutMs ?? 0) / 1000)}s` }));
        } else reject(abortError(stop));
        return;
      }
      const data = Buffer.concat(chunks);
      if (status === 0 && data.length >= (float ? 4 : 2)) return resolve(data);
      const said = stderr.trim().split('\n').filter(Boolean).slice(-2).join('; ');
      // ffmpeg reads a text file as a "tty" video: it then ends here, with no audio stream
      const reason = !said || /does not contain any stream|matches no streams|Output file #0 does not contain/.test(said)
        ? `it has no audio stream${said ? ` (ffmpeg: ${said})` : ''}`
        : `ffmpeg: ${said}`;
      reject(new AvatarError('AVATAR_ERR_INPUT_NOT_AUDIO', { input, path, reason }));
    });
  });
  const width = float ? 4 : 2;
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length - (bytes.length % width));
  const samples = float ? new Float32Array(copy) : new Int16Array(copy);
  return { samples, sampleRate: options.sampleRate, durationSeconds: samples.length / options.sampleRate };
}

/**
 * A module loaded on first use and kept: for native libraries (sharp takes about 0.1 s to load) that a
 * command which never needs them should not wait for at start.
 */
export function loadOnce<T>(load: () => Promise<T>): () => Promise<T> {
  let loading: Promise<T> | undefined;
  return () => {
    loading ??= load();
    return loading;
  };
}
