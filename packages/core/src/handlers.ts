import { rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { finished } from 'node:stream/promises';
import type { PipelineCoordinator, RunResult } from './coordinator.js';
import { AvatarError, ERRORS, errorSpec } from './errors.js';
import { ensureDir } from './fsutil.js';
import { HlsWriter, liveDirFor } from './hls.js';
import type { JobParams, JobResult, JsonValue } from './jobs.js';
import type { JobContext, JobHandlers } from './worker.js';

const str = (params: JobParams, key: string): string | undefined => {
  const v = params[key];
  return typeof v === 'string' && v !== '' ? v : undefined;
};

function toResult(run: RunResult, extra: JobResult = {}): JobResult {
  if (!run.success) {
    const error = run.error ?? new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'a failed run without an error' }).toJSON();
    // the run's error as it was (a plugin's code too), with the stages it completed
    const spec = errorSpec(error.code) ?? ERRORS.AVATAR_ERR_INTERNAL;
    throw AvatarError.withSpec(error.code, { message: error.message, hint: error.hint, httpStatus: spec.httpStatus, exitCode: spec.exitCode },
      { ...error.params, stagesCompleted: run.stagesCompleted.join(',') || 'none' }, { filled: true });
  }
  return {
    outputPath: run.outputPath,
    durationSeconds: run.durationSeconds,
    stagesCompleted: run.stagesCompleted,
    stages: run.stages.map((s) => ({ ...s }) as unknown as JsonValue),
    totalSeconds: run.totalSeconds,
    engines: JSON.parse(JSON.stringify(run.engines)) as JsonValue,
    ...(run.inspection && { inspection: JSON.parse(JSON.stringify(run.inspection)) as JsonValue }),
    ...(run.paths && { paths: JSON.parse(JSON.stringify(run.paths)) as JsonValue }),
    ...(run.captions && { captions: JSON.parse(JSON.stringify(run.captions)) as JsonValue }),
    ...(run.warnings && { warnings: [...run.warnings] }),
    ...extra,
  };
}

/**
 * The job handlers a worker runs: each job type maps to a coordinator run. Outputs default to
 * `<storage>/outputs/<jobId>.<ext>`; relative paths in params are taken from the storage folder.
 */
export function createJobHandlers(coordinator: PipelineCoordinator): JobHandlers {
  const storage = coordinator.storageDir;
  const inStorage = (p: string): string => (isAbsolute(p) ? p : join(storage, p));
  const configOf = (ctx: JobContext): Record<string, unknown> => (ctx.job.params.config ?? {}) as Record<string, unknown>;
  /** The job's outputPath, or `<storage>/outputs/<jobId>.<ext>` (video: the configured format's extension). */
  const output = async (ctx: JobContext, ext: string | 'video'): Promise<string> => {
    const given = str(ctx.job.params, 'outputPath');
    if (given) return inStorage(given);
    await ensureDir(join(storage, 'outputs'));
    const extension = ext === 'video' ? ((configOf(ctx).outputFormat as string | undefined) ?? 'mp4') : ext;
    return join(storage, 'outputs', `${ctx.job.jobId}.${extension}`);
  };
  /**
   * A talking-head run, published as HLS while it is made when the job asks (`live: true`): the playlist
   * ends when the video is whole; a failed or cancelled run's live files go with it. Each attempt starts
   * the live folder afresh.
   */
  const withLive = async (ctx: JobContext, run: (live: { live?: HlsWriter }) => Promise<RunResult>): Promise<RunResult> => {
    if (ctx.job.params.live !== true) return run({});
    const dir = liveDirFor(storage, ctx.job.jobId);
    await rm(dir, { recursive: true, force: true });
    const writer = new HlsWriter(dir);
    // a writer that fails (a full disk) fails the encode through the live stream; its error is the run's
    writer.on('error', () => {});
    const result = await run({ live: writer });
    if (result.success && !writer.destroyed) {
      writer.end();
      const ended = await finished(writer).then(() => true, () => false);
      if (ended) return result;
    }
    // (once it has closed, no write of its is still on its way to recreate the folder)
    if (!writer.closed) {
      const closed = new Promise((resolve) => writer.once('close', resolve));
      writer.destroy();
      await closed;
    }
    await rm(dir, { recursive: true, force: true });
    return result;
  };
  const common = (ctx: JobContext) => ({
    signal: ctx.signal,
    // each attempt works in a folder of its own, so a retry never shares files with an earlier run
    runId: `${ctx.job.jobId}-a${ctx.job.attempts}`,
    onProgress: (e: { fraction: number; stage: string }) => ctx.progress(e.fraction, e.stage),
  });


  return {
    full_pipeline: async (ctx) => {
      const outputPath = await output(ctx, 'video');
      const run = await withLive(ctx, (live) => coordinator.execute({
        ...common(ctx),
        text: String(ctx.job.params.text),
        voiceProfileId: str(ctx.job.params, 'voiceProfileId') ?? null,
        avatarImage: inStorage(String(ctx.job.params.avatarImagePath)),
        outputPath,
        config: configOf(ctx),
        ...live,
      }));
      return toResult(run);
    },
    voice_synthesis: async (ctx) => {
      const maxSeconds = typeof ctx.job.params.maxSeconds === 'number' ? ctx.job.params.maxSeconds : undefined;
      const run = await coordinator.speak({
        ...common(ctx),
        text: String(ctx.job.params.text),
        voiceProfileId: str(ctx.job.params, 'voiceProfileId') ?? null,
        outputPath: await output(ctx, 'wav'),
        config: configOf(ctx),
        ...(maxSeconds !== undefined && { maxSeconds }),
      });
      return toResult(run);
    },
    video_encoding: async (ctx) => {
      const run = await coordinator.encodeStill({
        ...common(ctx),
        imagePath: inStorage(String(ctx.job.params.imagePath)),
        audioPath: inStorage(String(ctx.job.params.audioPath)),
        outputPath: await output(ctx, 'video'),
        config: configOf(ctx),
      });
      return toResult(run);
    },
    voice_clone: async (ctx) => {
      const name = str(ctx.job.params, 'name');
      const run = await coordinator.matchVoice({ ...common(ctx), referencePath: inStorage(String(ctx.job.params.referencePath)), config: configOf(ctx), ...(name && { name }) });
      const profile = run.profile;
      return toResult(run, profile ? { voiceProfileId: profile.id, profile: JSON.parse(JSON.stringify(profile)) as JsonValue } : {});
    },
    avatar_generation: async (ctx) => {
      const run = await coordinator.prepareAvatar({
        ...common(ctx),
        imagePath: inStorage(String(ctx.job.params.imagePath)),
        outputPath: await output(ctx, 'png'),
        config: configOf(ctx),
      });
      const avatar = run.avatar;
      return toResult(run, avatar ? {
        avatar: JSON.parse(JSON.stringify({ imagePath: avatar.imagePath, width: avatar.width, height: avatar.height, face: avatar.face })) as JsonValue,
      } : {});
    },
    video_lipsync: async (ctx) => {
      const outputPath = await output(ctx, 'video');
      const run = await withLive(ctx, (live) => coordinator.lipsync({
        ...common(ctx),
        avatarImage: inStorage(String(ctx.job.params.avatarImagePath)),
        audioPath: inStorage(String(ctx.job.params.audioPath)),
        outputPath,
        config: configOf(ctx),
        ...(typeof ctx.job.params.transcript === 'string' && { transcript: ctx.job.params.transcript }),
        ...live,
      }));
      return toResult(run);
    },
  };
}
