import { describe, expect, it } from 'vitest';
import { AvatarError } from './errors.js';
import { JOB_COMMON_PARAMS, JOB_PARAMS, JOB_PARAM_SPECS, checkJobParams } from './job-params.js';
import type { JobParams, JobType } from './jobs.js';
import { JOB_TYPES } from './jobs.js';

function refusal(jobType: JobType, params: JobParams): string {
  try {
    checkJobParams(jobType, params);
  } catch (error) {
    if (error instanceof AvatarError) return `${error.code} ${String(error.params.field)} ${String(error.params.problem)}`;
    throw error;
  }
  return 'accepted';
}

describe('job parameters, defined once', () => {
  it('every parameter a job type names is defined, with a description', () => {
    for (const type of JOB_TYPES) {
      for (const name of [...JOB_PARAMS[type].required, ...JOB_PARAMS[type].optional, ...JOB_COMMON_PARAMS]) {
        expect(JOB_PARAM_SPECS[name].description.length, name).toBeGreaterThan(5);
      }
    }
  });

  it('checks each value against its type and limits, naming the parameter', () => {
    expect(refusal('voice_synthesis', { text: 'Hello.' })).toBe('accepted');
    expect(refusal('voice_synthesis', {})).toBe('AVATAR_ERR_JOB_PARAMS_INVALID text is required for voice_synthesis');
    expect(refusal('voice_synthesis', { text: 'x'.repeat(20_001) })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID text is longer than 20000 characters');
    expect(refusal('voice_synthesis', { text: 'Hi', maxSeconds: 0 })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID maxSeconds must be above 0');
    expect(refusal('voice_synthesis', { text: 'Hi', maxSeconds: 3601 })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID maxSeconds must be at most 3600');
    expect(refusal('voice_synthesis', { text: 'Hi', voiceProfileId: 'vp-nothex!' })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID voiceProfileId is not in the expected form');
    expect(refusal('voice_synthesis', { text: 'Hi', avatarImagePath: 'a.jpg' })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID avatarImagePath is not a parameter of voice_synthesis');
    expect(refusal('video_encoding', { imagePath: 'a.jpg', audioPath: 3 })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID audioPath must be a string');
    expect(refusal('full_pipeline', { text: 'Hi', avatarImagePath: 'a.jpg', config: [] })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID config must be an object');
    expect(refusal('voice_clone', { referencePath: 'r.wav', webhook: { url: 'ftp://x' } })).toBe('AVATAR_ERR_JOB_PARAMS_INVALID webhook must be an http or https url');
  });
});
