import { isAbsolute, join, relative } from 'node:path';
import { checkOutputExtension, parsePipelineConfig } from './config.js';
import type { OutputFormat } from './config.js';
import type { PipelineCoordinator } from './coordinator.js';
import { AvatarError, isAvatarError } from './errors.js';
import { checkReadableFile, checkWritableTarget } from './fsutil.js';
import { checkJobParams } from './job-params.js';
import { isFinished } from './jobs.js';
import type { JobParams, JobType } from './jobs.js';
import type { StageKind } from './plugin.js';
import type { JobStore } from './store/types.js';
import { checkImageFile } from './media.js';

/** The settings a speech or voice job takes in its config. */
const ENGINE_SETTINGS: readonly string[] = ['engines', 'engineOptions', 'commercialSafe'];

/** The stages (besides tts, which the voice picks) each job type runs, whose licences commercialSafe checks at submit. */
const JOB_STAGES: Record<JobType, readonly StageKind[]> = {
  full_pipeline: ['face', 'lipsync', 'encode', 'inspect'],
  voice_synthesis: [],
  video_encoding: ['encode'],
  voice_clone: ['voice'],
  avatar_generation: ['face'],
  video_lipsync: ['face', 'lipsync', 'encode', 'inspect'],
};

/**
 * Checks a job before it is queued, as its run would check it before any work: the params' shape,
 * then every input that can be checked without running a stage (the settings, the files there and of
 * the right kind, the text sayable by the chosen voice, an output path that can be written). A job
 * that cannot succeed is refused at submit with the code its run would fail with.
 */
export async function checkJobInputs(coordinator: PipelineCoordinator, jobType: JobType, params: JobParams, options: { store?: JobStore } = {}): Promise<void> {
  checkJobParams(jobType, params);
  // paths in params are absolute, or taken from the storage folder (as the job handlers take them)
  const path = (key: string): string => {
    const value = String(params[key]);
    return isAbsolute(value) ? value : join(coordinator.storageDir, value);
  };
  /**
   * Checks an input file; one not there yet that is the default output of a job still queued or
   * running (`<storage>/outputs/<jobId>.<ext>`) is taken as coming: a job may follow the one that makes
   * its input. Whether it can be read is then checked when it runs.
   */
  const input = async (key: string, check: (file: string) => Promise<unknown>): Promise<void> => {
    const file = path(key);
    try {
      await check(file);
    } catch (error) {
      if (!isAvatarError(error, 'AVATAR_ERR_INPUT_FILE_MISSING') || !(await comingFromQueuedJob(file))) throw error;
    }
  };
  const comingFromQueuedJob = async (file: string): Promise<boolean> => {
    const match = /^(job-\d{14}-[0-9a-f]{8})\.[a-z0-9]+$/.exec(relative(join(coordinator.storageDir, 'outputs'), file));
    const job = match?.[1] && options.store ? await options.store.get(match[1]) : undefined;
    return job !== undefined && !isFinished(job.status);
  };
  const given = (key: string): boolean => typeof params[key] === 'string' && params[key] !== '';
  const config = parsePipelineConfig(params.config ?? {});
  if (params.live === true && config.outputFormat !== 'mp4') {
    throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: 'live', problem: `needs MP4 output, not ${config.outputFormat}`, expected: 'Leave outputFormat at mp4 for a live job, or drop "live".' });
  }
  const output = async (format: OutputFormat | 'wav' | 'png', input = 'output path'): Promise<void> => {
    if (!given('outputPath')) return; // the default, in the storage folder's outputs
    const target = path('outputPath');
    checkOutputExtension(target, format, input);
    await checkWritableTarget(target, input);
  };
  const voiceId = given('voiceProfileId') ? String(params.voiceProfileId) : null;
  // speech and voice jobs make no video: of the settings they take the engine ones only
  if (jobType === 'voice_synthesis' || jobType === 'voice_clone') {
    const extra = Object.keys((params.config ?? {}) as object).find((key) => !ENGINE_SETTINGS.includes(key));
    if (extra !== undefined) {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: `config.${extra}`, problem: `is not a setting of ${jobType}`, expected: `${jobType} takes only ${ENGINE_SETTINGS.join(', ')} in config.` });
    }
  }
  coordinator.checkEngines(config, JOB_STAGES[jobType]);
  switch (jobType) {
    case 'full_pipeline':
      await output(config.outputFormat);
      await input('avatarImagePath', (file) => checkImageFile(file, 'avatar image'));
      await coordinator.checkText(String(params.text), voiceId, config.maxVideoLengthSeconds, config);
      return;
    case 'voice_synthesis':
      await output('wav');
      await coordinator.checkText(String(params.text), voiceId, typeof params.maxSeconds === 'number' ? params.maxSeconds : 120, config);
      return;
    case 'video_encoding':
      await output(config.outputFormat);
      await input('imagePath', (file) => checkImageFile(file, 'image'));
      await input('audioPath', (file) => checkReadableFile(file, 'audio'));
      return;
    case 'video_lipsync':
      await output(config.outputFormat);
      await input('avatarImagePath', (file) => checkImageFile(file, 'avatar image'));
      await input('audioPath', (file) => checkReadableFile(file, 'audio'));
      return;
    case 'avatar_generation':
      await output('png', 'avatar output');
      await input('imagePath', (file) => checkImageFile(file, 'avatar image'));
      return;
    case 'voice_clone':
      await input('referencePath', (file) => checkReadableFile(file, 'reference recording'));
      return;
    default: {
      const unknown: never = jobType;
      throw new AvatarError('AVATAR_ERR_JOB_TYPE_UNKNOWN', { type: String(unknown), known: '' });
    }
  }
}
