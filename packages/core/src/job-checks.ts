import { isAbsolute, join } from 'node:path';
import { checkOutputExtension, parsePipelineConfig } from './config.js';
import type { OutputFormat } from './config.js';
import type { PipelineCoordinator } from './coordinator.js';
import { AvatarError } from './errors.js';
import { checkReadableFile, checkWritableTarget } from './fsutil.js';
import { checkJobParams } from './handlers.js';
import type { JobParams, JobType } from './jobs.js';
import { checkImageFile } from './media.js';

/**
 * Checks a job before it is queued, as its run would check it before any work: the params' shape,
 * then every input that can be checked without running a stage (the settings, the files there and of
 * the right kind, the text sayable by the chosen voice, an output path that can be written). A job
 * that cannot succeed is refused at submit with the code its run would fail with.
 */
export async function checkJobInputs(coordinator: PipelineCoordinator, jobType: JobType, params: JobParams): Promise<void> {
  checkJobParams(jobType, params);
  // paths in params are absolute, or taken from the storage folder (as the job handlers take them)
  const path = (key: string): string => {
    const value = String(params[key]);
    return isAbsolute(value) ? value : join(coordinator.storageDir, value);
  };
  const given = (key: string): boolean => typeof params[key] === 'string' && params[key] !== '';
  const config = parsePipelineConfig(params.config ?? {});
  const output = async (format: OutputFormat | 'wav' | 'png', input = 'output path'): Promise<void> => {
    if (!given('outputPath')) return; // the default, in the storage folder's outputs
    const target = path('outputPath');
    checkOutputExtension(target, format, input);
    await checkWritableTarget(target, input);
  };
  const voiceId = given('voiceProfileId') ? String(params.voiceProfileId) : null;
  switch (jobType) {
    case 'full_pipeline':
      await output(config.outputFormat);
      await checkImageFile(path('avatarImagePath'), 'avatar image');
      await coordinator.checkText(String(params.text), voiceId, config.maxVideoLengthSeconds);
      return;
    case 'voice_synthesis':
      await output('wav');
      await coordinator.checkText(String(params.text), voiceId, typeof params.maxSeconds === 'number' ? params.maxSeconds : 120);
      return;
    case 'video_encoding':
      await output(config.outputFormat);
      await checkImageFile(path('imagePath'), 'image');
      await checkReadableFile(path('audioPath'), 'audio');
      return;
    case 'video_lipsync':
      await output(config.outputFormat);
      await checkImageFile(path('avatarImagePath'), 'avatar image');
      await checkReadableFile(path('audioPath'), 'audio');
      return;
    case 'avatar_generation':
      await output('png', 'avatar output');
      await checkImageFile(path('imagePath'), 'avatar image');
      return;
    case 'voice_clone':
      await checkReadableFile(path('referencePath'), 'reference recording');
      return;
    default: {
      const unknown: never = jobType;
      throw new AvatarError('AVATAR_ERR_JOB_TYPE_UNKNOWN', { type: String(unknown), known: '' });
    }
  }
}
