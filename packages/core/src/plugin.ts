import type { WordTiming } from './captions.js';
import type { Readable, Writable } from 'node:stream';
import type { EncodeSettings } from './config.js';
import type { AvatarErrorJSON } from './errors.js';
import type { Logger } from './log.js';

/** The plugin contract version this core speaks. A plugin states the version it was written for. */
export const PLUGIN_API_VERSION = 1 as const;

import type { StageKind } from './stage-kinds.js';

export { STAGE_KINDS } from './stage-kinds.js';
export type { StageKind } from './stage-kinds.js';

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
  /**
   * Called with each part of the speech (a sentence) as soon as it and every part before it are made,
   * in order, before the whole is written, so later stages can start on the first sentence. An engine
   * that makes its speech in one piece calls it once, with all of it.
   */
  onPart?: (part: SpeechPart) => void;
}

/** A part of a speech as it is made: its samples, and its phones and words timed from the start of the whole. */
export interface SpeechPart {
  /** 0, 1, 2... in the order of the text */
  index: number;
  pcm: Int16Array;
  sampleRate: number;
  /** where it starts in the whole speech, seconds */
  startSeconds: number;
  phonemes?: PhonemeTiming[];
  words?: WordTiming[];
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
  /**
   * When each spoken word is said (the words of `spokenText`), for captions: the engine's own timings
   * where it has them, else estimated from the audio (`wordTimingSource` says which).
   */
  words?: WordTiming[];
  wordTimingSource?: 'engine' | 'estimated';
}

export interface FaceInput {
  /** a photo (JPEG, PNG, WebP) or an avatar prepared earlier (PNG with its JSON sidecar) */
  imagePath: string;
  /**
   * When set, the stage writes a prepared avatar here (face centred, roll-aligned, `size` px square PNG,
   * plus its JSON sidecar) and returns that avatar instead of the photo.
   */
  prepare?: {
    outputPath: string;
    size: number;
    /** when the input already is a prepared avatar of this size, return it as it is instead of writing a copy */
    reuse?: boolean;
  };
}

/** A point in image pixels. */
export interface FacePoint {
  x: number;
  y: number;
}

/** A box in image pixels. */
export interface FaceBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Head pose in degrees, estimated from the landmarks. */
export interface HeadPose {
  /** turn left/right; positive: the face turns toward the image's right */
  yaw: number;
  /** nod; positive: the face looks up */
  pitch: number;
  /** tilt in the image plane; positive: the head leans clockwise (the eye line drops toward the image's right) */
  roll: number;
}

/** How usable the face is for animation. */
export interface FaceQuality {
  /** face box width and height in pixels */
  widthPx: number;
  heightPx: number;
  /** variance of the Laplacian of the luminance over the face */
  sharpness: number;
  /** the face's sharpness over the whole image's (below 1: the face is blurrier than the rest) */
  sharpnessRatio: number;
  /** mean luminance over the face, 0..255 */
  meanLuma: number;
  /** share of face pixels at or below 8 / at or above 247 */
  darkFraction: number;
  brightFraction: number;
  /** the mouth landmarks and the chin are inside the image */
  mouthInside: boolean;
  chinInside: boolean;
}

/** The face the lip-sync stage animates, in the avatar image's coordinates. */
export interface AvatarFace {
  box: FaceBox;
  /** detector confidence 0..1 */
  score: number;
  /** 68 points, iBUG 300-W order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67) */
  landmarks: readonly FacePoint[];
  pose: HeadPose;
  quality: FaceQuality;
  /** the models that found the face: detector and landmark model names */
  models: { detector: string; landmarks: string };
  /** the JSON sidecar the details came from or were written to, when the avatar is a prepared one */
  sidecarPath?: string;
}

/** A photo with a face the lip-sync stage can animate. The face stage fills it in. */
export interface Avatar {
  imagePath: string;
  width: number;
  height: number;
  face: AvatarFace;
}

/** How the face moves besides the mouth. */
export interface AnimationSettings {
  headMotion: 'none' | 'subtle' | 'lively';
  /** blinks per minute; 0 = never */
  blinkRate: number;
  /** scales mouth and jaw motion; 1 = natural */
  expressiveness: number;
  /** the same inputs and seed give the same video */
  seed: number;
}

export interface LipsyncInput {
  avatar: Avatar;
  /** the speech in memory when an earlier stage made it; absent for a user's recording (video_lipsync) */
  speech?: Speech;
  /**
   * For an engine that declares `speechParts`, instead of `speech`: the speech as it is made, its parts
   * in order (it ends when the speech is whole and fails when the speech fails). Frames start with the
   * first sentences; the stream's `frameCount` is then 0 (not known in advance).
   */
  speechParts?: AsyncIterable<SpeechPart>;
  /** the audio the video gets: the speech's WAV or the user's recording */
  audioPath: string;
  /** refuse audio longer than this */
  maxSeconds: number;
  settings: EncodeSettings;
  animation: AnimationSettings;
}

/** Where the face and mouth are in the rendered frames, for the inspector. */
export interface FrameRegions {
  face: FaceBox;
  mouth: FaceBox;
}

/** Raw frames, streamed: the renderer yields, the encoder consumes, no frame touches the disk. */
export interface FrameStream {
  width: number;
  height: number;
  fps: number;
  /** how many frames come; 0 when not known in advance (frames drawn as the speech is made) */
  frameCount: number;
  frames: AsyncIterable<Uint8Array>;
  /**
   * 'rgba' (default): 4 bytes a pixel. 'yuv420p': planar I420, BT.709 limited range (what the encoder
   * writes), width x height x 1.5 bytes; even sizes only. A renderer that draws I420 spares the
   * encoder the conversion and the pipe 60 % of the bytes.
   */
  pixelFormat?: 'rgba' | 'yuv420p';
  /**
   * How many buffers the producer cycles through (default 1: it may overwrite a frame as soon as the
   * next one is asked for). With more, a consumer may keep up to `ring - 1` frames in flight.
   */
  ring?: number;
  regions?: FrameRegions;
  /**
   * How the frames are drawn (e.g. 'native': the compiled kernels on the CPU; 'ts': TypeScript), and why
   * a faster way was not taken. Set once the first frame is drawn, when the engine says.
   */
  computePath?: ComputePath;
  /** Set when the frames are drawn on a GPU: an encoder there may take them without a trip through host memory. */
  gpu?: GpuFrames;
}

/**
 * Frames drawn on a GPU, offered to an encoder on the same GPU. The handle is the engine's own (core
 * does not read it): an encoder that knows it (the built-in NVENC one knows the CUDA renderer's) reads
 * the frame in GPU memory; any other consumer ignores all this and takes the bytes as usual.
 */
export interface GpuFrames {
  /** the GPU's name, and its NVML UUID where known */
  device: string;
  uuid?: string;
  /** what draws the frames on the GPU, for a consumer that knows it */
  handle: unknown;
  /**
   * From the next frame on, frames drawn on the GPU stay there: their yielded bytes are then stale, and
   * `lastOnGpu()` says which frames those are. Call it before asking for the first frame.
   */
  leaveOnGpu(): void;
  /** whether the frame last yielded is in GPU memory only (else its bytes are the frame: drawn on the CPU, or copied back) */
  lastOnGpu(): boolean;
}

/** Which way a stage did its work, and why a faster one was not taken (run results list them). */
export interface ComputePath {
  path: string;
  /** the faster ways not taken, each with its reason, as "cuda: ..." */
  notUsed?: string;
}

export type EncodeInput =
  | { kind: 'still'; imagePath: string; audioPath: string; outputPath: string; settings: EncodeSettings }
  | {
    kind: 'frames';
    frames: FrameStream;
    audioPath: string;
    outputPath: string;
    settings: EncodeSettings;
    /**
     * For an encoder that declares `audioStream`: the sound as it is made (16-bit mono samples at
     * `sampleRate`, in order; the iterable ends when the sound is whole and fails when it fails), taken
     * instead of the file at `audioPath`, which is then not read (it may not exist yet).
     */
    audioStream?: AudioStream;
    /** captions (a WebVTT file) to carry as a subtitle track (soft) or draw into the picture (burn), for an encoder that declares `captions` */
    captions?: { path: string; mode: 'soft' | 'burn' };
    /**
     * Where the video also goes as it is encoded, as fragmented MP4 (fragments of about a second, each
     * playable once written), for an encoder that declares `liveOutput`. The file at `outputPath` is
     * the same bytes. A `live` that fails (its reader went away) fails the encode with
     * AVATAR_ERR_LIVE_OUTPUT_CLOSED.
     */
    live?: Writable;
    /**
     * For an encoder that declares `watchOutput`: called once, before the first byte, with the video as
     * it is encoded, so an inspector can measure it meanwhile. The reader takes every byte or destroys
     * the stream (the encode then goes on without it); it ends when the encode does (an encode that
     * fails destroys it). Not called for a format the encoder cannot watch (it may say so in its log).
     */
    watch?: (video: WatchedVideo) => void;
  };

/** A run's encode, as known before its frames are (StagePlugin.encodeAhead). */
export interface EncodeAhead {
  /** what EncodeInput.settings will be; the frames' rate is `settings.fps` */
  settings: EncodeSettings;
  /** frames come with a live stream (EncodeInput.live) */
  live: boolean;
  /** the sound comes as it is made (EncodeInput.audioStream), at this rate */
  audioStream?: { sampleRate: number };
  /** aborts when the run ends (a standby's: when the service that asked for it stops) */
  signal: AbortSignal;
  /** for a next run like this one rather than for this one (a service's standby) */
  standby?: boolean;
}

/** Sound as it is made: 16-bit mono samples in order. */
export interface AudioStream {
  sampleRate: number;
  chunks: AsyncIterable<Int16Array>;
  /**
   * The sound's length in seconds once the speech is whole (undefined before): how many frames a video
   * drawn as the speech is made will have, for an encoder's progress. Known well before the chunks end:
   * they are read as the encode needs them.
   */
  seconds?: () => number | undefined;
}

/**
 * A video as it is encoded: fragmented MP4 carrying the same packets as the output file. Such a stream
 * has no edit list: its audio starts with the encoder's priming, which the file hides
 * (`audioPrimingSamples` at `audioSampleRate`: drop them to hear what the file plays), and its video's
 * timestamps may start after its audio by the encoder's reordering delay. Frame n is the file's frame n.
 */
export interface WatchedVideo {
  bytes: Readable;
  width: number;
  height: number;
  fps: number;
  audioPrimingSamples: number;
  audioSampleRate: number;
}

export interface EncodedVideo {
  outputPath: string;
  /** the video encoder that ran (libx264, libvpx-vp9...), and why a faster one was not taken */
  computePath?: ComputePath;
  format: EncodeSettings['format'];
  width: number;
  height: number;
  fps: number;
  durationSeconds: number;
  bytes: number;
}

export interface InspectInput {
  /** the video; while `watching`, it is still being written (measure the stream, name this path) */
  videoPath: string;
  /** where the mouth and the face are; a face box of zero area means the face is not known */
  regions: FrameRegions;
  /** for an inspector that declares `watchesEncode`: the video as it is encoded (the same frames and sound) */
  watching?: WatchedVideo;
}

/** What an inspector measured; stored in the job's result as it is. */
export interface InspectionSummary {
  /** best lag between mouth motion and the audio envelope, frames (+: the video is late) */
  lagFrames: number;
  /** correlation at that lag */
  correlation: number;
  /** mouth motion in silences over motion in speech (0: still in silences) */
  silenceStillness: number;
  /** mean motion at the frame borders, outside the face (0: still) */
  borderMotion: number;
  /** mouth sharpness while speaking over at rest (1: as sharp) */
  sharpnessRatio: number;
  /** the inspector's full report */
  details: Readonly<Record<string, unknown>>;
}

export interface StageIO {
  voice: { input: VoiceMatchInput; output: VoiceMatch };
  tts: { input: TtsInput; output: Speech };
  face: { input: FaceInput; output: Avatar };
  lipsync: { input: LipsyncInput; output: FrameStream };
  encode: { input: EncodeInput; output: EncodedVideo };
  inspect: { input: InspectInput; output: InspectionSummary };
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
  /**
   * The options the user set for this engine (config `engineOptions`, `--engine-option`), checked
   * against the plugin's `options` schema and completed with its defaults; {} when it declares none.
   */
  options: Readonly<Record<string, unknown>>;
  /**
   * Where the model is to run, chosen by the host before load(): the CPU, or the GPU with room for
   * what the plugin declared (`resources.vramMB`). A plugin of `device: 'any'` gets the CPU when no GPU
   * is present or none has room (with the reason); one of `device: 'gpu'` always gets a GPU.
   */
  device: ModelDevice;
}

/**
 * A model's device. `index` is NVML's index of the GPU (the order `nvidia-smi` lists them in), not
 * CUDA's ordinal: match them by `uuid` where CUDA_VISIBLE_DEVICES or CUDA_DEVICE_ORDER reorders GPUs.
 */
export type ModelDevice =
  | { readonly kind: 'cpu'; readonly reason?: string }
  | { readonly kind: 'gpu'; readonly index: number; readonly name: string; readonly uuid?: string; readonly freeMB: number };

/** One option in a plugin's options schema: a JSON Schema (draft 7) of its value, with a description users see. */
export type PluginOptionSchema = Readonly<Record<string, unknown>> & { readonly description?: string };

/**
 * The options an engine takes, as a JSON Schema of an object (plain, or built with TypeBox). Options
 * not listed are refused; `default`s are filled in before load() sees them.
 */
export interface PluginOptionsSchema {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, PluginOptionSchema>>;
  readonly required?: readonly string[];
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

/** One face a face engine found, as `avatar avatars check` reports it. */
export interface AssessedFace {
  box: FaceBox;
  score: number;
  /** 68 points, where the engine placed them */
  landmarks?: readonly FacePoint[];
  pose?: HeadPose;
  quality?: FaceQuality;
}

/** What a face engine says of a photo without preparing anything: the faces, and whether it can be animated and why not. */
export interface FaceAssessment {
  path: string;
  width: number;
  height: number;
  /** a prepared avatar: its face comes from its sidecar, not from detection */
  prepared: boolean;
  sidecarPath?: string;
  models?: { detector: string; landmarks: string };
  /** largest first */
  faces: AssessedFace[];
  verdict: {
    usable: boolean;
    /** every rule the photo breaks, most important first, each with the error a run would give */
    reasons: { rule: string; measured: number | string; limit: number | string; error: AvatarErrorJSON }[];
    /** what does not stop a run but may spoil it (dark, blown out, blurry) */
    warnings: { rule: string; measured: number; limit: number; message: string }[];
  };
  /** the engine's own full report */
  details?: Readonly<Record<string, unknown>>;
}

/** What a loaded engine of each stage may offer besides run. */
export interface StageExtras {
  voice: object;
  tts: object;
  /** `avatar avatars check` and the server's photo checks ask this; an engine without it cannot report on a photo */
  face: { assess?(imagePath: string, ctx: RunContext): Promise<FaceAssessment> };
  lipsync: object;
  encode: object;
  inspect: object;
}

/** A loaded engine of stage K. */
export type LoadedStageOf<K extends StageKind> = LoadedStage<StageInput<K>, StageOutput<K>> & StageExtras[K];

/** A model file a plugin runs, as `avatar doctor` lists it. */
export interface ModelReport {
  name: string;
  /** ok: present and matching its checksum */
  status: 'ok' | 'missing' | 'checksum';
  path: string;
  sha256: string;
  /** where the weights come from (package and version) */
  source: string;
  license: string;
}

export interface PluginCheck {
  ok: boolean;
  /** e.g. "flite 2.2 at /usr/bin/flite" or what is missing */
  detail: string;
  /** the command that installs what is missing */
  install?: string;
  /** the model files the plugin uses */
  models?: ModelReport[];
}

/** The terms of a model's weights, as a plugin declares them. */
export interface ModelLicense {
  /** the model as the plugin names it */
  name: string;
  /** SPDX id where there is one, else the terms in a few words */
  license: string;
  /** may what it makes be used commercially (false where unknown or unclear) */
  commercialUse: boolean;
  /** where the weights come from (package and version, or an address) */
  source: string;
  /** why, when commercialUse needs explaining */
  note?: string;
}

/** The terms an engine runs under: its code (and the tool it drives), and each model it loads. */
export interface EngineLicense {
  /** SPDX id of the plugin's code, with the tool it runs where that matters, e.g. "MIT (runs espeak-ng: GPL-3.0-or-later)" */
  code: string;
  commercialUse: boolean;
  /** the models this engine loads with the given options (none for a tool-only engine) */
  models: ModelLicense[];
  note?: string;
}

/** A voice a tts engine speaks with (StagePlugin.voices). */
export interface EngineVoice {
  /** the engine's own name for it: a voice setting's `voice` */
  readonly voice: string;
  /** a BCP 47 language tag, e.g. en-US, pt-BR, cmn */
  readonly language: string;
  readonly gender?: 'female' | 'male';
  /** the language or voice in words, e.g. "Brazilian Portuguese" */
  readonly description?: string;
}

export interface StagePlugin<K extends StageKind = StageKind> {
  /** the engine name users pick in config: 'flite', 'ffmpeg', ... */
  readonly name: string;
  readonly stage: K;
  /** the contract version it was written for; checked at registration */
  readonly apiVersion: number;
  readonly description?: string;
  readonly resources: ResourceNeeds;
  /** the options it takes; none when absent (any option set for it is then refused) */
  readonly options?: PluginOptionsSchema;
  /**
   * tts engines: the voice a run without a voice profile speaks with when this engine is chosen
   * (its rate and pitch are the voice's own).
   */
  readonly defaultVoice?: { readonly voice: string; readonly language: string };
  /**
   * tts engines: the voices installed here, each with its language, as a voice setting names them
   * (none when the engine is not installed). Lists may be long: espeak-ng speaks over a hundred languages.
   */
  voices?(): Promise<readonly EngineVoice[]>;
  /** encode engines: can write the video to `EncodeInput.live` while encoding it (fragmented MP4) */
  readonly liveOutput?: boolean;
  /** encode engines: carry `EncodeInput.captions` as a subtitle track or draw them into the picture */
  readonly captions?: boolean;
  /** lipsync engines: draw frames from `LipsyncInput.speechParts` as the speech is made */
  readonly speechParts?: boolean;
  /** encode engines: take the sound from `EncodeInput.audioStream` as it is made */
  readonly audioStream?: boolean;
  /** encode engines: hand the video to `EncodeInput.watch` as it is encoded */
  readonly watchOutput?: boolean;
  /** inspect engines: can measure `InspectInput.watching` while the video is encoded */
  readonly watchesEncode?: boolean;
  /**
   * The licences of its code and of the models it loads with these (checked) options. Runs with
   * `commercialSafe` refuse an engine that declares none or one not cleared for commercial use;
   * every run records what it declares.
   */
  license?(options: Readonly<Record<string, unknown>>): EngineLicense;
  /** is the engine usable here? (tools installed, model files present) */
  check?(): Promise<PluginCheck>;
  /**
   * Optional cheap preparation (tool checks, caches) that a run starts early, while earlier stages work,
   * so that load() later finds it done. It must not load a model or hold much memory, and may run more
   * than once. A failure here is ignored: load() reports it.
   */
  prewarm?(): Promise<void>;
  /**
   * Encode engines, optional: what a run will encode, said while its earlier stages work and before its
   * frames exist (a live run drawn as its speech is made), so the engine can start its encoder meanwhile.
   * A process started for it and not taken by an encode is stopped when `signal` aborts, which the run
   * does when it ends, however it ends (a standby's: when the service stops, or a minute on at most).
   * A failure here is only logged: the encode starts its own.
   */
  encodeAhead?(plan: EncodeAhead): Promise<void>;
  /**
   * Optional checks of an input that load no model and write nothing (can this voice say this text?),
   * run when a job is submitted, so that one that cannot succeed is refused then rather than when a
   * worker runs it. Rejects with the AvatarError the run would give; resolves when the input can be tried.
   */
  checkInput?(input: InputToCheck<K>): Promise<void>;
  load(ctx: LoadContext): Promise<LoadedStageOf<K>>;
}

/** A stage's input before a run: what it is given, without the file the run writes. */
export type InputToCheck<K extends StageKind> = Omit<StageInput<K>, 'outputPath'>;

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
