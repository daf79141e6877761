import { execFile, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { AvatarError, FFMPEG_INSTALL, abortError, checkReadableFile, ffmpegPath, ffprobePath, killChild, killOnAbort, readMp4Summary, toolMissing } from '@avatar/core';
import type { WatchedVideo } from '@avatar/core';
import { CropStore } from './crops.js';
import { clamp, pearson, quantile, speechGate, toDb } from './dsp.js';

/** A rectangle in the video's own pixels. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface InspectOptions {
  /** the mouth region in video pixels */
  mouthBox: Box;
  /** the face region; when given, the border measure skips any part of it that reaches into the border band */
  faceBox?: Box;
  /** default: $AVATAR_FFMPEG, else "ffmpeg" */
  ffmpegPath?: string;
  /** default: $AVATAR_FFPROBE, else "ffprobe" */
  ffprobePath?: string;
  /** lags searched each way, in frames (default 5) */
  maxLagFrames?: number;
  /** width of the border band as a fraction of each side (default 0.08) */
  borderFraction?: number;
  /** frames are analysed at most this many pixels on the longer side (default 640) */
  maxAnalysisSize?: number;
  /** the mouth crops kept in memory, in bytes; the rest wait in a temporary file (default CROPS_IN_MEMORY_BYTES) */
  cropMemoryBytes?: number;
  /** where that file is made (a run's work folder, on its storage's disk); default the system's temporary folder */
  scratchDir?: string;
  /**
   * The video as it is encoded (fragmented MP4, the same packets as the file at `path`, which is not
   * finished yet): measured from these bytes as they come, with the encoder's audio priming dropped,
   * so the figures are those of the file.
   */
  watching?: WatchedVideo;
  signal?: AbortSignal;
}

/** Best lag of a cross-correlation search. */
export interface LagMeasure {
  /** frames; positive = the mouth moves after the sound (video late), negative = before it */
  lagFrames: number;
  lagSeconds: number;
  /** Pearson correlation at that lag (-1..1) */
  correlation: number;
  /** correlation at every lag from -maxLag to +maxLag */
  byLag: number[];
}

/**
 * What the inspector measured, from the finished file alone (no renderer numbers). All motion
 * figures are mean absolute differences in 8-bit luma levels (the video's own Y values) per pixel.
 */
export interface InspectionReport {
  path: string;
  video: {
    width: number;
    height: number;
    fps: number;
    frameCount: number;
    durationSeconds: number;
    /** the size frames were analysed at (downscaled when larger than maxAnalysisSize) */
    analysedWidth: number;
    analysedHeight: number;
  };
  audio: {
    durationSeconds: number;
    /** frames whose audio is above the speech gate */
    speechFrames: number;
    /** frames well inside silences (at least 3 frames from any speech) */
    silentFrames: number;
  };
  /** mouth openness (distance of the mouth region from its silent appearance) against the audio envelope */
  sync: LagMeasure;
  /** mouth motion (frame-to-frame change) against changes of the audio envelope */
  motionSync: LagMeasure;
  silence: {
    /** mouth motion in silences / mouth motion in speech; ~0 for a mouth that rests while nothing is said */
    stillnessRatio: number | null;
    /** mouth distance from its silent appearance in silences / in speech; low = the mouth returns to one resting shape */
    closureRatio: number | null;
  };
  borders: {
    /** mean frame-to-frame change in the border band, outside the face box */
    meanMotion: number;
    /** the largest single-frame change there */
    maxMotion: number;
    /** the band's width as a fraction of each side */
    bandFraction: number;
    /** pixels in the band that were measured (the face box removed) */
    pixels: number;
  };
  sharpness: {
    /** mean variance of the Laplacian inside the mouth box while speaking / at rest */
    speaking: number | null;
    rest: number | null;
    /** speaking / rest; ~1 = the mouth stays as sharp while it moves, below 1 = it blurs */
    ratio: number | null;
  };
  /** seconds the inspection took */
  elapsedSeconds: number;
}

/** What the inspector needs to know of a video before it measures; exported for tests only. */
export interface Probe {
  width: number;
  height: number;
  fps: number;
  frameCount: number | undefined;
  videoStart: number;
  audioStart: number | undefined;
  duration: number;
}

function toolError(tool: string, binary: string, error: { code?: string | number | null | undefined }): AvatarError | undefined {
  return error.code === 'ENOENT' || error.code === 'EACCES' ? toolMissing(tool, binary, FFMPEG_INSTALL, error) : undefined;
}

const notVideo = (path: string, reason: string): AvatarError => new AvatarError('AVATAR_ERR_INPUT_NOT_VIDEO', { input: 'video', path, reason });

function rate(text: string | undefined): number {
  const [n, d] = (text ?? '').split('/').map(Number);
  return n && d ? n / d : Number(n) || 0;
}

export async function probe(path: string, ffprobe: string, signal: AbortSignal | undefined): Promise<Probe> {
  const args = ['-v', 'error', '-show_entries', 'stream=codec_type,width,height,avg_frame_rate,r_frame_rate,start_time,nb_frames:format=duration', '-of', 'json', path];
  const stdout = await new Promise<string>((resolve, reject) => {
    const child = execFile(ffprobe, args, { encoding: 'utf8', maxBuffer: 1 << 22 }, (error, out, err) => {
      if (!error) return resolve(out);
      reject(toolError('ffprobe', ffprobe, error) ?? (signal?.aborted ? abortError(signal) : notVideo(path, err.trim().split('\n').pop() || 'ffprobe cannot read it')));
    });
    killOnAbort(child, signal, 'SIGKILL');
  });
  const info = JSON.parse(stdout) as { streams?: Array<Record<string, string | number | undefined>>; format?: { duration?: string } };
  const streams = info.streams ?? [];
  const v = streams.find((s) => s.codec_type === 'video');
  const a = streams.find((s) => s.codec_type === 'audio');
  if (!v || !Number(v.width) || !Number(v.height)) throw notVideo(path, 'it has no video stream');
  if (!a) throw notVideo(path, 'it has no audio track to compare the mouth with');
  const fps = rate(String(v.avg_frame_rate ?? '')) || rate(String(v.r_frame_rate ?? ''));
  if (!(fps > 0)) throw notVideo(path, 'its frame rate is unknown');
  const frames = Number(v.nb_frames);
  return {
    width: Number(v.width),
    height: Number(v.height),
    fps,
    frameCount: Number.isFinite(frames) && frames > 0 ? frames : undefined,
    videoStart: Number(v.start_time) || 0,
    audioStart: Number(a.start_time) || 0,
    duration: Number(info.format?.duration) || 0,
  };
}

/**
 * The same facts from an MP4's movie box, read in this process: a finished video is nearly always the
 * encoder's own MP4, and ffprobe's process start is the slower part of a look at it. Undefined for
 * anything the reader does not fully follow (no audio, an edit list it leaves to ffmpeg, not MP4).
 */
export async function probeMp4(path: string): Promise<Probe | undefined> {
  const mp4 = await readMp4Summary(path);
  const v = mp4?.tracks.find((t) => t.type === 'video');
  const a = mp4?.tracks.find((t) => t.type === 'audio');
  if (!mp4 || !v?.width || !v.height || !v.frameRate || v.startSeconds === undefined || a?.startSeconds === undefined) return undefined;
  return {
    width: v.width,
    height: v.height,
    fps: v.frameRate,
    frameCount: v.sampleCount || undefined,
    videoStart: v.startSeconds,
    audioStart: a.startSeconds,
    duration: mp4.durationSeconds,
  };
}

/**
 * Runs ffmpeg and hands what it writes over in chunks; never writes anything to disk. Output k of
 * `outputs` is ffmpeg's `pipe:1` for k = 0 and `pipe:<k + 2>` after that (extra pipes beside stderr).
 * `onStart` gets the streams, for a caller that needs to pause one.
 */
function decode(
  ffmpeg: string,
  args: string[],
  path: string,
  signal: AbortSignal | undefined,
  outputs: ((chunk: Buffer) => void)[],
  onStart?: (streams: Readable[]) => void,
  feed?: { stream: Readable; head: Buffer[] },
): Promise<void> {
  const input = feed?.stream;
  return new Promise((resolve, reject) => {
    const extra = outputs.slice(1).map(() => 'pipe' as const);
    // SIGKILL on abort: a decode whose output the caller paused is blocked writing into a full pipe,
    // and ffmpeg's SIGTERM handler lets that write resume, so SIGTERM would leave it running
    const child = spawn(ffmpeg, ['-v', 'error', ...(input ? [] : ['-nostdin']), ...args], { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe', ...extra] });
    killOnAbort(child, signal, 'SIGKILL');
    let stderr = '';
    let failed: unknown;
    if (input && child.stdin) {
      // the bytes as they come; a stream that stops short of its end (the encode failed) is no video
      let whole = input.readableEnded;
      input.once('end', () => { whole = true; });
      const stopped = (): void => {
        if (whole) return;
        failed ??= notVideo(path, 'the encode stopped before the video was whole');
        killChild(child, 'SIGKILL');
      };
      // (it may have gone while its first fragment was awaited)
      if (input.destroyed) stopped();
      else input.once('close', stopped);
      input.on('error', () => {});
      child.stdin.on('error', () => {});
      // what was read before the decode started, then the rest as it comes
      for (const chunk of feed.head) child.stdin.write(chunk);
      input.pipe(child.stdin);
      // once ffmpeg is gone, the encoder must not wait on a reader that is not there
      child.once('close', () => input.destroy());
    }
    const streams = outputs.map((_, k) => child.stdio[k === 0 ? 1 : k + 2] as Readable);
    onStart?.(streams);
    streams.forEach((stream, k) => stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      try { (outputs[k] as (chunk: Buffer) => void)(chunk); } catch (error) { failed = error; killChild(child, 'SIGKILL'); }
    }));
    child.stderr?.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString('utf8')).slice(-4000); });
    child.on('error', (error: NodeJS.ErrnoException) => reject(toolError('ffmpeg', ffmpeg, error) ?? error));
    child.on('close', (code) => {
      if (signal?.aborted) return reject(abortError(signal));
      if (failed) return reject(failed);
      if (code === 0) return resolve();
      reject(notVideo(path, stderr.trim().split('\n').pop() || `ffmpeg exited with ${code}`));
    });
  });
}

/**
 * Reads a fragmented MP4 up to the end of the chunk that holds its second fragment's `moof` header (or
 * its end), and hands those chunks back; the stream is left paused at that point. Its top-level boxes are
 * walked by their headers, so the name inside a box's data does not count.
 */
function firstFragments(stream: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  if (stream.readableEnded || stream.destroyed) return Promise.resolve(chunks);
  return new Promise((resolve) => {
    let received = 0;
    /** where the next top-level box starts, in the stream */
    let next = 0;
    let fragments = 0;
    /** `n` bytes from `at` on, across chunks; undefined while they are not all in */
    const bytesAt = (at: number, n: number): Buffer | undefined => {
      if (at + n > received) return undefined;
      const out = Buffer.alloc(n);
      let start = 0;
      for (const chunk of chunks) {
        const from = at - start;
        if (from < chunk.length && from + n > 0) chunk.copy(out, Math.max(0, -from), Math.max(0, from), Math.min(chunk.length, from + n));
        start += chunk.length;
      }
      return out;
    };
    const done = (): void => {
      stream.off('data', onData);
      stream.off('end', done);
      stream.off('close', done);
      stream.pause();
      resolve(chunks);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      for (let head = bytesAt(next, 8); head; head = bytesAt(next, 8)) {
        let size = head.readUInt32BE(0);
        if (size === 1) {
          const large = bytesAt(next, 16);
          if (!large) return;
          size = Number(large.readBigUInt64BE(8));
        }
        if (head.toString('latin1', 4, 8) === 'moof') fragments++;
        // (a box to the end of the stream, or not a box: the decode takes it from here, and judges it)
        if (fragments === 2 || size < 8) return done();
        next += size;
      }
    };
    stream.on('data', onData);
    stream.on('end', done);
    stream.on('close', done);
  });
}

/** Frames decoded before the probe answers that are held; past this the decode waits. */
const MAX_WAITING = 32;

/**
 * The sound's mean power per video frame, summed as the decoded samples come (32-bit floats, little
 * endian, in chunks cut anywhere) instead of from the whole sound kept: two minutes at 16 kHz were 7.7
 * MB of floats, twice over when joined. Frame i takes the samples from floor((i / fps + offset) * rate)
 * up to frame i + 1's first, as the sound and the frames line up by their start times; samples come
 * held until the timing is known (the probe), then in order, so the sums are those of the whole sound.
 */
export class FrameEnergy {
  /** the samples seen */
  samples = 0;
  private held: Buffer[] = [];
  private carry: Buffer = Buffer.alloc(0);
  private timing: { fps: number; offset: number } | undefined;
  private frame = 0;
  private first = 0;
  private next = 0;
  /** per frame with samples: the sum of their squares and how many (a map: frame numbers may be huge) */
  private readonly sums = new Map<number, { sum: number; count: number }>();
  /** the current frame's bin, looked up once per frame rather than once per sample */
  private bin: { sum: number; count: number } | undefined;

  constructor(readonly rate: number) {}

  push(chunk: Buffer): void {
    if (this.timing) this.take(chunk);
    else this.held.push(chunk);
  }

  /** The frame rate and where the sound starts against the video (seconds): the held samples go in. */
  start(fps: number, offset: number): void {
    this.timing = { fps, offset };
    this.first = Math.max(0, Math.floor(offset * this.rate));
    this.next = this.boundary(1);
    for (const chunk of this.held.splice(0)) this.take(chunk);
  }

  /** Per frame of `frames`, the power in dB (-120 where no sample falls). */
  levels(frames: number): Float64Array {
    const levels = new Float64Array(frames);
    for (let i = 0; i < frames; i++) {
      const bin = this.sums.get(i);
      levels[i] = bin ? toDb(bin.sum / bin.count) : -120;
    }
    return levels;
  }

  private boundary(frame: number): number {
    const t = this.timing as { fps: number; offset: number };
    return Math.floor((frame / t.fps + t.offset) * this.rate);
  }

  private take(chunk: Buffer): void {
    const bytes = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % 4);
    for (let at = 0; at < whole; at += 4) {
      const j = this.samples++;
      if (j < this.first) continue;
      if (j >= this.next) {
        // straight to the frame whose span holds j, the last one starting at or before it (a probed
        // frame rate however large costs no walk through the empty frames between two samples)
        const t = this.timing as { fps: number; offset: number };
        let f = Math.ceil(((j + 1) / this.rate - t.offset) * t.fps) - 1;
        while (this.boundary(f) > j) f--;
        while (this.boundary(f + 1) <= j) f++;
        this.frame = f;
        this.next = this.boundary(f + 1);
        this.bin = undefined;
      }
      const v = bytes.readFloatLE(at);
      let bin = this.bin;
      if (!bin) {
        bin = this.sums.get(this.frame);
        if (!bin) this.sums.set(this.frame, (bin = { sum: 0, count: 0 }));
        this.bin = bin;
      }
      bin.sum += v * v;
      bin.count += 1;
    }
    this.carry = Buffer.from(bytes.subarray(whole));
  }
}

/**
 * Splits ffmpeg's image2pipe stream of binary PGM pictures ("P5 <width> <height> <maxval>" then one byte
 * per pixel) into frames, whatever the chunks' boundaries. Each frame is handed over in a buffer that
 * is reused for the next: a consumer that keeps one must copy it.
 */
export class PgmFrames {
  private header = '';
  private frame: Buffer = Buffer.alloc(0);
  /** reading a header (true) or a picture's pixels */
  private inHeader = true;
  private width = 0;
  private height = 0;
  private filled = 0;

  constructor(private readonly onFrame: (frame: Buffer, width: number, height: number) => void) {}

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.inHeader) {
        // header: four whitespace-separated fields, then a single whitespace byte before the pixels
        const byte = chunk[at++] as number;
        this.header += String.fromCharCode(byte);
        if (this.header.length > 64) throw new Error('ffmpeg sent a picture header that is not PGM');
        const m = /^P5\s+(\d+)\s+(\d+)\s+(\d+)\s$/.exec(this.header);
        if (!m) continue;
        this.width = Number(m[1]);
        this.height = Number(m[2]);
        if (Number(m[3]) !== 255 || this.width < 1 || this.height < 1) throw new Error(`ffmpeg sent a ${this.header.trim()} picture, not 8-bit grey`);
        this.header = '';
        if (this.frame.length !== this.width * this.height) this.frame = Buffer.alloc(this.width * this.height);
        this.inHeader = false;
        this.filled = 0;
        continue;
      }
      const take = Math.min(this.frame.length - this.filled, chunk.length - at);
      chunk.copy(this.frame, this.filled, at, at + take);
      this.filled += take;
      at += take;
      if (this.filled === this.frame.length) {
        this.inHeader = true;
        this.onFrame(this.frame, this.width, this.height);
      }
    }
  }
}

interface Rect { x0: number; y0: number; x1: number; y1: number }

/** Scales a box to the analysed size and clips it to the frame. */
function rect(box: Box, scale: number, width: number, height: number): Rect {
  return {
    x0: clamp(Math.floor(box.x * scale), 0, width),
    y0: clamp(Math.floor(box.y * scale), 0, height),
    x1: clamp(Math.ceil((box.x + box.width) * scale), 0, width),
    y1: clamp(Math.ceil((box.y + box.height) * scale), 0, height),
  };
}

function checkBox(name: string, box: Box, width: number, height: number): void {
  const ok = [box.x, box.y, box.width, box.height].every(Number.isFinite) && box.width >= 4 && box.height >= 4 &&
    box.x >= 0 && box.y >= 0 && box.x + box.width <= width && box.y + box.height <= height;
  if (!ok) {
    throw new AvatarError('AVATAR_ERR_USAGE', {
      reason: `the ${name} box ${box.x},${box.y},${box.width},${box.height} must be at least 4x4 and lie inside the ${width}x${height} video`,
    });
  }
}

/** Best lag of corr(a[i], b[i + lag]) over -maxLag..maxLag; ties go to the smaller |lag|. */
function bestLag(a: ArrayLike<number>, b: ArrayLike<number>, maxLag: number, fps: number): LagMeasure {
  const n = Math.min(a.length, b.length);
  const byLag: number[] = [];
  let best = 0;
  let bestR = -Infinity;
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    const from = Math.max(0, -lag);
    const to = Math.min(n, n - lag);
    const xa: number[] = [];
    const xb: number[] = [];
    for (let i = from; i < to; i++) { xa.push(a[i] as number); xb.push(b[i + lag] as number); }
    const r = pearson(xa, xb);
    byLag.push(r);
    if (r > bestR + 1e-9 || (Math.abs(r - bestR) <= 1e-9 && Math.abs(lag) < Math.abs(best))) { bestR = r; best = lag; }
  }
  return { lagFrames: best, lagSeconds: best / fps, correlation: bestR, byLag };
}

const meanOf = (values: ArrayLike<number>, pick: (i: number) => boolean): number | null => {
  let sum = 0;
  let n = 0;
  for (let i = 0; i < values.length; i++) if (pick(i)) { sum += values[i] as number; n++; }
  return n ? sum / n : null;
};
const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b <= 0 ? null : a / b);

/** 8-bit formats whose first plane is luma, which ffmpeg's extractplanes filter can take as it is. */
const LUMA_FORMATS = 'yuv420p|yuvj420p|yuv422p|yuvj422p|yuv444p|yuvj444p|gray';

/** Grid points sampled inside the mouth box for the openness measure (at most 64 x 64). */
const GRID = 64;

/**
 * Measures lip sync and stability of a finished video from the outside: decodes the frames (grey,
 * through a pipe) and the audio track (16 kHz mono float), then compares mouth-region change with
 * the audio envelope at the video's frame rate. See docs/lipsync.md for what each figure means.
 */
export async function inspectVideo(path: string, options: InspectOptions): Promise<InspectionReport> {
  const started = performance.now();
  const { watching } = options;
  if (!watching) await checkReadableFile(path, 'video');
  // the decode starts once the second fragment is on its way: its process start (10-25 ms in which this
  // process stands still) would otherwise compete with the encoder while it draws and encodes the first
  // fragment, which is what a live viewer waits for, or hold back the answer to a viewer's first request
  // (a stream that fails is told by its closing before its end; its error is the encoder's to report)
  watching?.bytes.on('error', () => {});
  const head = watching ? await firstFragments(watching.bytes) : [];
  const ffmpeg = options.ffmpegPath ?? ffmpegPath();
  const ffprobe = options.ffprobePath ?? ffprobePath();
  const maxLag = Math.max(1, Math.round(options.maxLagFrames ?? 5));
  const band = clamp(options.borderFraction ?? 0.08, 0.01, 0.45);

  // ---- one ffmpeg decodes both: the frames (measured as they come) and the audio (16 kHz mono float) ----
  // It starts beside the probe rather than after it. ffmpeg scales the frames to the analysis size itself
  // and sends each as a PGM picture, whose header carries its size; frames wait (a few; the decode pauses
  // past MAX_WAITING) until the probe's answer says where the mouth and the borders are.
  const SR = 16000;
  const energy = new FrameEnergy(SR);
  const maxSize = options.maxAnalysisSize ?? 640;
  const fit = `if(gt(max(iw,ih),${maxSize}),max(2,round(%s*${maxSize}/max(iw,ih))),%s)`;
  // Luma is taken as it is: for the usual 8-bit YUV video the format filter passes frames through and
  // extractplanes hands on the Y plane, where a conversion to grey would cost a third of the decode.
  // Anything else (RGB, 10-bit) is converted to a YUV format first.
  const vf = ['-vf', `scale=w='${fit.replace(/%s/g, 'iw')}':h='${fit.replace(/%s/g, 'ih')}':flags=area,format=${LUMA_FORMATS},extractplanes=y`];
  const stopDecode = new AbortController();
  const decodeSignal = options.signal ? AbortSignal.any([options.signal, stopDecode.signal]) : stopDecode.signal;
  let analyse: ((frame: Buffer) => void) | undefined;
  const waiting: Buffer[] = [];
  let frameSize: { width: number; height: number } | undefined;
  let pause: (() => void) | undefined;
  let resume: (() => void) | undefined;
  const pictures = new PgmFrames((frame, width, height) => {
    if (frameSize && (frameSize.width !== width || frameSize.height !== height)) {
      throw notVideo(path, `its frame size changes from ${frameSize.width}x${frameSize.height} to ${width}x${height}`);
    }
    frameSize = { width, height };
    if (analyse) return analyse(frame);
    waiting.push(Buffer.from(frame));
    if (waiting.length >= MAX_WAITING) pause?.();
  });
  // (a watched stream's sound starts with the encoder's priming, which the file's edit list hides: dropped
  // before resampling, the samples are the file's, bit for bit)
  const priming = watching && watching.audioPrimingSamples > 0 ? ['-af', `atrim=start_sample=${Math.round(watching.audioPrimingSamples)}`] : [];
  const decoded = decode(ffmpeg, [
    '-i', watching ? 'pipe:0' : path,
    '-map', '0:v:0', '-fps_mode', 'passthrough', ...vf, '-f', 'image2pipe', '-c:v', 'pgm', 'pipe:1',
    '-map', '0:a:0', ...priming, '-ac', '1', '-ar', String(SR), '-f', 'f32le', 'pipe:3',
  ], path, decodeSignal, [(chunk) => pictures.push(chunk), (chunk) => energy.push(chunk)], ([video]) => {
    pause = () => video?.pause();
    resume = () => video?.resume();
  }, watching && { stream: watching.bytes, head });
  // awaited below; until then a failure must not count as unhandled
  decoded.catch(() => undefined);

  let info: Awaited<ReturnType<typeof probe>>;
  try {
    // a watched stream's frames are the file's from its first: both start at 0, as the file's do
    info = watching
      ? { width: watching.width, height: watching.height, fps: watching.fps, frameCount: undefined, videoStart: 0, audioStart: 0, duration: 0 }
      : (await probeMp4(path)) ?? (await probe(path, ffprobe, options.signal));
    checkBox('mouth', options.mouthBox, info.width, info.height);
    if (options.faceBox) checkBox('face', options.faceBox, info.width, info.height);
  } catch (error) {
    stopDecode.abort();
    resume?.();
    throw error;
  }
  const probed = info;
  energy.start(info.fps, info.videoStart - (info.audioStart ?? 0));

  // every frame's mouth, for the openness measure once the clip's silences are known (crops.ts)
  let crops: CropStore | undefined;
  const mouthMotion: number[] = [];
  const borderMotion: number[] = [];
  const sharp: number[] = [];
  let analysed: { W: number; H: number; bandPixels: Int32Array; grid: Int32Array; mouth: Rect } | undefined;
  /** Everything that depends on the analysis size, once the first frame has told it. */
  const setUp = (W: number, H: number): NonNullable<typeof analysed> => {
    const sx = W / probed.width;
    const mouth = rect(options.mouthBox, sx, W, H);
    const face = options.faceBox ? rect(options.faceBox, sx, W, H) : undefined;
    const bw = Math.max(1, Math.round(W * band));
    const bh = Math.max(1, Math.round(H * band));
    const bandIdx: number[] = [];
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const inBand = x < bw || x >= W - bw || y < bh || y >= H - bh;
        const inFace = face && x >= face.x0 && x < face.x1 && y >= face.y0 && y < face.y1;
        if (inBand && !inFace) bandIdx.push(y * W + x);
      }
    }
    const gx = Math.min(GRID, mouth.x1 - mouth.x0);
    const gy = Math.min(GRID, mouth.y1 - mouth.y0);
    const grid = new Int32Array(gx * gy);
    for (let j = 0; j < gy; j++) {
      for (let i = 0; i < gx; i++) {
        const x = mouth.x0 + Math.floor(((i + 0.5) * (mouth.x1 - mouth.x0)) / gx);
        const y = mouth.y0 + Math.floor(((j + 0.5) * (mouth.y1 - mouth.y0)) / gy);
        grid[j * gx + i] = y * W + x;
      }
    }
    return { W, H, bandPixels: Int32Array.from(bandIdx), grid, mouth };
  };
  let prev: Buffer | undefined;
  let spare: Buffer | undefined;
  let crop: Uint8Array | undefined;
  const onFrame = (cur: Buffer): void => {
    analysed ??= setUp(frameSize?.width ?? 0, frameSize?.height ?? 0);
    const { W, H, bandPixels, grid, mouth } = analysed;
    crops ??= new CropStore(grid.length, { ...(options.cropMemoryBytes !== undefined && { memoryBytes: options.cropMemoryBytes }), ...(options.scratchDir !== undefined && { dir: options.scratchDir }) });
    crop ??= new Uint8Array(grid.length);
    for (let k = 0; k < grid.length; k++) crop[k] = cur[grid[k] as number] as number;
    crops.push(crop);
    // variance of the 4-neighbour Laplacian inside the mouth box (interior pixels)
    let s = 0, ss = 0, n = 0;
    for (let y = Math.max(1, mouth.y0); y < Math.min(H - 1, mouth.y1); y++) {
      for (let x = Math.max(1, mouth.x0); x < Math.min(W - 1, mouth.x1); x++) {
        const o = y * W + x;
        const l = (cur[o - 1] as number) + (cur[o + 1] as number) + (cur[o - W] as number) + (cur[o + W] as number) - 4 * (cur[o] as number);
        s += l; ss += l * l; n++;
      }
    }
    sharp.push(n ? ss / n - (s / n) ** 2 : 0);
    if (prev) {
      let m = 0;
      for (let y = mouth.y0; y < mouth.y1; y++) for (let x = mouth.x0, o = y * W + x; x < mouth.x1; x++, o++) m += Math.abs((cur[o] as number) - (prev[o] as number));
      mouthMotion.push(m / Math.max(1, (mouth.x1 - mouth.x0) * (mouth.y1 - mouth.y0)));
      let b = 0;
      for (let k = 0; k < bandPixels.length; k++) {
        const o = bandPixels[k] as number;
        b += Math.abs((cur[o] as number) - (prev[o] as number));
      }
      borderMotion.push(bandPixels.length ? b / bandPixels.length : 0);
    } else {
      mouthMotion.push(0);
      borderMotion.push(0);
    }
    // keep this frame as the previous one: the parser reuses its buffer, so copy into a spare
    const keep: Buffer = spare && spare.length === cur.length ? spare : Buffer.alloc(cur.length);
    cur.copy(keep);
    spare = prev;
    prev = keep;
  };
  try {
    for (const frame of waiting.splice(0)) onFrame(frame);
    analyse = onFrame;
    resume?.();
    await decoded;
    return measure(crops, path, info, energy, analysed, { mouthMotion, borderMotion, sharp, band, maxLag, started });
  } finally {
    crops?.close();
  }
}

/** The figures, from what the decode gathered (the second pass over the mouth crops happens here). */
function measure(
  crops: CropStore | undefined, path: string, info: { width: number; height: number; fps: number }, energy: FrameEnergy,
  analysed: { W: number; H: number; bandPixels: Int32Array; grid: Int32Array } | undefined,
  series: { mouthMotion: number[]; borderMotion: number[]; sharp: number[]; band: number; maxLag: number; started: number },
): InspectionReport {
  const { mouthMotion, borderMotion, sharp, band, maxLag, started } = series;
  const frames = crops?.length ?? 0;
  if (frames < 2) throw notVideo(path, `it has ${frames} decodable frame${frames === 1 ? '' : 's'}; at least 2 are needed`);

  // ---- envelope at the frame rate, aligned by the streams' start times ----
  const fps = info.fps;
  const levels = energy.levels(frames);
  const gate = speechGate(levels);
  const envelope = Float64Array.from(levels, (l) => (gate.hasSpeech ? clamp((l - gate.floor) / Math.max(1, gate.peak - gate.floor), 0, 1) : 0));
  const speech = Array.from(levels, (l) => gate.hasSpeech && l > gate.threshold);
  const silent = speech.map((_, i) => {
    for (let k = Math.max(0, i - 3); k <= Math.min(frames - 1, i + 3); k++) if (speech[k]) return false;
    return true;
  });

  // rest appearance: the per-point mean over silent frames, else over the quietest tenth
  const restFrames = silent.some(Boolean)
    ? silent.flatMap((s, i) => (s ? [i] : []))
    : (() => { const q = quantile(levels, 0.1); return Array.from(levels.keys()).filter((i) => (levels[i] as number) <= q); })();
  const rest = new Float64Array(analysed?.grid.length ?? 0);
  const isRest = new Uint8Array(frames);
  for (const i of restFrames) isRest[i] = 1;
  for (const [i, c] of crops?.entries() ?? []) {
    if (isRest[i]) for (let k = 0; k < rest.length; k++) rest[k] = (rest[k] as number) + (c[k] as number);
  }
  for (let k = 0; k < rest.length; k++) rest[k] = (rest[k] as number) / restFrames.length;
  const openness: number[] = [];
  for (const [, c] of crops?.entries() ?? []) {
    let d = 0;
    for (let k = 0; k < c.length; k++) d += Math.abs((c[k] as number) - (rest[k] as number));
    openness.push(d / Math.max(1, c.length));
  }
  const envelopeChange = Array.from(envelope, (e, i) => (i === 0 ? 0 : Math.abs(e - (envelope[i - 1] as number))));

  const speakingSharp = meanOf(sharp, (i) => speech[i] === true);
  const restSharp = meanOf(sharp, (i) => silent[i] === true);
  let maxBorder = 0;
  for (const b of borderMotion) maxBorder = Math.max(maxBorder, b);
  return {
    path,
    video: { width: info.width, height: info.height, fps, frameCount: frames, durationSeconds: frames / fps, analysedWidth: analysed?.W ?? 0, analysedHeight: analysed?.H ?? 0 },
    audio: { durationSeconds: energy.samples / energy.rate, speechFrames: speech.filter(Boolean).length, silentFrames: silent.filter(Boolean).length },
    sync: bestLag(envelope, openness, maxLag, fps),
    motionSync: bestLag(envelopeChange, mouthMotion, maxLag, fps),
    silence: {
      stillnessRatio: ratio(meanOf(mouthMotion, (i) => silent[i] === true), meanOf(mouthMotion, (i) => speech[i] === true)),
      closureRatio: ratio(meanOf(openness, (i) => silent[i] === true), meanOf(openness, (i) => speech[i] === true)),
    },
    borders: {
      meanMotion: borderMotion.length > 1 ? borderMotion.slice(1).reduce((a, b) => a + b, 0) / (borderMotion.length - 1) : 0,
      maxMotion: maxBorder,
      bandFraction: band,
      pixels: analysed?.bandPixels.length ?? 0,
    },
    sharpness: { speaking: speakingSharp, rest: restSharp, ratio: ratio(speakingSharp, restSharp) },
    elapsedSeconds: (performance.now() - started) / 1000,
  };
}
