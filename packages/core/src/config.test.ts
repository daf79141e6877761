import { describe, expect, it } from 'vitest';
import { DEFAULT_PIPELINE_CONFIG, QUALITY_PRESETS, checkOutputExtension, formatFromPath, parsePipelineConfig, resolveEncodeSettings } from './config.js';
import { AvatarError } from './errors.js';

function configError(input: unknown): AvatarError {
  try {
    parsePipelineConfig(input);
  } catch (error) {
    return error as AvatarError;
  }
  throw new Error('expected a config error');
}

describe('PipelineConfig', () => {
  it('has the documented defaults', () => {
    expect(parsePipelineConfig({})).toEqual(DEFAULT_PIPELINE_CONFIG);
    expect(DEFAULT_PIPELINE_CONFIG.maxVideoLengthSeconds).toBe(120);
  });

  it('takes numbers given as strings (flags, form fields)', () => {
    expect(parsePipelineConfig({ encodingCrf: '20', videoFps: '24' })).toMatchObject({ encodingCrf: 20, videoFps: 24 });
  });

  it.each([
    [{ encodingCrf: 52 }, 'encodingCrf'],
    [{ encodingCrf: -1 }, 'encodingCrf'],
    [{ encodingCrf: 2.5 }, 'encodingCrf'],
    [{ videoQuality: 'ultra' }, 'videoQuality'],
    [{ videoFps: 0 }, 'videoFps'],
    [{ videoFps: 61 }, 'videoFps'],
    [{ outputFormat: 'avi' }, 'outputFormat'],
    [{ encodingPreset: 'turbo' }, 'encodingPreset'],
    [{ cleanupIntermediates: 'yes' }, 'cleanupIntermediates'],
    [{ maxVideoLengthSeconds: 0 }, 'maxVideoLengthSeconds'],
    [{ qualty: 'high' }, 'qualty'],
  ])('refuses %j naming the field', (input, field) => {
    const error = configError(input);
    expect(error.code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(error.message.startsWith(field)).toBe(true);
    expect(error.exitCode).toBe(2);
  });

  it('resolves the preset with overrides on top', () => {
    const medium = resolveEncodeSettings(parsePipelineConfig({ videoQuality: 'medium' }));
    expect(medium).toMatchObject({ size: QUALITY_PRESETS.medium.size, fps: 25, crf: 21, preset: 'veryfast', format: 'mp4' });
    const custom = resolveEncodeSettings(parsePipelineConfig({ videoQuality: 'low', videoFps: 12, encodingCrf: 30, encodingPreset: 'fast', outputFormat: 'webm' }));
    expect(custom).toMatchObject({ size: QUALITY_PRESETS.low.size, fps: 12, crf: 30, preset: 'fast', format: 'webm' });
  });

  it('checks the output extension against the format', () => {
    expect(() => checkOutputExtension('/tmp/a.mp4', 'mp4')).not.toThrow();
    expect(() => checkOutputExtension('/tmp/a.MP4', 'mp4')).not.toThrow();
    expect(() => checkOutputExtension('/tmp/a.mov', 'mp4')).toThrow(/ends in "\.mov" but the output format is mp4/);
    expect(() => checkOutputExtension('/tmp.d/a', 'webm')).toThrow(/no extension/);
    expect(formatFromPath('x.webm')).toBe('webm');
    expect(formatFromPath('x.avi')).toBeUndefined();
  });
});
