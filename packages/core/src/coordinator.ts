import { randomBytes } from 'node:crypto';
import { copyFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { PipelineConfig } from './config.js';
import { buildCues, estimateWords, lineCharsFor, spokenWords, toSrt, toWebVtt, writtenWords } from './captions.js';
import type { CaptionWord } from './captions.js';
import { MAX_ALIGN_SECONDS, MISMATCH_RATIO, alignSpeech } from './align.js';
import { decodeAudio } from './tools.js';
import { animationOf, checkOutputExtension, parsePipelineConfig, resolveEncodeSettings } from './config.js';
import type { EngineChoice, EngineOptions } from './engines.js';
import { resolvePluginOptions } from './plugin-options.js';
import type { AvatarErrorJSON } from './errors.js';
import { AvatarError, isAvatarError, storageError, toAvatarError } from './errors.js';
import { checkReadableFile, checkWritableTarget, ensureDir, partialPathFor, writeWholeFile } from './fsutil.js';
import { claimWorkDir, keepWorkDir, sweepLeftovers, sweepPartials } from './leftovers.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';
import { checkImageFile } from './media.js';
import { SpeechFeed } from './speech-feed.js';
import type { AudioStream, Avatar, ComputePath, EncodeAhead, EncodedVideo, EngineLicense, FaceAssessment, FrameRegions, InspectionSummary, LipsyncInput, LoadContext, LoadedStageOf, PluginCheck, RunContext, Speech, SpeechPart, StageInput, StageKind, StageOutput, StagePlugin, VoiceMatch, VoiceSettings, WatchedVideo } from './plugin.js';
import type { PluginRegistry } from './registry.js';
import type { Alongside, ResourceManager } from './resources.js';
import type { VoiceProfile, VoiceProfileStore } from './voices.js';

export const PIPELINE_STAGES = [
  'load_profile',
  'synthesize_speech',
  'validate_avatar',
  'generate_lipsync',
  'encode_video',
  'cleanup',
] as const;
export type StageName = (typeof PIPELINE_STAGES)[number] | 'inspect_video' | 'match_voice';

/** Share of the whole run each stage takes, for one progress figure across stages. */
const STAGE_WEIGHT: Record<StageName, number> = {
  load_profile: 0.01,
  synthesize_speech: 0.2,
  validate_avatar: 0.04,
  generate_lipsync: 0.05,
  encode_video: 0.68,
  cleanup: 0.02,
  inspect_video: 0.06,
  match_voice: 1,
};

export interface ProgressEvent {
  stage: StageName;
  /** the whole run, 0..1 */
  fraction: number;
  /** this stage, 0..1 */
  stageFraction: number;
  detail?: string;
}

export interface StageReport {
  stage: StageName;
  /** the engine that ran it, when a plugin did */
  engine?: string;
  wallSeconds: number;
  rssStartMB: number;
  rssEndMB: number;
  peakRssMB: number;
}

export interface RunResult {
  success: boolean;
  /** where the result is, on success */
  outputPath: string | null;
  /** length of the produced audio or video, seconds */
  durationSeconds: number | null;
  error: AvatarErrorJSON | null;
  stagesCompleted: StageName[];
  stages: StageReport[];
  totalSeconds: number;
  /** the work folder, when intermediates were kept */
  workDir: string | null;
  /** the finished video measured from the outside, when an inspector is installed */
  inspection?: InspectionSummary;
  /** the engine that ran each stage, with the package it came from */
  engines: Partial<Record<StageKind, EngineUsed>>;
  /** how the frames were drawn and the video encoded, and why a faster way was not taken, where the engines say */
  paths?: { render?: ComputePath; encode?: ComputePath };
  /** the captions, when the run made them: the files beside the video, how they are shown, and where the word timings came from */
  captions?: CaptionsReport;
  /** what the run could not do and did without, the video being whole (captions it could not make) */
  warnings?: string[];
}

export interface CaptionsReport {
  mode: 'soft' | 'burn';
  /** WebVTT and SRT files beside the video (none for a live run that keeps no file) */
  vtt: string | null;
  srt: string | null;
  cues: number;
  /**
   * where the word times came from: the speech engine's own, estimated from the audio (an engine that
   * gives none), or a transcript aligned to a recording (lipsync)
   */
  timing: 'engine' | 'estimated' | 'aligned';
  /** why the video itself does not carry them, when it does not (an encoder without captions, a live stream) */
  notInVideo?: string;
  /** something the captions may have got wrong: a transcript that does not seem to be what the recording says */
  warning?: string;
}

export interface EngineUsed {
  name: string;
  /** package name@version, or the file it was registered from */
  package: string;
  /** the licences of its code and the models it loaded, as it declares them */
  license?: EngineLicense;
}

/** A stage's engine, chosen and with its options checked, ready to run. */
export interface ResolvedEngine<K extends StageKind = StageKind> {
  plugin: StagePlugin<K>;
  options: Readonly<Record<string, unknown>>;
  /** the package it came from */
  source: string;
  /** what it declares for these options */
  license?: EngineLicense;
  /** another than the stage's default engine (the first registered, a built-in): it passes its check() before a run uses it */
  chosen: boolean;
}

/** The parts of a configuration that pick engines. */
export type EngineConfig = Pick<PipelineConfig, 'engines' | 'engineOptions' | 'commercialSafe'>;

type EnginePlan = { [K in StageKind]?: ResolvedEngine<K> };

/** What a run with live output reports as its output path: the video went to a stream, as a CLI's "-" does. */
export const LIVE_OUTPUT = '-';

/** A run's captions in its work folder. */
interface Captions {
  mode: 'soft' | 'burn';
  vtt: string;
  srt: string;
  cues: number;
  timing: CaptionsReport['timing'];
  warning?: string;
}

/** What a successful run produced. */
interface Outcome {
  outputPath: string;
  durationSeconds: number;
  inspection?: InspectionSummary;
  paths?: RunResult['paths'];
  captions?: CaptionsReport;
  warnings?: string[];
  /** finished files to move onto their targets once every stage has succeeded, the main output last */
  publish?: { from: string; to: string }[];
}

export interface CommonRequest {
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  /** names the work folder; a job passes its id */
  runId?: string;
}

/** A talking-head run's video as it is encoded: fragmented MP4 into a stream (a pipe, stdout, an HlsWriter). */
export interface LiveRequest {
  /** Where the video also goes as it is encoded, as fragmented MP4 (MP4 only); the file at `outputPath` holds the same bytes. */
  live?: Writable;
  /**
   * With `live`: keep no file. `outputPath` is then ignored and nothing is written beside it; the run
   * inspects a copy in its work folder, removed at cleanup, and reports its output as "-".
   */
  liveOnly?: boolean;
}

export interface PipelineRequest extends CommonRequest, LiveRequest {
  text: string;
  voiceProfileId?: string | null;
  avatarImage: string;
  outputPath: string;
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface SpeechRequest extends CommonRequest {
  text: string;
  /** only `engines` and `engineOptions` matter here */
  config?: Partial<PipelineConfig> | PipelineConfig;
  voiceProfileId?: string | null;
  /** a .wav path */
  outputPath: string;
  maxSeconds?: number;
  keepIntermediates?: boolean;
}

export interface StillVideoRequest extends CommonRequest {
  imagePath: string;
  audioPath: string;
  outputPath: string;
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface AvatarRequest extends CommonRequest {
  /** a photo (JPEG, PNG, WebP) or an avatar prepared earlier */
  imagePath: string;
  /** the prepared avatar, a .png; its JSON sidecar is written beside it */
  outputPath: string;
  /** videoQuality picks the avatar's size (the preset's size) */
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface LipsyncRequest extends CommonRequest, LiveRequest {
  avatarImage: string;
  /** the recording the avatar speaks: WAV, MP3, OGG... */
  audioPath: string;
  outputPath: string;
  config?: Partial<PipelineConfig> | PipelineConfig;
  /** what the recording says: its words are aligned to it for captions (none without one) */
  transcript?: string;
}

export interface VoiceMatchRequest extends CommonRequest {
  referencePath: string;
  name?: string;
  /** the engine that measures the voice; default: the first 'voice' plugin */
  engine?: string;
  /** only `engines` and `engineOptions` matter here */
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface CoordinatorOptions {
  registry: PluginRegistry;
  resources: ResourceManager;
  voices: VoiceProfileStore;
  storageDir: string;
  /** the voice used when a run names no profile and picks no tts engine; default: the default tts engine's own */
  defaultVoice?: VoiceSettings;
  /** engine names per stage, for runs that name none (a config file, AVATAR_ENGINES); default: the first registered */
  engines?: EngineChoice;
  /** options for those engines; they apply where a run keeps the engine they were set for */
  engineOptions?: EngineOptions;
  /** every run refuses engines and models not cleared for commercial use (a run may ask for it too) */
  commercialSafe?: boolean;
  /** how long an engine may go on after its run is cancelled before the run ends without it (default 10 s) */
  cancelGraceMs?: number;
  /**
   * A service's (a server's, a worker's): while it is not aborted, each live run leaves an encoder started
   * for a next run like it (StagePlugin.encodeAhead), so that one skips the encoder's own start. Abort it
   * when the service stops.
   */
  encoderStandby?: AbortSignal;
  log?: Logger;
}

/** The longest a service's standby encoder (CoordinatorOptions.encoderStandby) is kept unused. */
const STANDBY_MS = 60_000;

/** Runs named stages in order, recording each one's time and memory, and turning failures into results. */
class StageRun {
  readonly completed: StageName[] = [];
  readonly reports: StageReport[] = [];
  readonly engines: Partial<Record<StageKind, EngineUsed>> = {};
  private readonly started = performance.now();
  current: StageName;

  constructor(
    private readonly coordinator: PipelineCoordinator,
    readonly workDir: string,
    private readonly plan: readonly StageName[],
    readonly signal: AbortSignal,
    private readonly onProgress?: (event: ProgressEvent) => void,
  ) {
    this.current = plan[0] ?? 'cleanup';
  }

  /** How far each stage of the plan has come (0..1): stages that run side by side each count their own. */
  private readonly done = new Map<StageName, number>();

  progress(stage: StageName, stageFraction: number, detail?: string): void {
    const f = Math.min(1, Math.max(0, stageFraction));
    // a stage never goes back, and one that starts counts every stage before it in the plan as done (a
    // stage the plan skips, such as an inspection without an inspector): the run's fraction only grows
    this.done.set(stage, Math.max(this.done.get(stage) ?? 0, f));
    for (const earlier of this.plan.slice(0, this.plan.indexOf(stage))) if (!this.running.has(earlier)) this.done.set(earlier, 1);
    if (!this.onProgress) return;
    const total = this.plan.reduce((s, n) => s + STAGE_WEIGHT[n], 0);
    const reached = this.plan.reduce((s, n) => s + STAGE_WEIGHT[n] * (this.done.get(n) ?? 0), 0);
    const at = this.front(stage);
    this.onProgress({ stage: at, stageFraction: this.done.get(at) ?? 0, fraction: Math.min(1, reached / total), ...(detail !== undefined && at === stage && { detail }) });
  }

  /** the stage a run's progress named last */
  private shown: StageName | undefined;
  /** stages that watch another (the inspection beside the encode), with the stage they watch */
  private readonly watchers = new Map<StageName, StageName>();

  /**
   * The stage the run is at, as its progress names it: the furthest in the plan of those running, a
   * stage that watches another counting once that one has completed; while none runs, the one named
   * last. Stages that run side by side would otherwise take turns (the speech reporting a part made,
   * the encoder a frame): a job's stage flipping back and forth, each flip a write to the job store.
   * The name changes only as stages start and end.
   */
  private front(reporting: StageName): StageName {
    const index = (name: StageName): number => this.plan.indexOf(name);
    let at: StageName | undefined;
    for (const name of this.running) {
      const watched = this.watchers.get(name);
      if (watched !== undefined && !this.completed.includes(watched)) continue;
      if (at === undefined || index(name) > index(at)) at = name;
    }
    this.shown = at ?? this.shown ?? reporting;
    return this.shown;
  }

  /** Stages running now; more than one when the plan runs them side by side. */
  private readonly running = new Set<StageName>();
  /** the stage whose failure ended the run, when one did */
  failedStage: StageName | undefined;

  /** Files this run wrote beside their targets, removed when it fails. */
  readonly temporaries: string[] = [];

  /**
   * `signal`: a stage run beside another may be stopped on its own (one linked to the run's);
   * `watching`: the stage it watches, under which its progress is reported while that one runs.
   */
  async stage<T>(name: StageName, fn: (ctx: RunContext) => Promise<T>, engine?: ResolvedEngine, { signal = this.signal, watching }: { signal?: AbortSignal; watching?: StageName } = {}): Promise<T> {
    this.current = name;
    if (watching !== undefined) this.watchers.set(name, watching);
    if (engine) this.engines[engine.plugin.stage] = { name: engine.plugin.name, package: engine.source, ...(engine.license && { license: engine.license }) };
    // cleanup always runs; once the last stage has done its work, the run has succeeded and a late
    // cancel no longer undoes it
    const last = name === 'cleanup' || name === this.plan[this.plan.length - 1];
    this.running.add(name);
    try {
      if (name !== 'cleanup') signal.throwIfAborted();
      await this.coordinator.resources.snapshot(`start ${name}`);
      this.progress(name, 0);
      const ctx: RunContext = {
        signal,
        workDir: this.workDir,
        log: this.coordinator.log,
        progress: (fraction, detail) => this.progress(name, fraction, detail),
      };
      const tracked = await this.coordinator.resources.track(() => fn(ctx));
      if (!last) signal.throwIfAborted();
      await this.coordinator.resources.snapshot(`end ${name}`);
      this.reports.push({ stage: name, ...(engine && { engine: engine.plugin.name }), wallSeconds: round(tracked.wallSeconds), rssStartMB: tracked.rssStartMB, rssEndMB: tracked.rssEndMB, peakRssMB: tracked.peakRssMB });
      // (stages that ran side by side are listed in the plan's order, whichever finished first)
      this.completed.push(name);
      this.completed.sort((a, b) => this.plan.indexOf(a) - this.plan.indexOf(b));
      this.reports.sort((a, b) => this.plan.indexOf(a.stage) - this.plan.indexOf(b.stage));
      this.running.delete(name);
      this.progress(name, 1);
      return tracked.value;
    } catch (error) {
      this.running.delete(name);
      // the first stage to fail is the one the run's error names, whatever ran beside it
      this.failedStage ??= name;
      throw error;
    }
  }

  result(outcome: Outcome | { error: AvatarError }, keptWorkDir: boolean): RunResult {
    const base = {
      stagesCompleted: [...this.completed],
      stages: [...this.reports],
      totalSeconds: round((performance.now() - this.started) / 1000),
      workDir: keptWorkDir ? this.workDir : null,
      engines: { ...this.engines },
    };
    if ('error' in outcome) return { success: false, outputPath: null, durationSeconds: null, error: outcome.error.toJSON(), ...base };
    return {
      success: true, outputPath: outcome.outputPath, durationSeconds: round(outcome.durationSeconds), error: null, ...base,
      ...(outcome.inspection && { inspection: outcome.inspection }),
      ...(outcome.paths && { paths: outcome.paths }),
      ...(outcome.captions && { captions: outcome.captions }),
      ...(outcome.warnings?.length && { warnings: outcome.warnings }),
    };
  }
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

/**
 * Runs the pipeline: load_profile -> synthesize_speech -> validate_avatar -> generate_lipsync ->
 * encode_video -> cleanup. Stages hand each other values in memory; intermediates live in a per-run work
 * folder; the output appears at its path only when the run succeeds (written beside it, then renamed).
 * Models load through the ResourceManager, one at a time, and are released after their stage, also on failure.
 */
export class PipelineCoordinator {
  readonly registry: PluginRegistry;
  readonly resources: ResourceManager;
  readonly voices: VoiceProfileStore;
  private swept: Promise<void> | undefined;
  readonly storageDir: string;
  readonly log: Logger;
  private readonly defaultVoice: VoiceSettings | undefined;
  private readonly engines: EngineChoice;
  private readonly engineOptions: EngineOptions;
  private readonly commercialSafe: boolean;
  private readonly cancelGraceMs: number;
  private readonly encoderStandby: AbortSignal | undefined;
  /** check() outcomes of chosen engines, kept while they pass */
  private readonly checks = new Map<StagePlugin, Promise<PluginCheck>>();

  constructor(options: CoordinatorOptions) {
    this.registry = options.registry;
    this.resources = options.resources;
    this.voices = options.voices;
    this.storageDir = resolve(options.storageDir);
    this.defaultVoice = options.defaultVoice;
    this.engines = { ...options.engines };
    this.engineOptions = { ...options.engineOptions };
    this.commercialSafe = options.commercialSafe ?? false;
    this.cancelGraceMs = options.cancelGraceMs ?? 10_000;
    this.encoderStandby = options.encoderStandby;
    this.log = options.log ?? silentLogger;
  }

  /**
   * The engine for a stage with its options checked: the run's choice (`config.engines`), else the
   * defaults' (a config file, AVATAR_ENGINES), else the stage's default, the first registered.
   * AVATAR_ERR_PLUGIN_NOT_FOUND (listing the installed ones) for a name nobody installed,
   * AVATAR_ERR_STAGE_NOT_INSTALLED when the stage has no engine, AVATAR_ERR_ENGINE_OPTION_INVALID
   * for options its schema refuses.
   */
  engine<K extends StageKind>(stage: K, config?: Partial<EngineConfig>): ResolvedEngine<K> {
    const asked = config?.engines?.[stage];
    const fallback = this.engines[stage];
    const name = asked ?? fallback;
    const entry = this.registry.entry(stage, name);
    if (!entry) {
      if (name !== undefined) this.registry.get(stage, name); // throws, naming the installed ones
      throw new AvatarError('AVATAR_ERR_STAGE_NOT_INSTALLED', { stage });
    }
    const plugin = entry.plugin as StagePlugin<K>;
    // options set with the defaults go with the engine they were set for
    const defaultName = fallback ?? this.registry.entry(stage)?.plugin.name;
    const base = plugin.name === defaultName ? this.engineOptions[stage] : undefined;
    const options = resolvePluginOptions(entry.plugin, { ...base, ...config?.engineOptions?.[stage] }, entry.source);
    const license = plugin.license?.(options);
    return { plugin, options, source: entry.source, ...(license && { license }), chosen: entry !== this.registry.entry(stage) };
  }

  /**
   * The engines a run needs, resolved before any work; `optional` stages (the inspector) only where
   * installed or chosen. A chosen engine must also pass its check() (tools and models there); the
   * stage's default engine reports what it lacks when it runs, as it always has.
   */
  private async engineFor<K extends StageKind>(stage: K, config: Partial<EngineConfig>, optional = false): Promise<ResolvedEngine<K> | undefined> {
    if (optional && !this.hasEngine(stage, config)) return undefined;
    const engine = this.engine(stage, config);
    if (this.commercialSafe || config.commercialSafe) clearedForCommercialUse(engine);
    if (engine.chosen) await this.ready(engine);
    return engine;
  }

  /** Whether a stage has an engine to resolve: one the run or the defaults name, or one installed. */
  private hasEngine(stage: StageKind, config: Partial<EngineConfig>): boolean {
    return config.engines?.[stage] !== undefined || this.engines[stage] !== undefined || this.registry.entry(stage) !== undefined;
  }

  /** The engines (and their options) this coordinator's runs take by default: a settings file, AVATAR_ENGINES. */
  get engineDefaults(): { engines: EngineChoice; engineOptions: EngineOptions } {
    return { engines: { ...this.engines }, engineOptions: { ...this.engineOptions } };
  }

  /**
   * A stage's engine for work outside a run (the CLI's inspect, the server's photo checks), resolved as a
   * run resolves it: the names the configuration gives checked, its licences held to commercialSafe, a
   * chosen engine's check() passed.
   */
  async resolveEngine<K extends StageKind>(stage: K, config: Partial<PipelineConfig> = {}): Promise<ResolvedEngine<K>> {
    const parsed = parsePipelineConfig(config);
    this.checkNamed(parsed);
    return required(await this.engineFor(stage, parsed), stage);
  }

  private async plan(config: Partial<EngineConfig>, required: readonly StageKind[], optional: readonly StageKind[] = []): Promise<EnginePlan> {
    this.checkNamed(config);
    const plan: Record<string, ResolvedEngine | undefined> = {};
    for (const stage of required) plan[stage] = await this.engineFor(stage, config);
    for (const stage of optional) plan[stage] = await this.engineFor(stage, config, true);
    return plan as EnginePlan;
  }

  /**
   * Every engine a configuration names, and every stage it sets options for, checked even where this
   * run does not use that stage: a typo is refused rather than silently ignored.
   */
  private checkNamed(config: Partial<EngineConfig>): void {
    const stages = new Set([...Object.keys(config.engines ?? {}), ...Object.keys(config.engineOptions ?? {})] as StageKind[]);
    for (const stage of stages) {
      // options for the tts engine are checked once the voice says which engine speaks (ttsEngine)
      if (stage === 'tts' && config.engines?.tts === undefined) continue;
      if (this.hasEngine(stage, config)) this.engine(stage, config);
    }
  }

  /** Runs a chosen engine's check() once per process while it passes; AVATAR_ERR_ENGINE_UNAVAILABLE with what it lacks. */
  private async ready(engine: ResolvedEngine): Promise<void> {
    const { plugin } = engine;
    if (!plugin.check) return;
    let pending = this.checks.get(plugin);
    if (!pending) {
      pending = plugin.check().catch((error: unknown): PluginCheck => ({ ok: false, detail: error instanceof Error ? error.message : String(error) }));
      this.checks.set(plugin, pending);
    }
    const outcome = await pending;
    if (outcome.ok) return;
    this.checks.delete(plugin);
    const known = this.registry.list(plugin.stage).map((e) => e.plugin.name).join(', ');
    throw new AvatarError('AVATAR_ERR_ENGINE_UNAVAILABLE', {
      stage: plugin.stage, engine: plugin.name, source: engine.source, detail: outcome.detail,
      install: outcome.install ?? 'see "avatar doctor"', known,
    });
  }

  private loadContext(signal: AbortSignal, options: Readonly<Record<string, unknown>>): Omit<LoadContext, 'device'> {
    return { log: this.log, signal, storageDir: this.storageDir, options };
  }

  /** Loads the engine through the ResourceManager, runs it once, unloads it. */
  async runStage<K extends StageKind>(engine: ResolvedEngine<K>, input: StageInput<K>, ctx: RunContext, options: { alongside?: Alongside } = {}): Promise<StageOutput<K>> {
    return this.withEngine(engine, ctx.signal, (loaded) => loaded.run(input, ctx), options);
  }

  /**
   * An engine loaded through the ResourceManager for `fn`. What it throws that is not one of the
   * project's errors (a plain Error from a plugin's load or run) becomes AVATAR_ERR_ENGINE_FAILED
   * naming the engine and its package, not an internal error of the host.
   */
  private async withEngine<K extends StageKind, T>(engine: ResolvedEngine<K>, signal: AbortSignal, fn: (loaded: LoadedStageOf<K>) => Promise<T>, options: { alongside?: Alongside; graceMs?: number } = {}): Promise<T> {
    const graceMs = options.graceMs ?? this.cancelGraceMs;
    const { plugin } = engine;
    // An engine that does not stop when cancelled is left behind after a grace period, so the run ends:
    // in its load, its run and its unload alike.
    const graced = <R>(work: Promise<R>): Promise<R> => settleSoonAfterAbort(work, signal, graceMs, () => {
      const stuck = new AvatarError('AVATAR_ERR_ENGINE_STUCK', { stage: plugin.stage, engine: plugin.name, source: engine.source, seconds: graceMs / 1000 });
      this.log.warn(stuck.message, { code: stuck.code });
      return stuck;
    });
    const boundedPlugin: StagePlugin<K> = Object.create(plugin, {
      load: {
        value: async (ctx: LoadContext): Promise<LoadedStageOf<K>> => {
          const loading = plugin.load(ctx);
          let loaded: LoadedStageOf<K>;
          try {
            loaded = await graced(loading);
          } catch (error) {
            // a load left behind still finishes: what it loads is unloaded then
            loading.then((late) => late.unload(), () => undefined).catch(() => undefined);
            throw error;
          }
          return Object.create(loaded, { unload: { value: () => graced(loaded.unload()) } }) as LoadedStageOf<K>;
        },
      },
    }) as StagePlugin<K>;
    try {
      return await this.resources.withModel(boundedPlugin, this.loadContext(signal, engine.options), (loaded) => graced(fn(loaded)), { alongside: options.alongside ?? false });
    } catch (error) {
      throw engineFault(engine, error, signal);
    }
  }

  /**
   * What the face engine says of a photo, preparing nothing: the faces it finds and whether the photo can
   * be animated, with each reason (`avatar avatars check`). The engine is chosen and its options checked
   * as for a run; one that cannot report on a photo gives AVATAR_ERR_ENGINE_UNSUPPORTED.
   */
  async assessFace(imagePath: string, options: { config?: Partial<PipelineConfig>; signal?: AbortSignal } = {}): Promise<FaceAssessment> {
    const face = await this.resolveEngine('face', options.config ?? {});
    const signal = options.signal ?? new AbortController().signal;
    const ctx: RunContext = { signal, workDir: this.storageDir, log: this.log, progress: () => undefined };
    return this.withEngine(face, signal, async (loaded) => {
      if (!loaded.assess) {
        throw new AvatarError('AVATAR_ERR_ENGINE_UNSUPPORTED', { stage: 'face', engine: face.plugin.name, source: face.source, what: 'report on a photo without preparing it' });
      }
      return loaded.assess(resolve(imagePath), ctx);
    });
  }

  /**
   * The voice a run speaks with: its profile's, or without one the chosen tts engine's default voice.
   * A profile names its engine; a run that picks another tts engine for it is refused.
   */
  async resolveVoice(voiceProfileId: string | null | undefined, config: Partial<EngineConfig> = {}): Promise<{ voice: VoiceSettings; profile: VoiceProfile | null }> {
    const asked = config.engines?.tts;
    if (voiceProfileId) {
      const profile = await this.voices.get(voiceProfileId);
      if (asked !== undefined && asked !== profile.engine) {
        throw new AvatarError('AVATAR_ERR_ENGINE_CONFLICT', { id: profile.id, profileEngine: profile.engine, engine: asked });
      }
      return { voice: { engine: profile.engine, voice: profile.voice, language: profile.language, rate: profile.rate, pitch: profile.pitch }, profile };
    }
    const name = asked ?? this.engines.tts ?? this.defaultVoice?.engine;
    if (this.defaultVoice && name === this.defaultVoice.engine) return { voice: { ...this.defaultVoice }, profile: null };
    const { plugin } = this.engine('tts', { engines: name !== undefined ? { tts: name } : {} });
    if (!plugin.defaultVoice) throw new AvatarError('AVATAR_ERR_ENGINE_NO_DEFAULT_VOICE', { engine: plugin.name });
    return { voice: { engine: plugin.name, voice: plugin.defaultVoice.voice, language: plugin.defaultVoice.language, rate: 1, pitch: 0 }, profile: null };
  }

  /** The tts engine that speaks a voice, with the run's options for it. */
  private async ttsEngine(voice: VoiceSettings, config: Partial<EngineConfig>): Promise<ResolvedEngine<'tts'>> {
    const engine = await this.engineFor('tts', { ...config, engines: { ...config.engines, tts: voice.engine } });
    if (!engine) throw new AvatarError('AVATAR_ERR_STAGE_NOT_INSTALLED', { stage: 'tts' });
    return engine;
  }

  /**
   * Checks a text against the voice that would say it, as a run would before synthesising: the profile
   * exists, its engine is installed, and the engine's own checks pass (every character sayable, not
   * too long). Nothing is synthesised.
   */
  async checkText(text: string, voiceProfileId: string | null | undefined, maxSeconds: number, config: Partial<EngineConfig> = {}): Promise<void> {
    if (!text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
    const { voice } = await this.resolveVoice(voiceProfileId, config);
    const tts = this.engine('tts', { ...config, engines: { ...config.engines, tts: voice.engine } });
    if (this.commercialSafe || config.commercialSafe) clearedForCommercialUse(tts);
    await tts.plugin.checkInput?.({ text, voice, maxSeconds });
  }

  /**
   * Checks a job's engine choices as its run would before any work (no check() here: that runs where
   * the job runs): each named engine installed, the options set accepted by its schema. A stage with
   * no engine here is left to the worker, which may have one.
   */
  checkEngines(config: Partial<EngineConfig>, stages: readonly StageKind[] = []): void {
    this.checkNamed(config);
    // with commercialSafe, a job whose engines could only be refused when it runs is refused now
    if (!this.commercialSafe && !config.commercialSafe) return;
    for (const stage of stages) {
      if (this.hasEngine(stage, config)) clearedForCommercialUse(this.engine(stage, config));
    }
  }

  /**
   * Removes what killed processes left in the storage folder (work folders, partials of outputs:
   * leftovers.ts); once per coordinator, at its first run or when a worker or server starts.
   */
  sweepLeftovers(): Promise<void> {
    this.swept ??= sweepLeftovers(this.storageDir, { log: this.log }).then(() => undefined);
    return this.swept;
  }

  /**
   * Runs a plan of stages as one run: leftovers swept, a work folder claimed, the caller's cancel
   * followed, `work` run, its output published onto its path only once every stage has succeeded, the
   * work folder removed (unless kept), and a failure turned into a result that says which stages
   * completed, with intermediates and anything written beside the output removed. A plan that lists
   * `cleanup` reports it as a stage. Never throws.
   */
  private async runPlan(request: CommonRequest & LiveRequest & { outputPath?: string }, plan: readonly StageName[], options: { keepWorkDir: boolean }, work: (run: StageRun) => Promise<Outcome>): Promise<RunResult> {
    await this.sweepLeftovers();
    // and beside this run's output, where a killed run would have left its partial
    if (request.outputPath && !(request.live && request.liveOnly)) await sweepPartials([dirname(resolve(request.outputPath))], { log: this.log });
    const runId = request.runId ?? `run-${Date.now()}-${randomBytes(3).toString('hex')}`;
    const controller = new AbortController();
    const outer = request.signal;
    const onAbort = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', onAbort, { once: true });
    const run = new StageRun(this, join(this.storageDir, 'work', runId), plan, controller.signal, request.onProgress);
    const removeWorkDir = (): Promise<void> => rm(run.workDir, { recursive: true, force: true });
    try {
      await ensureDir(run.workDir);
      await claimWorkDir(run.workDir);
      const outcome = await work(run);
      // the output appears at its path only now, when every stage has succeeded
      // (each one published is removed again should a later one fail: a failed run leaves nothing)
      for (const { from, to } of outcome.publish ?? []) {
        await publishFile(from, to);
        run.temporaries.push(to);
      }
      run.temporaries.length = 0;
      if (plan.includes('cleanup')) await run.stage('cleanup', async () => { if (!options.keepWorkDir) await removeWorkDir(); });
      else if (!options.keepWorkDir) await removeWorkDir();
      // kept on purpose: no later sweep takes it for a killed run's
      if (options.keepWorkDir) await keepWorkDir(run.workDir);
      return run.result(outcome, options.keepWorkDir);
    } catch (thrown) {
      // once the run is aborted, whatever a stage throws on its way out is the cancellation
      // (an engine that ignored the cancel is named: the run still ends, without it)
      const error = run.signal.aborted && !isAvatarError(thrown, 'AVATAR_ERR_ENGINE_STUCK')
        ? new AvatarError('AVATAR_ERR_CANCELLED', { stage: run.failedStage ?? run.current }, { cause: thrown })
        : toAvatarError(thrown, run.failedStage ?? run.current);
      // a failed run always removes its intermediates and what it wrote beside its outputs
      await removeWorkDir().catch(() => undefined);
      for (const path of run.temporaries) await rm(path, { force: true }).catch(() => undefined);
      this.log.error(`${run.failedStage ?? run.current} failed: ${error.message}`, { code: error.code });
      return run.result({ error }, false);
    } finally {
      outer?.removeEventListener('abort', onAbort);
    }
  }

  /** Text + voice + photo -> talking-head video. Never throws: failures come back in the result. */
  async execute(request: PipelineRequest): Promise<RunResult> {
    const plan: StageName[] = ['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup'];
    return this.runPlan(request, plan, { keepWorkDir: !parseCleanup(request.config) }, async (run) => {
      // inputs and engines are checked before any engine starts, so a typo costs nothing
      if (!request.text || !request.text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
      const { config, settings, outputPath, avatarPath } = await this.checkTalkingHeadRequest(request);
      if (config.captions !== 'none') await checkCaptionTargets(outputPath);
      const engines = await this.plan(config, ['face', 'lipsync', 'encode'], ['inspect']);
      this.checkLiveEncoder(engines, request.live);
      // The face stage runs beside the speech: the speech engine works in its own process, the face
      // stage in this one (one thread), so on two cores neither waits for the other; the face stage starts
      // once the speech engine reports that it is running (its first progress above 0), since loading the
      // face stage's native libraries first would delay the engine's start. The encoder's checks go with
      // the face stage.
      const maxSeconds = config.maxVideoLengthSeconds;
      const { voice, tts } = await run.stage('load_profile', () => this.voiceAndEngine(request.voiceProfileId, config));
      // A live run is drawn and encoded as the speech is made: the frames start with the first sentences
      // (the renderer and the encoder take the speech's parts as they come), where the engines can; a
      // run whose captions are drawn into the picture waits for the whole speech (they are made from it).
      // (an encoder or inspector that declares memory of its own would have to fit beside the speech
      // engine as well as the renderer, and cannot wait for a slot there: such a run speaks first)
      const light = (engine: ResolvedEngine | undefined): boolean => !engine?.plugin.resources.ramMB && !engine?.plugin.resources.vramMB;
      const pipelined = request.live !== undefined && config.captions !== 'burn'
        && engines.lipsync?.plugin.speechParts === true && engines.encode?.plugin.audioStream === true
        && light(engines.encode) && light(engines.inspect);
      const feed = pipelined ? new SpeechFeed() : undefined;
      // the face stage has a signal of its own, linked to the run's: a failed speech stops it too; the
      // speech has one too, so a failed render or encode stops it
      const beside = new AbortController();
      const speechStop = new AbortController();
      const onRunAbort = (): void => {
        beside.abort(run.signal.reason);
        speechStop.abort(run.signal.reason);
      };
      run.signal.addEventListener('abort', onRunAbort, { once: true });
      let goFace: (go: boolean) => void = () => {};
      const faceGo = new Promise<boolean>((resolve) => { goFace = resolve; });
      // the parts go to the renderer and the encoder. A speech that runs past the limit (an engine of a
      // third party's may not check it) is refused as the text, as the whole speech would be, rather
      // than by the renderer as audio: the speech is stopped (not thrown at: the engine may call from
      // where a throw is lost) and the run ends with that refusal.
      let spokenSeconds = 0;
      let refused: AvatarError | undefined;
      const onPart = feed && ((part: SpeechPart): void => {
        if (refused) return;
        spokenSeconds += part.pcm.length / part.sampleRate;
        if (spokenSeconds > maxSeconds) {
          refused = new AvatarError('AVATAR_ERR_INPUT_TEXT_TOO_LONG', { input: 'text', seconds: spokenSeconds.toFixed(1), limit: maxSeconds });
          feed.fail(refused);
          speechStop.abort(refused);
          return;
        }
        feed.add(part);
      });
      const speaking = run.stage('synthesize_speech', (ctx) => this.synthesizeInto(tts, voice, request.text, maxSeconds, {
        ...ctx,
        progress: (fraction, detail) => {
          if (fraction > 0) goFace(true);
          ctx.progress(fraction, detail);
        },
      }, onPart), tts, { signal: speechStop.signal });
      // (an engine that reports no progress: the face stage starts when its speech is done)
      speaking.then((speech) => {
        goFace(true);
        feed?.end(speech);
      }, (error: unknown) => {
        beside.abort(error);
        goFace(false);
        feed?.fail(error);
      });
      // (an encoder started ahead and not taken goes when the run does)
      const ahead = new AbortController();
      const facing = faceGo.then((go) => {
        if (!go) return undefined;
        this.prewarm(engines.encode);
        return this.validateAvatar(run, engines, avatarPath, settings.size, { besideSpeech: true, signal: beside.signal });
      });
      if (feed) {
        this.log.debug('the frames follow the speech as it is made');
        // the encode is known once the speech's rate is: its encoder may start now (it takes a while to)
        const liveEncode = (sampleRate: number): Omit<EncodeAhead, 'signal'> => ({ settings, live: true, audioStream: { sampleRate } });
        let sampleRate: number | undefined;
        feed.first.then((part) => {
          sampleRate = part.sampleRate;
          this.encodeAhead(engines.encode, { ...liveEncode(part.sampleRate), signal: ahead.signal });
        }, () => {});
        // The renderer starts once the face is known: it makes its mesh and reads the photo while the
        // first sentence is spoken (some 35 ms of this process's time that otherwise came after it).
        // The encode starts with the first sentence: it needs the sound's rate.
        const [faced] = await Promise.allSettled([facing]);
        const avatar = faced.status === 'fulfilled' ? faced.value : undefined;
        if (!avatar) {
          ahead.abort();
          speechStop.abort();
          const [spoken] = await Promise.allSettled([speaking]);
          run.signal.removeEventListener('abort', onRunAbort);
          if (refused) throw refused;
          throw besideSpeechFailure(spoken, faced, run.failedStage) ?? new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'the face stage did not run' });
        }
        // (awaited only once the renderer runs: a run that fails before then must not leave it unhandled)
        const soundReady = feed.first.then((part) => ({ sampleRate: part.sampleRate, chunks: feed.sound(), seconds: () => feed.seconds }));
        soundReady.catch(() => {});
        const captionsLater = config.captions === 'none' ? Promise.resolve(undefined) : speaking.then((speech) => this.writeCaptions(run.workDir, request.text, speech, config.captions === 'burn' ? 'burn' : 'soft', avatar));
        captionsLater.catch(() => {});
        let encoded = false;
        try {
          const outcome = await this.renderAndEncode(run, engines, {
            avatar, speechParts: feed.parts(), audioPath: join(run.workDir, 'speech.wav'), maxSeconds, settings, animation: animationOf(config),
          }, {
            outputPath, live: request.live, liveOnly: request.liveOnly === true, captionsLater,
            audioStream: soundReady,
          });
          encoded = true;
          return outcome;
        } catch (error) {
          // the speech stops with the run; when it failed first, its error is the run's
          speechStop.abort();
          const spoken = await speaking.then(() => undefined, (e: unknown) => e);
          // (captions being written from a speech that just finished are done before cleanup runs)
          await captionsLater.catch(() => {});
          if (refused) throw refused;
          if (spoken !== undefined && run.failedStage === 'synthesize_speech') throw spoken;
          throw error;
        } finally {
          ahead.abort();
          run.signal.removeEventListener('abort', onRunAbort);
          // an encoder like this one's, started for the service's next live run (after one that went
          // through: not after a failure or a cancel, a service's stop among them); bounded by the host
          // too, for an engine that would keep it as long as the signal lets it
          const standby = this.encoderStandby;
          if (encoded && sampleRate !== undefined && standby && !standby.aborted && !run.signal.aborted) {
            this.encodeAhead(engines.encode, { ...liveEncode(sampleRate), signal: AbortSignal.any([standby, AbortSignal.timeout(STANDBY_MS)]), standby: true });
          }
        }
      }
      // both settle before the run goes on or fails: no stage is left running behind a failed one
      const [spoken, faced] = await Promise.allSettled([speaking, facing]).finally(() => run.signal.removeEventListener('abort', onRunAbort));
      const failure = besideSpeechFailure(spoken, faced, run.failedStage);
      if (failure !== undefined) throw failure;
      if (spoken.status === 'rejected') throw spoken.reason;
      const speech = spoken.value;
      const avatar = faced.status === 'fulfilled' ? faced.value : undefined;
      if (!avatar) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'the face stage did not run' });
      const captions = config.captions === 'none' ? undefined : await this.writeCaptions(run.workDir, request.text, speech, config.captions, avatar);
      return this.renderAndEncode(run, engines, {
        avatar, speech, audioPath: speech.wavPath, maxSeconds, settings, animation: animationOf(config),
      }, { outputPath, live: request.live, liveOnly: request.liveOnly === true, ...(captions && { captions }) });
    });
  }

  /** The voice of a run and the tts engine that speaks it, ready (load_profile). */
  private async voiceAndEngine(voiceProfileId: string | null | undefined, config: Partial<EngineConfig>): Promise<{ voice: VoiceSettings; tts: ResolvedEngine<'tts'> }> {
    this.checkNamed(config);
    const { voice } = await this.resolveVoice(voiceProfileId, config);
    return { voice, tts: await this.ttsEngine(voice, config) };
  }

  /** Live output needs an encoder that streams: checked with the engines, before any stage runs. */
  private checkLiveEncoder(engines: EnginePlan, live: Writable | undefined): void {
    const encoder = engines.encode;
    if (!live || !encoder || encoder.plugin.liveOutput) return;
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', {
      field: 'output', problem: `is live, which encode engine ${encoder.plugin.name} cannot write`, value: 'live',
      expected: 'Write to a file, or choose an encode engine that streams (ffmpeg).',
    });
  }

  /** Tells an encode engine what it will encode, so it may start its encoder meanwhile; without waiting for it. */
  private encodeAhead(engine: ResolvedEngine | undefined, plan: EncodeAhead): void {
    if (!engine?.plugin.encodeAhead) return;
    const { plugin } = engine;
    // (a plugin's throw, or an answer that is not a promise, is only logged too)
    Promise.resolve().then(() => plugin.encodeAhead?.(plan)).catch((error: unknown) => this.log.debug(`${plugin.stage}/${plugin.name}: starting the encoder ahead failed; the encode starts its own`, { reason: String(error) }));
  }

  /** Starts an engine's optional preparation for a later stage, without waiting for it. */
  private prewarm(engine: ResolvedEngine | undefined): void {
    if (!engine?.plugin.prewarm) return;
    const { plugin } = engine;
    plugin.prewarm?.().catch((error: unknown) => this.log.debug(`${plugin.stage}/${plugin.name}: preparing early failed; loading will say why`, { reason: String(error) }));
  }

  /**
   * Settings and paths of a talking-head run, checked: output extension and folder (or, for live output,
   * an MP4 and an encoder that can stream it), the avatar image.
   */
  private async checkTalkingHeadRequest(request: LiveRequest & { config?: Partial<PipelineConfig> | PipelineConfig; outputPath: string; avatarImage: string }) {
    const config: PipelineConfig = parsePipelineConfig(request.config ?? {});
    const avatarPath = resolve(request.avatarImage);
    let outputPath = LIVE_OUTPUT;
    if (request.live && config.outputFormat !== 'mp4') {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', {
        field: 'outputFormat', problem: 'must be mp4 for live output (fragmented MP4 as it is encoded)', value: config.outputFormat,
        expected: 'Use --format mp4 (the default) with --output - or live jobs, or write a .webm file.',
      });
    }
    if (!(request.live && request.liveOnly)) {
      outputPath = resolve(request.outputPath);
      checkOutputExtension(outputPath, config.outputFormat);
      await checkWritableTarget(outputPath, 'output path');
    }
    await checkImageFile(avatarPath, 'avatar image');
    return { config, settings: resolveEncodeSettings(config), outputPath, avatarPath };
  }

  /**
   * The face stage hands over a prepared avatar (aligned, cropped to the preset's size) in the work
   * folder. `besideSpeech`: it runs while the speech engine holds the model slot, alongside it when the
   * memory budget has room (as the encoder runs beside the renderer), else once the slot is free.
   */
  private validateAvatar(run: StageRun, engines: EnginePlan, avatarPath: string, size: number, { besideSpeech = false, signal }: { besideSpeech?: boolean; signal?: AbortSignal } = {}): Promise<Avatar> {
    const face = required(engines.face, 'face');
    return run.stage('validate_avatar', (ctx) => this.runStage(face, {
      imagePath: avatarPath, prepare: { outputPath: join(ctx.workDir, 'avatar.png'), size, reuse: true },
    }, ctx, { alongside: besideSpeech ? 'if-room' : false }), face, signal ? { signal } : {});
  }

  /**
   * Lip-sync frames stream straight into the encoder: the renderer stays loaded while the encoder
   * consumes its frames, so both stages run inside one model slot and no frame touches the disk.
   * An installed inspector then measures the finished video from the outside.
   */
  /**
   * The captions of a text's speech, as WebVTT and SRT in the work folder: the words the engine spoke
   * put back onto the text as written, in cues (captions.ts).
   */
  private async writeCaptions(workDir: string, text: string, speech: Speech, mode: 'soft' | 'burn', picture: { width: number; height: number }): Promise<Captions> {
    // an engine that gives no word times (a third party's): placed along the audio
    const words = speech.words ?? estimateWords(spokenWords(speech.spokenText), speech.pcm, speech.sampleRate);
    return this.writeCueFiles(workDir, writtenWords(text, words), { mode, picture, timing: speech.words ? (speech.wordTimingSource ?? 'engine') : 'estimated' });
  }

  private async writeCueFiles(workDir: string, words: CaptionWord[], how: { mode: 'soft' | 'burn'; picture: { width: number; height: number }; timing: Captions['timing']; warning?: string }): Promise<Captions> {
    const cues = buildCues(words, { maxLineChars: lineCharsFor(how.picture.width, how.picture.height) });
    const vtt = join(workDir, 'captions.vtt');
    const srt = join(workDir, 'captions.srt');
    await writeWholeFile(vtt, toWebVtt(cues));
    await writeWholeFile(srt, toSrt(cues));
    return { mode: how.mode, vtt, srt, cues: cues.length, timing: how.timing, ...(how.warning && { warning: how.warning }) };
  }

  /**
   * Captions of a recording from its transcript (align.ts): the transcript spoken by the default voice,
   * its word times carried onto the recording by dynamic time warping. Measured against engine-timed
   * speech by other voices: words start within 12-26 ms of where they are said on average (synthetic
   * voices only). A transcript
   * the recording does not seem to say still gets captions, with a warning; one that cannot be aligned
   * (a recording over MAX_ALIGN_SECONDS) gets none, with the reason.
   */
  private async alignCaptions(run: StageRun, request: LipsyncRequest, config: PipelineConfig, audioPath: string, picture: { width: number; height: number }): Promise<{ captions?: Captions; warning?: string }> {
    const transcript = (request.transcript ?? '').trim();
    if (config.captions === 'none' || !transcript) return {};
    const limit = Math.min(MAX_ALIGN_SECONDS, config.maxVideoLengthSeconds);
    const recording = await decodeAudio(audioPath, { sampleRate: 16000, maxSeconds: limit + 1, input: 'audio', signal: run.signal });
    // (over the run's own limit the lip-sync stage refuses the recording: nothing to caption)
    if (recording.durationSeconds > config.maxVideoLengthSeconds) return {};
    if (recording.durationSeconds > MAX_ALIGN_SECONDS) return { warning: `no captions: the recording is longer than ${MAX_ALIGN_SECONDS} s, the longest a transcript is aligned to` };
    const ctx: RunContext = { signal: run.signal, workDir: run.workDir, log: this.log, progress: () => undefined };
    let speech: Speech;
    try {
      const { voice, tts } = await this.voiceAndEngine(undefined, config);
      // (a transcript far longer than the recording is not what it says: refused by the speech's limit)
      speech = await this.runStage(tts, { text: transcript, voice, outputPath: join(run.workDir, 'transcript.wav'), maxSeconds: 1.5 * recording.durationSeconds + 10 }, ctx);
    } catch (error) {
      // a transcript the voice cannot say (another language, far longer than the recording) costs the
      // captions, not the video; a cancel or a full disk is the run's
      const failure = toAvatarError(error, 'generate_lipsync');
      if (run.signal.aborted || failure.code === 'AVATAR_ERR_CANCELLED' || failure.code.startsWith('AVATAR_ERR_STORAGE')) throw error;
      return { warning: `no captions: the transcript could not be spoken to align it (${failure.message})` };
    }
    const words = speech.words ?? estimateWords(spokenWords(speech.spokenText), speech.pcm, speech.sampleRate);
    const aligned = await alignSpeech({ pcm: recording.samples, sampleRate: recording.sampleRate }, { pcm: speech.pcm, sampleRate: speech.sampleRate, words }, { signal: run.signal });
    if (!aligned) return { warning: 'no captions: the transcript could not be aligned to the recording (one of them holds no sound)' };
    const warning = aligned.matches ? undefined
      : `the transcript does not seem to be what the recording says (warping cost ${aligned.cost.toFixed(2)} of chance, above ${MISMATCH_RATIO}): its captions may be mistimed`;
    return { captions: await this.writeCueFiles(run.workDir, writtenWords(transcript, aligned.words), { mode: config.captions, picture, timing: 'aligned', ...(warning && { warning }) }) };
  }

  private async renderAndEncode(
    run: StageRun, engines: EnginePlan, input: LipsyncInput,
    target: {
      outputPath: string; live: Writable | undefined; liveOnly: boolean; captions?: Captions; captionsLater?: Promise<Captions | undefined>;
      /** the sound as it is made, once its first part is (the frames may start before: see execute) */
      audioStream?: Promise<AudioStream>;
    },
  ): Promise<Outcome> {
    const lipsync = required(engines.lipsync, 'lipsync');
    const encoder = required(engines.encode, 'encode');
    const { settings } = input;
    const { outputPath, live } = target;
    let captions = target.captions;
    const liveOnly = live !== undefined && target.liveOnly;
    // the video is encoded and inspected beside its target and moved onto it when the whole run
    // succeeds; a live video is inspected from a copy in the work folder, which cleanup removes
    const partial = liveOnly ? join(run.workDir, 'live.mp4') : partialPathFor(outputPath);
    run.temporaries.push(partial);
    const inspector = engines.inspect;
    // An inspector that can measures the video while it is encoded, from the encoder's own packets
    // (inspect_video then runs beside encode_video); else it decodes the finished file afterwards.
    let watched: Promise<InspectionSummary> | undefined;
    let encodeEnded: (error?: unknown) => void = () => {};
    const encodeSettled = new Promise<void>((resolve, reject) => {
      encodeEnded = (error) => (error === undefined ? resolve() : reject(error));
    });
    encodeSettled.catch(() => {});
    const watchWith = (regions: FrameRegions) => (video: WatchedVideo): void => {
      if (!inspector) return;
      // (the encode's failure reaches the run through the encode; the stream only closes early)
      video.bytes.on('error', () => {});
      watched = run.stage('inspect_video', async (ctx) => {
        // an inspector that stops, done or failed or before it read a byte, lets go of the stream: the
        // encode never waits on a reader that is not there
        const measuring = this.runStage(inspector, { videoPath: partial, regions, watching: video }, ctx, { alongside: true })
          .finally(() => video.bytes.destroy());
        measuring.catch(() => {});
        try {
          // it ends after the encode: a failed encode is the run's failure, whatever the inspector saw of it
          await encodeSettled;
        } catch (error) {
          video.bytes.destroy();
          await measuring.catch(() => {});
          throw error;
        }
        return measuring;
      }, inspector, { watching: 'encode_video' });
      watched.catch(() => {});
    };
    let rendering: { video: EncodedVideo; regions: FrameRegions | undefined; renderPath: ComputePath | undefined };
    try {
      // (the renderer's own grace is the longer: when the encoder ignores a cancel, it is the one named)
      rendering = await this.withEngine(lipsync, run.signal, async (renderer) => {
        const rendered = await run.stage('generate_lipsync', (ctx) => renderer.run(input, ctx), lipsync);
        const audioStream = await target.audioStream;
        // what the renderer throws while the encoder pulls its frames is the renderer's fault, not the encoder's
        const frames = { ...rendered, frames: blamed(rendered.frames, lipsync, run.signal) };
        const carried = captions && encoder.plugin.captions ? { captions: { path: captions.vtt, mode: captions.mode } } : {};
        const watch = rendered.regions && inspector?.plugin.watchesEncode && encoder.plugin.watchOutput ? { watch: watchWith(rendered.regions) } : {};
        const encoding = run.stage('encode_video', (ctx) =>
          this.runStage(encoder, {
            kind: 'frames', frames, audioPath: input.audioPath, outputPath: partial, settings,
            ...(audioStream && { audioStream }), ...(live && { live }), ...carried, ...watch,
          }, ctx, { alongside: true }), encoder);
        encoding.then(() => encodeEnded(), (error: unknown) => encodeEnded(error ?? new Error('the encode failed')));
        const encoded = await encoding;
        // (the renderer says how it drew once it has drawn: read now)
        return { video: encoded, regions: rendered.regions, renderPath: rendered.computePath };
        // (drawn as the speech is made, the renderer runs beside the speech engine when the memory budget
        // has room, as the face stage does; otherwise it waits for the speech engine's slot)
      }, { graceMs: 2 * this.cancelGraceMs, ...(target.audioStream && { alongside: 'if-room' as const }) });
    } catch (error) {
      // no stage is left running behind a failed one: an inspection under way ends with the encode
      await watched?.catch(() => {});
      throw error;
    }
    const { video, regions, renderPath } = rendering;
    let inspection: InspectionSummary | undefined;
    if (watched) {
      inspection = await watched;
    } else if (inspector && regions) {
      inspection = await run.stage('inspect_video', (ctx) => this.runStage(inspector, { videoPath: video.outputPath, regions }, ctx), inspector);
    }
    // (captions made from a speech that was still being spoken when the frames started)
    captions ??= await target.captionsLater;
    const paths = { ...(renderPath && { render: { ...renderPath } }), ...(video.computePath && { encode: { ...video.computePath } }) };
    const beside = captionPaths(outputPath);
    const captionFiles = captions && !liveOnly ? [{ from: captions.vtt, to: beside.vtt }, { from: captions.srt, to: beside.srt }] : [];
    const notInVideo = !captions ? undefined
      : !encoder.plugin.captions ? `the encoder ${encoder.plugin.name} cannot carry captions`
      : captions.mode === 'soft' && live ? 'a live stream carries video and audio only' : undefined;
    const report: CaptionsReport | undefined = captions && {
      mode: captions.mode, vtt: captionFiles[0]?.to ?? null, srt: captionFiles[1]?.to ?? null, cues: captions.cues, timing: captions.timing,
      ...(notInVideo && { notInVideo }), ...(captions.warning && { warning: captions.warning }),
    };
    return {
      outputPath, durationSeconds: video.durationSeconds, ...(inspection && { inspection }), ...(Object.keys(paths).length > 0 && { paths }),
      ...(report && { captions: report }),
      ...(!liveOnly && { publish: [...captionFiles, { from: partial, to: outputPath }] }),
    };
  }

  /** A portrait + a recording -> talking-head video (video_lipsync). */
  async lipsync(request: LipsyncRequest): Promise<RunResult> {
    const plan: StageName[] = ['validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup'];
    return this.runPlan(request, plan, { keepWorkDir: !parseCleanup(request.config) }, async (run) => {
      const { config, settings, outputPath, avatarPath } = await this.checkTalkingHeadRequest(request);
      const audioPath = resolve(request.audioPath);
      await checkReadableFile(audioPath, 'audio');
      const engines = await this.plan(config, ['face', 'lipsync', 'encode'], ['inspect']);
      this.checkLiveEncoder(engines, request.live);
      this.prewarm(engines.face);
      this.prewarm(engines.encode);
      if (config.captions !== 'none' && request.transcript?.trim()) await checkCaptionTargets(outputPath);
      const avatar = await this.validateAvatar(run, engines, avatarPath, settings.size);
      const { captions, warning } = await this.alignCaptions(run, request, config, audioPath, avatar);
      if (warning) this.log.warn(warning);
      const outcome = await this.renderAndEncode(run, engines, { avatar, audioPath, maxSeconds: config.maxVideoLengthSeconds, settings, animation: animationOf(config) }, { outputPath, live: request.live, liveOnly: request.liveOnly === true, ...(captions && { captions }) });
      if (outcome.captions?.warning) this.log.warn(`captions: ${outcome.captions.warning}`);
      return warning ? { ...outcome, warnings: [warning] } : outcome;
    });
  }

  private async synthesizeInto(tts: ResolvedEngine<'tts'>, voice: VoiceSettings, text: string, maxSeconds: number, ctx: RunContext, onPart?: (part: SpeechPart) => void): Promise<Speech> {
    const speech = await this.runStage(tts, { text, voice, outputPath: join(ctx.workDir, 'speech.wav'), maxSeconds, ...(onPart && { onPart }) }, ctx);
    if (speech.durationSeconds > maxSeconds) {
      throw new AvatarError('AVATAR_ERR_INPUT_TEXT_TOO_LONG', { input: 'text', seconds: speech.durationSeconds.toFixed(1), limit: maxSeconds });
    }
    return speech;
  }

  /** Text -> WAV at `outputPath` (voice_synthesis). */
  async speak(request: SpeechRequest): Promise<RunResult> {
    const plan: StageName[] = ['load_profile', 'synthesize_speech'];
    return this.runPlan(request, plan, { keepWorkDir: request.keepIntermediates === true }, async (run) => {
      const outputPath = resolve(request.outputPath);
      if (!request.text || !request.text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
      if (!outputPath.toLowerCase().endsWith('.wav')) {
        const dot = outputPath.lastIndexOf('.');
        throw new AvatarError('AVATAR_ERR_OUTPUT_EXTENSION', { input: 'output path', extension: dot > outputPath.lastIndexOf('/') ? outputPath.slice(dot) : '(no extension)', format: 'wav' });
      }
      await checkWritableTarget(outputPath, 'output path');
      const config = parsePipelineConfig(request.config ?? {});
      const { voice, tts } = await run.stage('load_profile', () => this.voiceAndEngine(request.voiceProfileId, config));
      const speech = await run.stage('synthesize_speech', (ctx) => this.synthesizeInto(tts, voice, request.text, request.maxSeconds ?? 120, ctx), tts);
      return { outputPath, durationSeconds: speech.durationSeconds, publish: [{ from: speech.wavPath, to: outputPath }] };
    });
  }

  /** Still image + audio -> video (video_encoding). */
  async encodeStill(request: StillVideoRequest): Promise<RunResult> {
    return this.runPlan(request, ['encode_video'], { keepWorkDir: false }, async (run) => {
      const config = parsePipelineConfig(request.config ?? {});
      const outputPath = resolve(request.outputPath);
      checkOutputExtension(outputPath, config.outputFormat);
      await checkWritableTarget(outputPath, 'output path');
      await checkImageFile(resolve(request.imagePath), 'image');
      await checkReadableFile(resolve(request.audioPath), 'audio');
      const settings = resolveEncodeSettings(config);
      const encoder = required((await this.plan(config, ['encode'])).encode, 'encode');
      // written beside the target and moved onto it once the run has succeeded (an engine left behind
      // by a cancel can only write the partial, which the failed run removes)
      const partial = partialPathFor(outputPath);
      run.temporaries.push(partial);
      const video = await run.stage('encode_video', (ctx) => this.runStage(encoder, {
        kind: 'still', imagePath: resolve(request.imagePath), audioPath: resolve(request.audioPath), outputPath: partial, settings,
      }, ctx), encoder);
      return { outputPath, durationSeconds: video.durationSeconds, publish: [{ from: partial, to: outputPath }] };
    });
  }

  /**
   * Photo -> prepared avatar (avatar_generation): the face stage checks the photo and writes the aligned,
   * cropped PNG with its JSON sidecar at `outputPath`; a refused photo leaves nothing there.
   */
  async prepareAvatar(request: AvatarRequest): Promise<RunResult & { avatar: Avatar | null }> {
    let avatar: Avatar | null = null;
    const result = await this.runPlan(request, ['validate_avatar'], { keepWorkDir: false }, async (run) => {
      const config = parsePipelineConfig(request.config ?? {});
      const outputPath = resolve(request.outputPath);
      if (!outputPath.toLowerCase().endsWith('.png')) {
        const dot = outputPath.lastIndexOf('.');
        throw new AvatarError('AVATAR_ERR_OUTPUT_EXTENSION', { input: 'avatar output', extension: dot > outputPath.lastIndexOf('/') ? outputPath.slice(dot) : '(no extension)', format: 'png' });
      }
      await checkWritableTarget(outputPath, 'avatar output');
      const imagePath = resolve(request.imagePath);
      await checkImageFile(imagePath, 'avatar image');
      const size = resolveEncodeSettings(config).size;
      const face = required((await this.plan(config, ['face'])).face, 'face');
      avatar = await run.stage('validate_avatar', (ctx) => this.runStage(face, { imagePath, prepare: { outputPath, size } }, ctx), face);
      return { outputPath, durationSeconds: 0 };
    });
    return { ...result, avatar };
  }

  /** Reference recording -> a stored voice profile with the measured figures (voice_clone). */
  async matchVoice(request: VoiceMatchRequest): Promise<RunResult & { profile: VoiceProfile | null }> {
    let profile: VoiceProfile | null = null;
    const result = await this.runPlan(request, ['match_voice'], { keepWorkDir: false }, async (run) => {
      const referencePath = resolve(request.referencePath);
      await checkReadableFile(referencePath, 'reference recording');
      const config = parsePipelineConfig(request.config ?? {});
      const engines = request.engine ? { ...config.engines, voice: request.engine } : config.engines;
      const matcher = required((await this.plan({ ...config, engines }, ['voice'])).voice, 'voice');
      const match: VoiceMatch = await run.stage('match_voice', (ctx) => this.runStage(matcher, { referencePath }, ctx), matcher);
      profile = await this.voices.create(match.settings, { ...(request.name && { name: request.name }), measured: match.measured, reason: match.reason });
      return { outputPath: join(this.voices.dir, `${profile.id}.json`), durationSeconds: match.measured.durationSeconds };
    });
    return { ...result, profile };
  }
}

/** AVATAR_ERR_ENGINE_LICENSE unless the engine declares licences that all allow commercial use. */
function clearedForCommercialUse(engine: ResolvedEngine): void {
  const { plugin, license, source } = engine;
  const refuse = (reason: string): never => {
    throw new AvatarError('AVATAR_ERR_ENGINE_LICENSE', { stage: plugin.stage, engine: plugin.name, source, reason });
  };
  if (!license) refuse('it declares no licence');
  else if (!license.commercialUse) refuse(`its code is under ${license.code}${license.note ? ` (${license.note})` : ''}`);
  else {
    const model = license.models.find((m) => !m.commercialUse);
    if (model) refuse(`model ${model.name} is under ${model.license}${model.note ? ` (${model.note})` : ''}`);
  }
}

/** A plugin's failure as the host reports it: the project's own errors as they are, anything else named for the engine. */
function engineFault(engine: ResolvedEngine, error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted || isAvatarError(error) || storageError(error)) return error;
  if (error instanceof Error && error.name === 'AbortError') return error;
  const reason = error instanceof Error ? error.message : String(error);
  return new AvatarError('AVATAR_ERR_ENGINE_FAILED', { stage: engine.plugin.stage, engine: engine.plugin.name, source: engine.source, reason }, { cause: error });
}

/** `work`, or once `signal` has aborted and `graceMs` passed without it settling, the error `stuck` gives. */
function settleSoonAfterAbort<T>(work: Promise<T>, signal: AbortSignal, graceMs: number, stuck: () => AvatarError): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      timer = setTimeout(() => reject(stuck()), graceMs);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolvePromise, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    });
  });
}

/** A renderer's frames, whose plain errors are reported as the renderer's (AVATAR_ERR_ENGINE_FAILED naming it). */
async function* blamed(frames: AsyncIterable<Uint8Array>, engine: ResolvedEngine, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  try {
    yield* frames;
  } catch (error) {
    throw engineFault(engine, error, signal);
  }
}

/**
 * The error a run reports when the speech or the face stage beside it failed (undefined when neither
 * did): an engine that ignored a cancel first (it is named), else the stage that failed first.
 */
function besideSpeechFailure(spoken: PromiseSettledResult<unknown>, faced: PromiseSettledResult<unknown>, failedStage: StageName | undefined): unknown {
  const failures = [spoken, faced].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const stuck = failures.find((reason) => isAvatarError(reason, 'AVATAR_ERR_ENGINE_STUCK'));
  if (stuck) return stuck;
  if (faced.status === 'rejected' && (spoken.status !== 'rejected' || failedStage === 'validate_avatar')) return faced.reason;
  if (spoken.status === 'rejected') return spoken.reason;
  return undefined;
}

/** A required stage's engine from a plan (plan() throws when one is missing, so this never does). */
function required<K extends StageKind>(engine: ResolvedEngine<K> | undefined, stage: K): ResolvedEngine<K> {
  if (!engine) throw new AvatarError('AVATAR_ERR_STAGE_NOT_INSTALLED', { stage });
  return engine;
}

function parseCleanup(config: PipelineRequest['config']): boolean {
  return typeof config?.cleanupIntermediates === 'boolean' ? config.cleanupIntermediates : true;
}

/** Moves a finished file onto its target without ever leaving a half-written target. */
/** The captions' files go beside the video (none for a live run that keeps no file): they must be writable too, not a folder of that name. */
async function checkCaptionTargets(outputPath: string): Promise<void> {
  if (outputPath === LIVE_OUTPUT) return;
  for (const path of Object.values(captionPaths(outputPath))) await checkWritableTarget(path, 'captions file');
}

/** Where a video's captions go: beside it, named as it is (talk.mp4 -> talk.vtt, talk.srt). */
export function captionPaths(videoPath: string): { vtt: string; srt: string } {
  const stem = join(dirname(videoPath), basename(videoPath, extname(videoPath)));
  return { vtt: `${stem}.vtt`, srt: `${stem}.srt` };
}

export async function publishFile(source: string, target: string): Promise<void> {
  try {
    await rename(source, target);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
  }
  const partial = partialPathFor(target);
  try {
    await copyFile(source, partial);
    await rename(partial, target);
  } finally {
    await rm(partial, { force: true });
  }
}
