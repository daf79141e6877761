import type { EncodeSettings, EncodingPreset } from '@avatar/core';

export interface OutputGeometry {
  width: number;
  height: number;
  /** the video filter that turns the source picture into width x height (no format conversion) */
  filter: string;
}

const even = (n: number): number => Math.max(2, Math.floor(n / 2) * 2);

/**
 * The output size for a source picture: the longer side becomes `size`, the other follows the aspect
 * ratio, both rounded down to even numbers (yuv420p needs even dimensions).
 *
 * Never upscales: a picture smaller than `size` keeps its own size (rounded down to even), because
 * enlarging a small photo only adds blur and bytes. When the size stays, odd edges are cropped by one
 * pixel rather than resampled, so the picture stays sharp; a real downscale uses lanczos.
 */
export function outputGeometry(sourceWidth: number, sourceHeight: number, size: number): OutputGeometry {
  const longer = Math.max(sourceWidth, sourceHeight);
  const scale = Math.min(1, size / longer);
  if (scale === 1 || (even(sourceWidth) === even(sourceWidth * scale) && even(sourceHeight) === even(sourceHeight * scale))) {
    const width = even(sourceWidth);
    const height = even(sourceHeight);
    const filter = width === sourceWidth && height === sourceHeight ? 'null' : `crop=${width}:${height}:0:0`;
    return { width, height, filter };
  }
  const width = even(sourceWidth * scale);
  const height = even(sourceHeight * scale);
  return { width, height, filter: `scale=${width}:${height}:flags=lanczos` };
}

/**
 * Colour conversion to yuv420p with the BT.709 matrix in limited range, tagged as such, which is
 * what browsers and players assume for web video; swscale's untagged default (BT.601) shifts colours.
 */
export const COLOR_FILTER = 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p,setsar=1';
export const COLOR_TAGS = ['-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709', '-color_range', 'tv'];

export interface Vp9Speed {
  deadline: 'best' | 'good' | 'realtime';
  cpuUsed: number;
}

/**
 * x264 preset names mapped onto libvpx-vp9's speed knobs. "good" with cpu-used 0..5 covers the
 * normal presets (lower is slower and better); the two fastest use the realtime deadline, which is
 * the only mode where libvpx goes faster still; veryslow asks for "best".
 */
export const VP9_SPEED: Readonly<Record<EncodingPreset, Vp9Speed>> = {
  ultrafast: { deadline: 'realtime', cpuUsed: 8 },
  superfast: { deadline: 'realtime', cpuUsed: 7 },
  veryfast: { deadline: 'good', cpuUsed: 5 },
  faster: { deadline: 'good', cpuUsed: 4 },
  fast: { deadline: 'good', cpuUsed: 3 },
  medium: { deadline: 'good', cpuUsed: 2 },
  slow: { deadline: 'good', cpuUsed: 1 },
  slower: { deadline: 'good', cpuUsed: 0 },
  veryslow: { deadline: 'best', cpuUsed: 0 },
};

/**
 * x264's crf scale (0..51) stretched onto VP9's (0..63), so both ends and the middle line up:
 * 18 -> 22, 23 -> 28, 28 -> 35. Used with -b:v 0, which makes libvpx-vp9 a pure constant-quality encoder.
 */
export function vp9Crf(x264Crf: number): number {
  return Math.min(63, Math.max(0, Math.round((x264Crf * 63) / 51)));
}

export interface CodecArgs {
  videoCodec: string;
  audioCodec: string;
  /** muxer name for -f */
  muxer: string;
  options: string[];
}

/**
 * Codec options for the output; `still` adds x264's stillimage tuning; `live` makes the MP4 fragmented
 * (see LIVE_MP4).
 */
export function codecArgs(settings: EncodeSettings, still: boolean, { live = false }: { live?: boolean } = {}): CodecArgs {
  // 48 kHz is what players and browsers expect from MP4/WebM audio; it is also the rate at which
  // ffmpeg's AAC encoder spends the least time on the 16-32 kHz speech the engines produce
  const audio = ['-b:a', `${Math.round(settings.audioBitrateKbps)}k`, '-ar', '48000'];
  if (settings.format === 'webm') {
    const speed = VP9_SPEED[settings.preset] ?? VP9_SPEED.medium;
    return {
      videoCodec: 'libvpx-vp9',
      audioCodec: 'libopus',
      muxer: 'webm',
      options: [
        '-crf', String(vp9Crf(settings.crf)), '-b:v', '0',
        '-deadline', speed.deadline, '-cpu-used', String(speed.cpuUsed),
        // row-based multithreading: several times faster on more than one core, same output quality
        '-row-mt', '1',
        '-pix_fmt', 'yuv420p',
        ...COLOR_TAGS,
        ...audio,
      ],
    };
  }
  return {
    videoCodec: 'libx264',
    audioCodec: 'aac',
    muxer: 'mp4',
    options: [
      '-preset', settings.preset, '-crf', String(live && !still ? liveCrf(settings) : settings.crf),
      // every frame of a still repeats the first: extra reference frames, B-frames and a long
      // lookahead find nothing to gain there, and dropping them halves the encode time at the same size
      ...(still ? ['-tune', 'stillimage', '-x264-params', 'ref=1:bframes=0:rc-lookahead=5'] : []),
      // a fragmented MP4 carries no edit list: B-frames would start the video two frames after the audio
      // (80 ms at 25 fps) in every player. Without them it starts with it; the file is a little larger.
      ...(live && !still ? ['-bf', '0', ...firstFragmentSooner(settings)] : []),
      '-pix_fmt', 'yuv420p',
      ...COLOR_TAGS,
      ...mp4Container(settings, live),
    ],
  };
}

/**
 * A live encode's first fragment out sooner. x264 hands a fragment out only once its lookahead and frame
 * threads are past the fragment's end: about 48 frames in for a first fragment of one second at
 * veryfast, which on a long first sentence waits for that sentence's speech. A first key frame at half a
 * second (one I-frame more: 5 % on a 10 s clip at medium, less on a longer one) and, at veryfast, a
 * lookahead of 5 frames instead of 10 bring the first fragment out at 291-354 ms after the run's start
 * instead of 459 (one process, medium). The file of a live run comes from the same encode.
 */
function firstFragmentSooner(settings: EncodeSettings): string[] {
  const early = ['-force_key_frames', `expr:eq(n,${Math.max(1, Math.floor(settings.fps / 2))})`];
  const shorter = SHORTER_LOOKAHEAD[settings.preset];
  return shorter ? ['-rc-lookahead', String(shorter.frames), ...early] : early;
}

/**
 * x264 presets whose lookahead a live encode shortens, and the crf lower by which the quality stays (PSNR
 * against the same clip rendered at `high`): at veryfast a lookahead of 5 loses 0.9 dB at the same crf and
 * 1.5 lower buys it back (+8 % size, the early key frame included). Measured for veryfast only; at slow
 * (lookahead 50) 5 lost 1.9 dB and 1.5 lower still 0.8, so the slow presets keep theirs; ultrafast and
 * superfast have no lookahead worth the name (no mbtree).
 */
const SHORTER_LOOKAHEAD: Readonly<Partial<Record<string, { frames: number; crfLower: number }>>> = {
  veryfast: { frames: 5, crfLower: 1.5 },
};

/** A live encode's crf: lower by what its shorter lookahead costs, never down to 0 (lossless, which browsers do not play). */
function liveCrf(settings: EncodeSettings): number {
  const lower = SHORTER_LOOKAHEAD[settings.preset]?.crfLower ?? 0;
  return Math.max(Math.min(settings.crf, 1), settings.crf - lower);
}

/**
 * The audio and the MP4 container's options, without a video encoder's: what remains when the video
 * comes already encoded (NVENC's H.264, copied).
 */
export function mp4Container(settings: EncodeSettings, live: boolean): string[] {
  return [
    '-b:a', `${Math.round(settings.audioBitrateKbps)}k`, '-ar', '48000',
    // the index (moov) before the data, so a browser starts playing before the download ends
    ...(live ? liveMp4(settings.fps) : ['-movflags', '+faststart']),
  ];
}

/**
 * A fragmented MP4 that a player can start on as it arrives: the header first with no samples in it
 * (empty_moov), then one fragment per key frame, a key frame every second (x264's first one at half a
 * second: firstFragmentSooner); default_base_moof is what browsers' Media Source expects.
 */
function liveMp4(fps: number): string[] {
  const gop = String(Math.max(1, Math.round(fps)));
  return ['-g', gop, '-keyint_min', gop, '-movflags', '+frag_keyframe+empty_moov+default_base_moof'];
}
