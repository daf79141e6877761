import type { AnyStagePlugin } from '@avatar/core';
import { ffmpegPlugin } from './plugin.js';

export { createFfmpegPlugin, ffmpegCapabilities, ffmpegPlugin, WANTED_ENCODERS } from './plugin.js';
export type { FfmpegCapabilities, FfmpegPluginOptions } from './plugin.js';
export { encodeFrames, encodeStill, encodeVideo, warmUp } from './encode.js';
export type { EncodeOptions, EncodeRunOptions } from './encode.js';
export { probeMedia, readAudioInfo, readImageInfo } from './probe.js';
export type { AudioInfo, ImageInfo, MediaInfo, MediaStreamInfo, MediaStreamType, ProbeOptions } from './probe.js';
export { codecArgs, outputGeometry, vp9Crf, VP9_SPEED } from './settings.js';
export type { CodecArgs, OutputGeometry, Vp9Speed } from './settings.js';
export { resolveTools, FFMPEG_INSTALL } from './tools.js';
export type { FfmpegToolPaths, ResolvedTools } from './tools.js';

/** What the plugin registry loads from this package. */
export const plugins: readonly AnyStagePlugin[] = [ffmpegPlugin];
