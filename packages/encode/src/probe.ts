import { AvatarError, checkReadableFile, readWavInfo } from '@avatar/core';
import { resolveTools, runTool, ToolRunError, meaningfulLines, type FfmpegToolPaths } from './tools.js';

export type MediaStreamType = 'video' | 'audio' | 'subtitle' | 'data' | 'attachment' | 'unknown';

export interface MediaStreamInfo {
  index: number;
  type: MediaStreamType;
  /** ffprobe's codec_name: "h264", "aac", "vp9", "opus", "png", "pcm_s16le"... */
  codec: string;
  width?: number;
  height?: number;
  /** average frame rate (video) */
  fps?: number;
  pixFmt?: string;
  sampleRate?: number;
  channels?: number;
  /** the stream's own duration; for Matroska/WebM read from its DURATION tag */
  durationSeconds?: number;
  /** number of frames (or packets) when the container records it */
  frameCount?: number;
}

export interface MediaInfo {
  path: string;
  /** ffprobe's format_name, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "wav", "png_pipe" */
  formatName: string;
  durationSeconds?: number;
  sizeBytes: number;
  bitRate?: number;
  streams: MediaStreamInfo[];
}

export interface ProbeOptions extends FfmpegToolPaths {
  signal?: AbortSignal;
  /** how errors name the file: "audio", "avatar image"... */
  input?: string;
}

export interface AudioInfo {
  durationSeconds: number;
  sampleRate: number;
  channels: number;
  codec: string;
}

interface RawStream {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  pix_fmt?: string;
  sample_rate?: string;
  channels?: number;
  duration?: string;
  nb_frames?: string;
  tags?: Record<string, string>;
}

interface RawProbe {
  streams?: RawStream[];
  format?: { format_name?: string; duration?: string; size?: string; bit_rate?: string };
}

function num(value: string | number | undefined): number | undefined {
  if (value === undefined || value === 'N/A') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function rate(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const [a, b] = value.split('/').map(Number);
  if (a === undefined || !Number.isFinite(a)) return undefined;
  if (b === undefined) return a > 0 ? a : undefined;
  return b > 0 && a > 0 ? a / b : undefined;
}

/** "00:00:02.345000000" (Matroska's DURATION tag) in seconds. */
function clock(value: string | undefined): number | undefined {
  const m = value ? /^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$/.exec(value.trim()) : null;
  if (!m) return undefined;
  return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
}

const STREAM_TYPES: readonly MediaStreamType[] = ['video', 'audio', 'subtitle', 'data', 'attachment'];

function toStream(raw: RawStream, position: number): MediaStreamInfo {
  const type = STREAM_TYPES.find((t) => t === raw.codec_type) ?? 'unknown';
  const stream: MediaStreamInfo = { index: raw.index ?? position, type, codec: raw.codec_name ?? 'unknown' };
  const duration = num(raw.duration) ?? clock(raw.tags?.DURATION ?? raw.tags?.duration);
  if (duration !== undefined) stream.durationSeconds = duration;
  const frames = num(raw.nb_frames);
  if (frames !== undefined) stream.frameCount = frames;
  if (type === 'video') {
    if (raw.width !== undefined) stream.width = raw.width;
    if (raw.height !== undefined) stream.height = raw.height;
    const fps = rate(raw.avg_frame_rate) ?? rate(raw.r_frame_rate);
    if (fps !== undefined) stream.fps = fps;
    if (raw.pix_fmt) stream.pixFmt = raw.pix_fmt;
  }
  if (type === 'audio') {
    const sampleRate = num(raw.sample_rate);
    if (sampleRate !== undefined) stream.sampleRate = sampleRate;
    if (raw.channels !== undefined) stream.channels = raw.channels;
  }
  return stream;
}

/** A file ffprobe could not make sense of: the message carries ffprobe's own reason. */
export class MediaProbeError extends Error {
  override readonly name = 'MediaProbeError';
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`ffprobe cannot read ${path}: ${reason}`);
  }
}

/** Runs ffprobe -print_format json and returns what it says, plus any warnings it printed. */
async function probeRaw(path: string, options: ProbeOptions): Promise<{ info: MediaInfo; warnings: string }> {
  const { ffprobe } = resolveTools(options);
  const args = ['-v', 'error', '-hide_banner', '-print_format', 'json', '-show_format', '-show_streams', path];
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await runTool('ffprobe', ffprobe, args, options.signal ? { signal: options.signal } : {}));
  } catch (error) {
    if (error instanceof ToolRunError) throw new MediaProbeError(path, meaningfulLines(error.stderr, 2) || 'unknown format');
    throw error;
  }
  let raw: RawProbe;
  try {
    raw = JSON.parse(stdout) as RawProbe;
  } catch {
    throw new MediaProbeError(path, 'ffprobe printed no JSON');
  }
  const format = raw.format ?? {};
  const info: MediaInfo = {
    path,
    formatName: format.format_name ?? 'unknown',
    sizeBytes: num(format.size) ?? 0,
    streams: (raw.streams ?? []).map(toStream),
  };
  const duration = num(format.duration);
  if (duration !== undefined) info.durationSeconds = duration;
  const bitRate = num(format.bit_rate);
  if (bitRate !== undefined) info.bitRate = bitRate;
  return { info, warnings: meaningfulLines(stderr, 2) };
}

/**
 * Describes a media file with ffprobe. A missing or unreadable file throws the input errors;
 * a file ffprobe cannot parse throws AVATAR_ERR_INPUT_FILE_UNREADABLE with ffprobe's reason.
 */
export async function probeMedia(path: string, options: ProbeOptions = {}): Promise<MediaInfo> {
  const input = options.input ?? 'media file';
  await checkReadableFile(path, input);
  try {
    return (await probeRaw(path, options)).info;
  } catch (error) {
    if (error instanceof MediaProbeError) {
      throw new AvatarError('AVATAR_ERR_INPUT_FILE_UNREADABLE', { input, path, reason: error.reason }, { cause: error });
    }
    throw error;
  }
}

/** Duration, sample rate and channels of the first audio stream; anything else is AVATAR_ERR_INPUT_NOT_AUDIO. */
export async function readAudioInfo(path: string, options: ProbeOptions = {}): Promise<AudioInfo> {
  const input = options.input ?? 'audio';
  await checkReadableFile(path, input);
  const notAudio = (reason: string, cause?: unknown): AvatarError =>
    new AvatarError('AVATAR_ERR_INPUT_NOT_AUDIO', { input, path, reason }, { cause });
  // the speech engines write plain WAV: its header says all of this without starting ffprobe
  const wav = await readWavInfo(path);
  if (wav && wav.durationSeconds > 0) return wav;
  let info: MediaInfo;
  try {
    ({ info } = await probeRaw(path, options));
  } catch (error) {
    if (error instanceof MediaProbeError) throw notAudio(error.reason, error);
    throw error;
  }
  const audio = info.streams.find((s) => s.type === 'audio');
  if (!audio) throw notAudio(`no audio stream in ${info.formatName}`);
  const durationSeconds = audio.durationSeconds ?? info.durationSeconds;
  if (durationSeconds === undefined || !(durationSeconds > 0)) throw notAudio('its duration is unknown or zero');
  if (!audio.sampleRate || !audio.channels) throw notAudio('sample rate or channel count unknown');
  return { durationSeconds, sampleRate: audio.sampleRate, channels: audio.channels, codec: audio.codec };
}

export interface ImageInfo {
  width: number;
  height: number;
  codec: string;
}

/**
 * Size of a still image. ffprobe decodes the picture to learn its size, so a damaged or fake image
 * (a text file named .png) comes back as 0x0 with the decoder's complaint, which becomes the reason.
 */
export async function readImageInfo(path: string, options: ProbeOptions = {}): Promise<ImageInfo> {
  const input = options.input ?? 'image';
  await checkReadableFile(path, input);
  const notImage = (reason: string, cause?: unknown): AvatarError =>
    new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason }, { cause });
  let probed: { info: MediaInfo; warnings: string };
  try {
    probed = await probeRaw(path, options);
  } catch (error) {
    if (error instanceof MediaProbeError) throw notImage(error.reason, error);
    throw error;
  }
  const { info, warnings } = probed;
  const video = info.streams.find((s) => s.type === 'video');
  if (!video) throw notImage(`no picture in ${info.formatName}`);
  if (!(info.formatName === 'image2' || info.formatName.endsWith('_pipe'))) {
    throw notImage(`it is a ${info.formatName} video, not a still image`);
  }
  if (!video.width || !video.height) throw notImage(warnings || `the ${video.codec} decoder could not read it`);
  return { width: video.width, height: video.height, codec: video.codec };
}
