import { randomBytes } from 'node:crypto';
import { copyFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { PipelineConfig } from './config.js';
import { animationOf, checkOutputExtension, parsePipelineConfig, resolveEncodeSettings } from './config.js';
import type { AvatarErrorJSON } from './errors.js';
import { AvatarError, toAvatarError } from './errors.js';
import { checkReadableFile, checkWritableTarget, ensureDir, partialPathFor } from './fsutil.js';
import { claimWorkDir, keepWorkDir, sweepLeftovers, sweepPartials } from './leftovers.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';
import { checkImageFile } from './media.js';
import type { Avatar, InspectionSummary, LipsyncInput, LoadContext, RunContext, Speech, StageInput, StageKind, StageOutput, StagePlugin, VoiceMatch, VoiceSettings } from './plugin.js';
import type { PluginRegistry } from './registry.js';
import type { ResourceManager } from './resources.js';
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
}

/** What a successful run produced. */
interface Outcome {
  outputPath: string;
  durationSeconds: number;
  inspection?: InspectionSummary;
  /** a finished file to move onto its target once every stage has succeeded */
  publish?: { from: string; to: string };
}

export interface CommonRequest {
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  /** names the work folder; a job passes its id */
  runId?: string;
}

export interface PipelineRequest extends CommonRequest {
  text: string;
  voiceProfileId?: string | null;
  avatarImage: string;
  outputPath: string;
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface SpeechRequest extends CommonRequest {
  text: string;
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

export interface LipsyncRequest extends CommonRequest {
  avatarImage: string;
  /** the recording the avatar speaks: WAV, MP3, OGG... */
  audioPath: string;
  outputPath: string;
  config?: Partial<PipelineConfig> | PipelineConfig;
}

export interface VoiceMatchRequest extends CommonRequest {
  referencePath: string;
  name?: string;
  /** the engine that measures the voice; default: the first 'voice' plugin */
  engine?: string;
}

export interface CoordinatorOptions {
  registry: PluginRegistry;
  resources: ResourceManager;
  voices: VoiceProfileStore;
  storageDir: string;
  /** the voice used when a run names no profile */
  defaultVoice: VoiceSettings;
  /** engine names per stage; default: the first registered for that stage */
  engines?: Partial<Record<StageKind, string>>;
  log?: Logger;
}

/** Runs named stages in order, recording each one's time and memory, and turning failures into results. */
class StageRun {
  readonly completed: StageName[] = [];
  readonly reports: StageReport[] = [];
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

  private weightBefore(stage: StageName): number {
    const total = this.plan.reduce((s, n) => s + STAGE_WEIGHT[n], 0);
    const before = this.plan.slice(0, this.plan.indexOf(stage)).reduce((s, n) => s + STAGE_WEIGHT[n], 0);
    return before / total;
  }

  progress(stage: StageName, stageFraction: number, detail?: string): void {
    if (!this.onProgress) return;
    const total = this.plan.reduce((s, n) => s + STAGE_WEIGHT[n], 0);
    const f = Math.min(1, Math.max(0, stageFraction));
    this.onProgress({ stage, stageFraction: f, fraction: Math.min(1, this.weightBefore(stage) + (STAGE_WEIGHT[stage] / total) * f), ...(detail !== undefined && { detail }) });
  }

  /** Files this run wrote beside their targets, removed when it fails. */
  readonly temporaries: string[] = [];

  async stage<T>(name: StageName, fn: (ctx: RunContext) => Promise<T>): Promise<T> {
    this.current = name;
    // cleanup always runs; once the last stage has done its work, the run has succeeded and a late
    // cancel no longer undoes it
    const last = name === 'cleanup' || name === this.plan[this.plan.length - 1];
    if (name !== 'cleanup') this.signal.throwIfAborted();
    await this.coordinator.resources.snapshot(`start ${name}`);
    this.progress(name, 0);
    const ctx: RunContext = {
      signal: this.signal,
      workDir: this.workDir,
      log: this.coordinator.log,
      progress: (fraction, detail) => this.progress(name, fraction, detail),
    };
    const tracked = await this.coordinator.resources.track(() => fn(ctx));
    if (!last) this.signal.throwIfAborted();
    await this.coordinator.resources.snapshot(`end ${name}`);
    this.reports.push({ stage: name, wallSeconds: round(tracked.wallSeconds), rssStartMB: tracked.rssStartMB, rssEndMB: tracked.rssEndMB, peakRssMB: tracked.peakRssMB });
    this.completed.push(name);
    this.progress(name, 1);
    return tracked.value;
  }

  result(outcome: Outcome | { error: AvatarError }, keptWorkDir: boolean): RunResult {
    const base = {
      stagesCompleted: [...this.completed],
      stages: [...this.reports],
      totalSeconds: round((performance.now() - this.started) / 1000),
      workDir: keptWorkDir ? this.workDir : null,
    };
    if ('error' in outcome) return { success: false, outputPath: null, durationSeconds: null, error: outcome.error.toJSON(), ...base };
    return {
      success: true, outputPath: outcome.outputPath, durationSeconds: round(outcome.durationSeconds), error: null, ...base,
      ...(outcome.inspection && { inspection: outcome.inspection }),
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
  private readonly defaultVoice: VoiceSettings;
  private readonly engines: Partial<Record<StageKind, string>>;

  constructor(options: CoordinatorOptions) {
    this.registry = options.registry;
    this.resources = options.resources;
    this.voices = options.voices;
    this.storageDir = resolve(options.storageDir);
    this.defaultVoice = options.defaultVoice;
    this.engines = options.engines ?? {};
    this.log = options.log ?? silentLogger;
  }

  /** The engine for a stage: the configured one, else the first registered; AVATAR_ERR_STAGE_NOT_INSTALLED when none. */
  plugin<K extends StageKind>(stage: K, name?: string): StagePlugin<K> {
    const wanted = name ?? this.engines[stage];
    if (wanted) return this.registry.get(stage, wanted);
    const found = this.registry.find(stage);
    if (!found) throw new AvatarError('AVATAR_ERR_STAGE_NOT_INSTALLED', { stage });
    return found;
  }

  private loadContext(signal: AbortSignal): LoadContext {
    return { log: this.log, signal, storageDir: this.storageDir };
  }

  /** Loads the plugin through the ResourceManager, runs it once, unloads it. */
  async runStage<K extends StageKind>(plugin: StagePlugin<K>, input: StageInput<K>, ctx: RunContext, options: { alongside?: boolean } = {}): Promise<StageOutput<K>> {
    return this.resources.withModel(plugin, this.loadContext(ctx.signal), (loaded) => loaded.run(input, ctx), options);
  }

  async resolveVoice(voiceProfileId: string | null | undefined): Promise<{ voice: VoiceSettings; profile: VoiceProfile | null }> {
    if (!voiceProfileId) return { voice: { ...this.defaultVoice }, profile: null };
    const profile = await this.voices.get(voiceProfileId);
    return { voice: { engine: profile.engine, voice: profile.voice, language: profile.language, rate: profile.rate, pitch: profile.pitch }, profile };
  }

  /**
   * Checks a text against the voice that would say it, as a run would before synthesising: the profile
   * exists, its engine is installed, and the engine's own checks pass (every character sayable, not
   * too long). Nothing is synthesised.
   */
  async checkText(text: string, voiceProfileId: string | null | undefined, maxSeconds: number): Promise<void> {
    if (!text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
    const { voice } = await this.resolveVoice(voiceProfileId);
    await this.registry.get('tts', voice.engine).checkInput?.({ text, voice, maxSeconds });
  }

  /**
   * Removes what killed processes left in the storage folder (work folders, partials of outputs:
   * leftovers.ts); once per coordinator, at its first run or when a worker or server starts.
   */
  sweepLeftovers(): Promise<void> {
    this.swept ??= sweepLeftovers(this.storageDir, { log: this.log }).then(() => undefined);
    return this.swept;
  }

  private async begin(request: CommonRequest & { outputPath?: string }, plan: readonly StageName[]): Promise<{ run: StageRun; controller: AbortController; detach: () => void }> {
    await this.sweepLeftovers();
    // and beside this run's output, where a killed run would have left its partial
    if (request.outputPath) await sweepPartials([dirname(resolve(request.outputPath))], { log: this.log });
    const runId = request.runId ?? `run-${Date.now()}-${randomBytes(3).toString('hex')}`;
    const workDir = join(this.storageDir, 'work', runId);
    const controller = new AbortController();
    const outer = request.signal;
    const onAbort = (): void => controller.abort(outer?.reason);
    if (outer?.aborted) controller.abort(outer.reason);
    else outer?.addEventListener('abort', onAbort, { once: true });
    const run = new StageRun(this, workDir, plan, controller.signal, request.onProgress);
    return { run, controller, detach: () => outer?.removeEventListener('abort', onAbort) };
  }

  private async finish(run: StageRun, work: () => Promise<Outcome>, cleanup: boolean, finalStage: boolean): Promise<RunResult> {
    try {
      await ensureDir(run.workDir);
      await claimWorkDir(run.workDir);
      const outcome = await work();
      // the output appears at its path only now, when every stage has succeeded
      if (outcome.publish) await publishFile(outcome.publish.from, outcome.publish.to);
      if (finalStage) await run.stage('cleanup', async () => { if (cleanup) await rm(run.workDir, { recursive: true, force: true }); });
      else if (cleanup) await rm(run.workDir, { recursive: true, force: true });
      // kept on purpose: no later sweep takes it for a killed run's
      if (!cleanup) await keepWorkDir(run.workDir);
      return run.result(outcome, !cleanup);
    } catch (thrown) {
      // once the run is aborted, whatever a stage throws on its way out is the cancellation
      const error = run.signal.aborted
        ? new AvatarError('AVATAR_ERR_CANCELLED', { stage: run.current }, { cause: thrown })
        : toAvatarError(thrown, run.current);
      // a failed run always removes its intermediates and what it wrote beside its outputs
      await rm(run.workDir, { recursive: true, force: true }).catch(() => undefined);
      for (const path of run.temporaries) await rm(path, { force: true }).catch(() => undefined);
      this.log.error(`${run.current} failed: ${error.message}`, { code: error.code });
      return run.result({ error }, false);
    }
  }

  /** Text + voice + photo -> talking-head video. Never throws: failures come back in the result. */
  async execute(request: PipelineRequest): Promise<RunResult> {
    const { run, detach } = await this.begin(request, ['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup']);
    try {
      return await this.finish(run, async () => {
        // inputs are checked before any engine starts, so a typo costs nothing
        if (!request.text || !request.text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
        const { config, settings, outputPath, avatarPath } = await this.checkTalkingHeadRequest(request);
        // early preparation, spread so that two cores are not asked for three things at once: the face
        // stage's native libraries load in this process once the speech engine reports that it is
        // running (its first progress above 0) in its own, not before (loading them first would delay
        // the engine's start), and the encoder's checks run beside the face stage, which uses one thread
        let faceWarm = false;
        const warmFace = (): void => {
          if (!faceWarm) this.prewarm('face');
          faceWarm = true;
        };
        const maxSeconds = config.maxVideoLengthSeconds;
        const voice = await run.stage('load_profile', async () => (await this.resolveVoice(request.voiceProfileId)).voice);
        const speech = await run.stage('synthesize_speech', (ctx) => this.synthesizeInto(voice, request.text, maxSeconds, {
          ...ctx,
          progress: (fraction, detail) => {
            if (fraction > 0) warmFace();
            ctx.progress(fraction, detail);
          },
        }));
        warmFace(); // an engine that reports no progress
        this.prewarm('encode');
        const avatar = await this.validateAvatar(run, avatarPath, settings.size);
        return this.renderAndEncode(run, {
          avatar, speech, audioPath: speech.wavPath, maxSeconds, settings, animation: animationOf(config),
        }, outputPath);
      }, parseCleanup(request.config), true);
    } finally {
      detach();
    }
  }

  /** Starts the installed plugins' optional preparation for later stages, without waiting for it. */
  private prewarm(...stages: StageKind[]): void {
    for (const stage of stages) {
      let plugin: StagePlugin;
      try {
        plugin = this.plugin(stage);
      } catch {
        continue; // not installed: the stage itself will say so
      }
      plugin.prewarm?.().catch((error: unknown) => this.log.debug(`${stage}/${plugin.name}: preparing early failed; loading will say why`, { reason: String(error) }));
    }
  }

  /** Settings and paths of a talking-head run, checked: output extension and folder, the avatar image. */
  private async checkTalkingHeadRequest(request: { config?: Partial<PipelineConfig> | PipelineConfig; outputPath: string; avatarImage: string }) {
    const config: PipelineConfig = parsePipelineConfig(request.config ?? {});
    const outputPath = resolve(request.outputPath);
    const avatarPath = resolve(request.avatarImage);
    checkOutputExtension(outputPath, config.outputFormat);
    await checkWritableTarget(outputPath, 'output path');
    await checkImageFile(avatarPath, 'avatar image');
    return { config, settings: resolveEncodeSettings(config), outputPath, avatarPath };
  }

  /** The face stage hands over a prepared avatar (aligned, cropped to the preset's size) in the work folder. */
  private validateAvatar(run: StageRun, avatarPath: string, size: number): Promise<Avatar> {
    return run.stage('validate_avatar', (ctx) => this.runStage(this.plugin('face'), {
      imagePath: avatarPath, prepare: { outputPath: join(ctx.workDir, 'avatar.png'), size, reuse: true },
    }, ctx));
  }

  /**
   * Lip-sync frames stream straight into the encoder: the renderer stays loaded while the encoder
   * consumes its frames, so both stages run inside one model slot and no frame touches the disk.
   * An installed inspector then measures the finished video from the outside.
   */
  private async renderAndEncode(run: StageRun, input: LipsyncInput, outputPath: string): Promise<Outcome> {
    const lipsync = this.plugin('lipsync');
    const encoder = this.plugin('encode');
    const { settings } = input;
    // the video is encoded and inspected beside its target and moved onto it when the whole run succeeds
    const partial = partialPathFor(outputPath);
    run.temporaries.push(partial);
    const { video, regions } = await this.resources.withModel(lipsync, this.loadContext(run.signal), async (renderer) => {
      const frames = await run.stage('generate_lipsync', (ctx) => renderer.run(input, ctx));
      const encoded = await run.stage('encode_video', (ctx) =>
        this.runStage(encoder, { kind: 'frames', frames, audioPath: input.audioPath, outputPath: partial, settings }, ctx, { alongside: true }));
      return { video: encoded, regions: frames.regions };
    });
    const inspector = this.registry.find('inspect');
    let inspection: InspectionSummary | undefined;
    if (inspector && regions) {
      inspection = await run.stage('inspect_video', (ctx) => this.runStage(inspector, { videoPath: video.outputPath, regions }, ctx));
    }
    return { outputPath, durationSeconds: video.durationSeconds, ...(inspection && { inspection }), publish: { from: partial, to: outputPath } };
  }

  /** A portrait + a recording -> talking-head video (video_lipsync). */
  async lipsync(request: LipsyncRequest): Promise<RunResult> {
    const plan: StageName[] = ['validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup'];
    const { run, detach } = await this.begin(request, plan);
    try {
      return await this.finish(run, async () => {
        const { config, settings, outputPath, avatarPath } = await this.checkTalkingHeadRequest(request);
        const audioPath = resolve(request.audioPath);
        await checkReadableFile(audioPath, 'audio');
        this.prewarm('face', 'encode');
        const avatar = await this.validateAvatar(run, avatarPath, settings.size);
        return this.renderAndEncode(run, { avatar, audioPath, maxSeconds: config.maxVideoLengthSeconds, settings, animation: animationOf(config) }, outputPath);
      }, parseCleanup(request.config), true);
    } finally {
      detach();
    }
  }

  private async synthesizeInto(voice: VoiceSettings, text: string, maxSeconds: number, ctx: RunContext): Promise<Speech> {
    const tts = this.registry.get('tts', voice.engine);
    const speech = await this.runStage(tts, { text, voice, outputPath: join(ctx.workDir, 'speech.wav'), maxSeconds }, ctx);
    if (speech.durationSeconds > maxSeconds) {
      throw new AvatarError('AVATAR_ERR_INPUT_TEXT_TOO_LONG', { input: 'text', seconds: speech.durationSeconds.toFixed(1), limit: maxSeconds });
    }
    return speech;
  }

  /** Text -> WAV at `outputPath` (voice_synthesis). */
  async speak(request: SpeechRequest): Promise<RunResult> {
    const plan: StageName[] = ['load_profile', 'synthesize_speech'];
    const { run, detach } = await this.begin(request, plan);
    try {
      return await this.finish(run, async () => {
        const outputPath = resolve(request.outputPath);
        if (!request.text || !request.text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'text' });
        if (!outputPath.toLowerCase().endsWith('.wav')) {
          const dot = outputPath.lastIndexOf('.');
          throw new AvatarError('AVATAR_ERR_OUTPUT_EXTENSION', { input: 'output path', extension: dot > outputPath.lastIndexOf('/') ? outputPath.slice(dot) : '(no extension)', format: 'wav' });
        }
        await checkWritableTarget(outputPath, 'output path');
        const voice = await run.stage('load_profile', async () => (await this.resolveVoice(request.voiceProfileId)).voice);
        const speech = await run.stage('synthesize_speech', (ctx) => this.synthesizeInto(voice, request.text, request.maxSeconds ?? 120, ctx));
        return { outputPath, durationSeconds: speech.durationSeconds, publish: { from: speech.wavPath, to: outputPath } };
      }, !request.keepIntermediates, false);
    } finally {
      detach();
    }
  }

  /** Still image + audio -> video (video_encoding). */
  async encodeStill(request: StillVideoRequest): Promise<RunResult> {
    const { run, detach } = await this.begin(request, ['encode_video']);
    try {
      return await this.finish(run, async () => {
        const config = parsePipelineConfig(request.config ?? {});
        const outputPath = resolve(request.outputPath);
        checkOutputExtension(outputPath, config.outputFormat);
        await checkWritableTarget(outputPath, 'output path');
        await checkImageFile(resolve(request.imagePath), 'image');
        await checkReadableFile(resolve(request.audioPath), 'audio');
        const settings = resolveEncodeSettings(config);
        const video = await run.stage('encode_video', (ctx) => this.runStage(this.plugin('encode'), {
          kind: 'still', imagePath: resolve(request.imagePath), audioPath: resolve(request.audioPath), outputPath, settings,
        }, ctx));
        return { outputPath: video.outputPath, durationSeconds: video.durationSeconds };
      }, true, false);
    } finally {
      detach();
    }
  }

  /**
   * Photo -> prepared avatar (avatar_generation): the face stage checks the photo and writes the aligned,
   * cropped PNG with its JSON sidecar at `outputPath`; a refused photo leaves nothing there.
   */
  async prepareAvatar(request: AvatarRequest): Promise<RunResult & { avatar: Avatar | null }> {
    const { run, detach } = await this.begin(request, ['validate_avatar']);
    let avatar: Avatar | null = null;
    try {
      const result = await this.finish(run, async () => {
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
        avatar = await run.stage('validate_avatar', (ctx) => this.runStage(this.plugin('face'), { imagePath, prepare: { outputPath, size } }, ctx));
        return { outputPath, durationSeconds: 0 };
      }, true, false);
      return { ...result, avatar };
    } finally {
      detach();
    }
  }

  /** Reference recording -> a stored voice profile with the measured figures (voice_clone). */
  async matchVoice(request: VoiceMatchRequest): Promise<RunResult & { profile: VoiceProfile | null }> {
    const { run, detach } = await this.begin(request, ['match_voice']);
    let profile: VoiceProfile | null = null;
    try {
      const result = await this.finish(run, async () => {
        const referencePath = resolve(request.referencePath);
        await checkReadableFile(referencePath, 'reference recording');
        const match: VoiceMatch = await run.stage('match_voice', (ctx) => this.runStage(this.plugin('voice', request.engine), { referencePath }, ctx));
        profile = await this.voices.create(match.settings, { ...(request.name && { name: request.name }), measured: match.measured, reason: match.reason });
        return { outputPath: join(this.voices.dir, `${profile.id}.json`), durationSeconds: match.measured.durationSeconds };
      }, true, false);
      return { ...result, profile };
    } finally {
      detach();
    }
  }
}

function parseCleanup(config: PipelineRequest['config']): boolean {
  return typeof config?.cleanupIntermediates === 'boolean' ? config.cleanupIntermediates : true;
}

/** Moves a finished file onto its target without ever leaving a half-written target. */
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
