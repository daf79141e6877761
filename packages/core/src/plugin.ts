import type { EncodeSettings } from './config.js';
import type { Logger } from './log.js';

/** The plugin contract version this core speaks. A plugin states the version it was written for. */
export const PLUGIN_API_VERSION = 1 as const;

export const STAGE_KINDS = ['voice', 'tts', 'face', 'lipsync', 'encode'] as const;
/**
 * voice: reference recording -> voice settings (voice_clone); tts: text -> speech;
 * face: photo -> avatar; lipsync: avatar + speech -> frames; encode: frames or still + audio -> video.
 */
export type StageKind = (typeof STAGE_KINDS)[number];

// ---- values the stages hand each other (text -> audio -> frames -> MP4) ----

/** Engine-neutral voice settings; a voice profile stores these. */
export interface VoiceSettings {
  engine: string;
  /** the engine's own voice name, e.g. "slt" for flite or "en-us" for espeak-ng */
  voice: string;
  /** BCP 47 language tag, e.g. "en-US" */
  language: string;
  /** speaking rate relative to the voice's normal rate; 1 = normal */
  rate: number;
  /** pitch shift in semitones; 0 = the voice's own pitch */
  pitch: number;
}

export interface VoiceMatchInput {
  /** reference recording (WAV, MP3, OGG...) */
  referencePath: string;
}

export interface SpeakerMeasurement {
  durationSeconds: number;
  voicedSeconds: number;
  medianPitchHz: number;
  /** 10th and 90th percentile of the voiced pitch */
  pitchRangeHz: [number, number];
  /** syllable nuclei per second of speech */
  syllablesPerSecond: number;
}

export interface VoiceMatch {
  settings: VoiceSettings;
  measured: SpeakerMeasurement;
  /** why this voice was chosen, in words */
  reason: string;
}

export interface TtsInput {
  text: string;
  voice: VoiceSettings;
  /** the WAV file to write */
  outputPath: string;
  /** refuse speech longer than this */
  maxSeconds: number;
}

export interface PhonemeTiming {
  /** phoneme symbol in the engine's set (ARPAbet-like for flite/festival, espeak's for espeak-ng) */
  phoneme: string;
  /** seconds from the start of the audio */
  start: number;
  end: number;
}

export interface Speech {
  /** mono 16-bit PCM WAV written by the engine */
  wavPath: string;
  sampleRate: number;
  /** the same samples in memory, so later stages need not decode the file again */
  pcm: Int16Array;
  durationSeconds: number;
  /** the text as spoken, after normalisation (numbers and abbreviations spelled out) */
  spokenText: string;
  phonemes?: PhonemeTiming[];
}

export interface FaceInput {
  imagePath: string;
}

/** A photo with a face the lip-sync stage can animate. The face stage fills it in. */
export interface Avatar {
  imagePath: string;
  width: number;
  height: number;
  /** engine-specific detail (landmarks, pose...) that the lip-sync stage reads */
  face: Readonly<Record<string, unknown>>;
}

export interface LipsyncInput {
  avatar: Avatar;
  speech: Speech;
  settings: EncodeSettings;
}

/** Raw RGBA frames, streamed: the renderer yields, the encoder consumes, no frame touches the disk. */
export interface FrameStream {
  width: number;
  height: number;
  fps: number;
  frameCount: number;
  frames: AsyncIterable<Uint8Array>;
}

export type EncodeInput =
  | { kind: 'still'; imagePath: string; audioPath: string; outputPath: string; settings: EncodeSettings }
  | { kind: 'frames'; frames: FrameStream; audioPath: string; outputPath: string; settings: EncodeSettings };

export interface EncodedVideo {
  outputPath: string;
  format: EncodeSettings['format'];
  width: number;
  height: number;
  fps: number;
  durationSeconds: number;
  bytes: number;
}

export interface StageIO {
  voice: { input: VoiceMatchInput; output: VoiceMatch };
  tts: { input: TtsInput; output: Speech };
  face: { input: FaceInput; output: Avatar };
  lipsync: { input: LipsyncInput; output: FrameStream };
  encode: { input: EncodeInput; output: EncodedVideo };
}
export type StageInput<K extends StageKind> = StageIO[K]['input'];
export type StageOutput<K extends StageKind> = StageIO[K]['output'];

// ---- the contract a plugin implements ----

export interface ResourceNeeds {
  device: 'cpu' | 'gpu' | 'any';
  /** host memory the loaded model needs, MB */
  ramMB?: number;
  /** GPU memory the loaded model needs, MB */
  vramMB?: number;
}

export interface LoadContext {
  log: Logger;
  signal?: AbortSignal;
  /** the storage folder, for caches a plugin keeps between runs */
  storageDir: string;
}

export interface RunContext {
  signal: AbortSignal;
  /** fraction 0..1 of this stage, with an optional word on what it is doing */
  progress(fraction: number, detail?: string): void;
  log: Logger;
  /** the job's work folder: intermediates go here and are removed at cleanup */
  workDir: string;
}

export interface LoadedStage<In, Out> {
  run(input: In, ctx: RunContext): Promise<Out>;
  /** always called after load, also when run fails */
  unload(): Promise<void>;
}

export interface PluginCheck {
  ok: boolean;
  /** e.g. "flite 2.2 at /usr/bin/flite" or what is missing */
  detail: string;
  /** the command that installs what is missing */
  install?: string;
}

export interface StagePlugin<K extends StageKind = StageKind> {
  /** the engine name users pick in config: 'flite', 'ffmpeg', ... */
  readonly name: string;
  readonly stage: K;
  /** the contract version it was written for; checked at registration */
  readonly apiVersion: number;
  readonly description?: string;
  readonly resources: ResourceNeeds;
  /** is the engine usable here? (tools installed, model files present) */
  check?(): Promise<PluginCheck>;
  load(ctx: LoadContext): Promise<LoadedStage<StageInput<K>, StageOutput<K>>>;
}

/** Any stage plugin, whatever its stage. */
export type AnyStagePlugin = { [K in StageKind]: StagePlugin<K> }[StageKind];

/** What a plugin package's main module exports. */
export interface PluginModule {
  plugins: readonly AnyStagePlugin[];
}

/** Identity helper that keeps a plugin's types precise. */
export function defineStagePlugin<K extends StageKind>(plugin: StagePlugin<K>): StagePlugin<K> {
  return plugin;
}
