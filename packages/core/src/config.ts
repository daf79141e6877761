import type { EngineChoice, EngineOptions } from './engines.js';
import { parseEngineChoice, parseEngineOptions } from './engines.js';
import { AvatarError } from './errors.js';

export const QUALITIES = ['high', 'medium', 'low'] as const;
export type VideoQuality = (typeof QUALITIES)[number];
export const OUTPUT_FORMATS = ['mp4', 'webm'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];
export const ENCODING_PRESETS = [
  'ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow',
] as const;
export type EncodingPreset = (typeof ENCODING_PRESETS)[number];

export interface QualityPreset {
  /** the longer side of the video in pixels; the other follows the photo's aspect ratio */
  size: number;
  fps: number;
  crf: number;
  preset: EncodingPreset;
  audioBitrateKbps: number;
}

/** What each quality means. docs/configuration.md repeats this table. */
export const QUALITY_PRESETS: Readonly<Record<VideoQuality, QualityPreset>> = {
  high: { size: 1024, fps: 30, crf: 18, preset: 'slow', audioBitrateKbps: 192 },
  medium: { size: 512, fps: 25, crf: 21, preset: 'veryfast', audioBitrateKbps: 128 },
  low: { size: 256, fps: 20, crf: 28, preset: 'veryfast', audioBitrateKbps: 96 },
};

export const HEAD_MOTIONS = ['none', 'subtle', 'lively'] as const;
/** captions: none; soft (WebVTT and SRT beside the video and a subtitle track in it); burn (files beside, drawn into the picture) */
export const CAPTION_MODES = ['none', 'soft', 'burn'] as const;
export type CaptionMode = (typeof CAPTION_MODES)[number];

export interface PipelineConfig {
  maxVideoLengthSeconds: number;
  outputFormat: OutputFormat;
  cleanupIntermediates: boolean;
  videoQuality: VideoQuality;
  /** overrides the preset's fps when set */
  videoFps: number | null;
  /** overrides the preset's x264 preset when set */
  encodingPreset: EncodingPreset | null;
  /** overrides the preset's crf when set; 0..51, lower is better */
  encodingCrf: number | null;
  /** slight head motion of the talking head */
  headMotion: (typeof HEAD_MOTIONS)[number];
  /** blinks per minute, 0..60 */
  blinkRate: number;
  /** scales mouth and jaw motion, 0..2 */
  expressiveness: number;
  /** captions from the speech's word timings (talking heads from text) */
  captions: CaptionMode;
  /** seeds blinks and head motion: the same inputs and seed give the same video */
  seed: number;
  /** the engine for each stage by name; unset stages use the default (the first installed, a built-in) */
  engines: EngineChoice;
  /** options for the engine that runs each stage, checked against its schema */
  engineOptions: EngineOptions;
  /** refuse engines and models not cleared for commercial use (a server may require it for every run) */
  commercialSafe: boolean;
}

export const DEFAULT_PIPELINE_CONFIG: Readonly<PipelineConfig> = {
  maxVideoLengthSeconds: 120,
  outputFormat: 'mp4',
  cleanupIntermediates: true,
  videoQuality: 'high',
  videoFps: null,
  encodingPreset: null,
  encodingCrf: null,
  headMotion: 'subtle',
  blinkRate: 15,
  expressiveness: 1,
  captions: 'soft',
  seed: 1,
  engines: Object.freeze({}),
  engineOptions: Object.freeze({}),
  commercialSafe: false,
};

/** The settings the encoder uses once the preset and the overrides are combined. */
export interface EncodeSettings {
  format: OutputFormat;
  size: number;
  fps: number;
  crf: number;
  preset: EncodingPreset;
  audioBitrateKbps: number;
}

export function animationOf(config: PipelineConfig): { headMotion: PipelineConfig['headMotion']; blinkRate: number; expressiveness: number; seed: number } {
  return { headMotion: config.headMotion, blinkRate: config.blinkRate, expressiveness: config.expressiveness, seed: config.seed };
}

export function resolveEncodeSettings(config: PipelineConfig): EncodeSettings {
  const preset = QUALITY_PRESETS[config.videoQuality];
  return {
    format: config.outputFormat,
    size: preset.size,
    fps: config.videoFps ?? preset.fps,
    crf: config.encodingCrf ?? preset.crf,
    preset: config.encodingPreset ?? preset.preset,
    audioBitrateKbps: preset.audioBitrateKbps,
  };
}

function invalid(field: string, problem: string, value: unknown, expected: string): AvatarError {
  return new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field, problem, value: JSON.stringify(value) ?? String(value), expected });
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw invalid(field, 'is not a known value', value, `Use one of: ${allowed.join(', ')}.`);
}

function numberIn(field: string, value: unknown, min: number, max: number, integer: boolean, minExclusive = false): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  const ok = typeof n === 'number' && Number.isFinite(n) && (!integer || Number.isInteger(n)) &&
    (minExclusive ? n > min : n >= min) && n <= max;
  if (!ok) {
    const range = `${minExclusive ? 'above' : 'from'} ${min} ${minExclusive ? 'and at most' : 'to'} ${max}`;
    throw invalid(field, `must be ${integer ? 'a whole number' : 'a number'} ${range}`, value, `Give a value ${range}.`);
  }
  return n as number;
}

/**
 * Checks a partial configuration (from flags, a job's params or a file) and fills the defaults.
 * Unknown keys are refused so a typo never silently does nothing.
 */
export function parsePipelineConfig(input: unknown, base: Readonly<PipelineConfig> = DEFAULT_PIPELINE_CONFIG): PipelineConfig {
  if (input === undefined || input === null) return { ...base };
  if (typeof input !== 'object' || Array.isArray(input)) throw invalid('config', 'must be an object', input, 'Give the settings as a JSON object.');
  const raw = input as Record<string, unknown>;
  const known = Object.keys(DEFAULT_PIPELINE_CONFIG);
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) throw invalid(key, 'is not a setting', raw[key], `Known settings: ${known.join(', ')}.`);
  }
  const out: PipelineConfig = { ...base, engines: { ...base.engines }, engineOptions: { ...base.engineOptions } };
  const has = (key: keyof PipelineConfig): boolean => raw[key] !== undefined && raw[key] !== null;
  if (has('maxVideoLengthSeconds')) out.maxVideoLengthSeconds = numberIn('maxVideoLengthSeconds', raw.maxVideoLengthSeconds, 0, 3600, false, true);
  if (has('outputFormat')) out.outputFormat = oneOf('outputFormat', raw.outputFormat, OUTPUT_FORMATS);
  if (has('cleanupIntermediates')) {
    if (typeof raw.cleanupIntermediates !== 'boolean') throw invalid('cleanupIntermediates', 'must be true or false', raw.cleanupIntermediates, 'Give true or false.');
    out.cleanupIntermediates = raw.cleanupIntermediates;
  }
  if (has('videoQuality')) out.videoQuality = oneOf('videoQuality', raw.videoQuality, QUALITIES);
  if (has('videoFps')) out.videoFps = numberIn('videoFps', raw.videoFps, 0, 60, false, true);
  if (has('encodingPreset')) out.encodingPreset = oneOf('encodingPreset', raw.encodingPreset, ENCODING_PRESETS);
  if (has('encodingCrf')) out.encodingCrf = numberIn('encodingCrf', raw.encodingCrf, 0, 51, true);
  if (has('headMotion')) out.headMotion = oneOf('headMotion', raw.headMotion, HEAD_MOTIONS);
  if (has('blinkRate')) out.blinkRate = numberIn('blinkRate', raw.blinkRate, 0, 60, false);
  if (has('expressiveness')) out.expressiveness = numberIn('expressiveness', raw.expressiveness, 0, 2, false);
  if (has('seed')) out.seed = numberIn('seed', raw.seed, 0, 2 ** 31 - 1, true);
  if (has('captions')) out.captions = oneOf('captions', raw.captions, CAPTION_MODES);
  // a run's choices overlay the base's stage by stage
  if (has('engines')) out.engines = { ...base.engines, ...parseEngineChoice(raw.engines) };
  if (has('commercialSafe')) {
    if (typeof raw.commercialSafe !== 'boolean') throw invalid('commercialSafe', 'must be true or false', raw.commercialSafe, 'Give true or false.');
    out.commercialSafe = raw.commercialSafe;
  }
  if (has('engineOptions')) out.engineOptions = { ...base.engineOptions, ...parseEngineOptions(raw.engineOptions) };
  return out;
}

/** The output extension must match the format, so a player never gets a WebM named .mp4 (or a WAV, a PNG named otherwise). */
export function checkOutputExtension(path: string, format: OutputFormat | 'wav' | 'png', input = 'output path'): void {
  const dot = path.lastIndexOf('.');
  const extension = dot >= 0 && dot > path.lastIndexOf('/') ? path.slice(dot + 1).toLowerCase() : '';
  if (extension !== format) {
    throw new AvatarError('AVATAR_ERR_OUTPUT_EXTENSION', { input, extension: extension ? `.${extension}` : '(no extension)', format });
  }
}

/** Picks the format from an output path's extension when the user did not name one. */
export function formatFromPath(path: string): OutputFormat | undefined {
  const lower = path.toLowerCase();
  return OUTPUT_FORMATS.find((f) => lower.endsWith(`.${f}`));
}
