import { PLUGIN_API_VERSION, type PluginCheck, type StagePlugin } from '@avatar/core';
import { encodeVideo, startEncodeAhead, warmUp } from './encode.js';
import { FFMPEG_INSTALL, resolveTools, runTool, toolVersion, type FfmpegToolPaths } from './tools.js';

export type FfmpegPluginOptions = FfmpegToolPaths;

/** The encoders check() looks for; the first two make MP4, the next two WebM. */
export const WANTED_ENCODERS = ['libx264', 'aac', 'libvpx-vp9', 'libopus'] as const;

export interface FfmpegCapabilities {
  ffmpegVersion: string;
  ffprobeVersion: string;
  encoders: Record<(typeof WANTED_ENCODERS)[number], boolean>;
  /** ffmpeg was built with NVENC; says nothing about whether this machine's GPU can run it */
  nvencListed: boolean;
}

/** Versions and encoder list of the configured ffmpeg; throws AVATAR_ERR_TOOL_MISSING when absent. */
export async function ffmpegCapabilities(paths: FfmpegToolPaths = {}): Promise<FfmpegCapabilities> {
  const tools = resolveTools(paths);
  const ffmpegVersion = await toolVersion('ffmpeg', tools.ffmpeg);
  const ffprobeVersion = await toolVersion('ffprobe', tools.ffprobe);
  const { stdout } = await runTool('ffmpeg', tools.ffmpeg, ['-hide_banner', '-encoders']);
  const names = new Set(
    stdout.split('\n').map((line) => /^\s*[VAS.][F.][S.][X.][B.][D.]\s+(\S+)/.exec(line)?.[1]).filter((n): n is string => !!n),
  );
  const encoders = Object.fromEntries(WANTED_ENCODERS.map((e) => [e, names.has(e)])) as FfmpegCapabilities['encoders'];
  return { ffmpegVersion, ffprobeVersion, encoders, nvencListed: names.has('h264_nvenc') };
}

async function check(paths: FfmpegToolPaths): Promise<PluginCheck> {
  const tools = resolveTools(paths);
  let caps: FfmpegCapabilities;
  try {
    caps = await ffmpegCapabilities(paths);
  } catch (error) {
    return { ok: false, detail: error instanceof Error ? error.message : String(error), install: FFMPEG_INSTALL };
  }
  const have = (e: (typeof WANTED_ENCODERS)[number]): string => `${e} ${caps.encoders[e] ? 'yes' : 'no'}`;
  const mp4 = caps.encoders.libx264 && caps.encoders.aac;
  const webm = caps.encoders['libvpx-vp9'] && caps.encoders.libopus;
  const detail = [
    `ffmpeg ${caps.ffmpegVersion} at ${tools.ffmpeg}, ffprobe ${caps.ffprobeVersion} at ${tools.ffprobe}`,
    `encoders: ${WANTED_ENCODERS.map(have).join(', ')}`,
    `mp4 ${mp4 ? 'available' : 'unavailable'}, webm ${webm ? 'available' : 'unavailable'}`,
    `h264_nvenc ${caps.nvencListed ? 'listed (built in, not used: needs a GPU with NVENC)' : 'not listed'}`,
  ].join('; ');
  return mp4 ? { ok: true, detail } : { ok: false, detail, install: FFMPEG_INSTALL };
}

/** An ffmpeg encode plugin; `paths` point at other ffmpeg/ffprobe binaries. */
export function createFfmpegPlugin(paths: FfmpegPluginOptions = {}): StagePlugin<'encode'> {
  return {
    name: 'ffmpeg',
    stage: 'encode',
    apiVersion: PLUGIN_API_VERSION,
    description: 'ffmpeg: still image + audio, or streamed RGBA frames + audio, to MP4 (H.264/AAC) or WebM (VP9/Opus)',
    // ffmpeg runs as a child process and holds no model: it takes no model slot, so it can consume a
    // renderer's frames while the renderer stays loaded
    resources: { device: 'cpu' },
    // streamed frames can go out as fragmented MP4 while they are encoded (EncodeInput.live)
    liveOutput: true,
    captions: true,
    // an MP4's packets also go to EncodeInput.watch as they are written (fragmented MP4), for an inspector
    watchOutput: true,
    // the sound may come as it is made (EncodeInput.audioStream), through a pipe of its own
    audioStream: true,
    // ffmpeg runs as a separate program; Debian's build (with x264) is GPL, which allows commercial use
    license: () => ({ code: 'MIT (runs ffmpeg with libx264: GPL-2.0-or-later as built by Debian)', commercialUse: true, models: [] }),
    check: () => check(paths),
    // the tool checks and fluent-ffmpeg's questions take a few process starts: done while speech and face run
    prewarm: () => warmUp(paths),
    // a live run's ffmpeg, started while its speech and face are made (see ahead.ts)
    encodeAhead: (plan) => startEncodeAhead(plan, paths),
    async load() {
      // A missing ffmpeg fails here, before any stage work, as AVATAR_ERR_TOOL_MISSING.
      await warmUp(paths);
      return {
        run: (input, ctx) => encodeVideo(input, { ...paths, signal: ctx.signal, progress: ctx.progress, log: ctx.log }),
        async unload() {},
      };
    },
  };
}

export const ffmpegPlugin: StagePlugin<'encode'> = createFfmpegPlugin();
