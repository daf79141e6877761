import { describe, expect, it } from 'vitest';
import { parsePipelineConfig } from './config.js';
import { mergeEngineOptions, parseEngineAssignments, parseEngineChoice, parseEngineOptionAssignments, parseEngineOptions } from './engines.js';
import { resolvePluginOptions } from './plugin-options.js';
import { AvatarError } from './errors.js';
import { PLUGIN_API_VERSION } from './plugin.js';
import type { PluginOptionsSchema, StagePlugin } from './plugin.js';
import { PluginRegistry } from './registry.js';

const schema = {
  type: 'object',
  properties: {
    minFaceSize: { type: 'number', minimum: 1, maximum: 4096, description: 'smallest face, px' },
    detector: { type: 'string', enum: ['tiny', 'ssd'], default: 'tiny' },
  },
} as const satisfies PluginOptionsSchema;

const face: StagePlugin<'face'> = {
  name: 'finder', stage: 'face', apiVersion: PLUGIN_API_VERSION, resources: { device: 'cpu' }, options: schema,
  async load() {
    return { async run() { throw new Error('not used here'); }, async unload() {} };
  },
};
const plain: StagePlugin<'encode'> = {
  name: 'plain', stage: 'encode', apiVersion: PLUGIN_API_VERSION, resources: { device: 'cpu' },
  async load() {
    return { async run() { throw new Error('not used here'); }, async unload() {} };
  },
};

function thrown(fn: () => unknown): AvatarError {
  try {
    fn();
  } catch (error) {
    if (error instanceof AvatarError) return error;
    throw error;
  }
  throw new Error('no error');
}

describe('engine choices', () => {
  it('reads STAGE=NAME and STAGE.OPTION=VALUE, values as JSON where they read as JSON', () => {
    expect(parseEngineAssignments(['lipsync=warp', ' encode = ffmpeg '])).toEqual({ lipsync: 'warp', encode: 'ffmpeg' });
    expect(parseEngineOptionAssignments(['face.minFaceSize=48', 'face.detector=ssd', 'tts.binary=/opt/x=y', 'face.list=[1,2]'])).toEqual({
      face: { minFaceSize: 48, detector: 'ssd', list: [1, 2] },
      tts: { binary: '/opt/x=y' },
    });
  });

  it('refuses what is not a stage, not a name, or not STAGE=NAME, naming the field', () => {
    expect(thrown(() => parseEngineAssignments(['warp'])).params.field).toBe('--engine');
    expect(thrown(() => parseEngineAssignments(['mouth=warp'])).message).toContain('--engine.mouth is not a stage');
    expect(thrown(() => parseEngineChoice({ lipsync: 'Warp Drive' })).message).toContain('engines.lipsync is not an engine name');
    expect(thrown(() => parseEngineChoice(['warp'])).code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(thrown(() => parseEngineOptionAssignments(['minFaceSize=48'])).message).toContain('must be STAGE.OPTION=VALUE');
    expect(thrown(() => parseEngineOptions({ face: 3 })).message).toContain('engineOptions.face must be an object');
  });

  it('are part of the pipeline settings, and a run overlays the base stage by stage', () => {
    const base = parsePipelineConfig({ engines: { lipsync: 'warp', encode: 'ffmpeg' } });
    const run = parsePipelineConfig({ engines: { encode: 'nvenc' } }, base);
    expect(run.engines).toEqual({ lipsync: 'warp', encode: 'nvenc' });
    expect(parsePipelineConfig({}).engines).toEqual({});
    expect(mergeEngineOptions({ face: { a: 1 } }, { face: { b: 2 }, tts: { c: 3 } })).toEqual({ face: { a: 1, b: 2 }, tts: { c: 3 } });
  });
});

describe('plugin options', () => {
  it('are checked against the schema the plugin declares and completed with its defaults', () => {
    expect(resolvePluginOptions(face, { minFaceSize: 48 }, 'pkg@1')).toEqual({ minFaceSize: 48, detector: 'tiny' });
    const given = { minFaceSize: 48 };
    resolvePluginOptions(face, given, 'pkg@1');
    expect(given).toEqual({ minFaceSize: 48 }); // the user's object is left alone
  });

  it('refuses an unknown or invalid option, naming the engine, its package and the option', () => {
    const unknown = thrown(() => resolvePluginOptions(face, { minFacePx: 48 }, 'acme-face@2.0.0'));
    expect(unknown.code).toBe('AVATAR_ERR_ENGINE_OPTION_INVALID');
    expect(unknown.message).toBe('option minFacePx of the face engine "finder" (acme-face@2.0.0) is not an option of this engine');
    expect(unknown.hint).toBe('Its options: minFaceSize, detector.');
    const bad = thrown(() => resolvePluginOptions(face, { minFaceSize: 0 }, 'acme-face@2.0.0'));
    expect(bad.message).toBe('option minFaceSize of the face engine "finder" (acme-face@2.0.0) must be >= 1');
    expect(bad.hint).toBe('minFaceSize: smallest face, px.');
    expect(thrown(() => resolvePluginOptions(face, { detector: 'big' }, 'x')).message).toContain('must be equal to one of the allowed values');
    // text is not turned into a number: the CLI reads numbers as numbers
    expect(thrown(() => resolvePluginOptions(face, { minFaceSize: '48' }, 'x')).message).toContain('must be number');
    expect(thrown(() => resolvePluginOptions(plain, { crf: 1 }, 'x')).hint).toBe('This engine takes no options.');
    expect(resolvePluginOptions(plain, undefined, 'x')).toEqual({});
  });

  it('a plugin whose options schema cannot be used is refused at registration', () => {
    const registry = new PluginRegistry();
    const broken = { ...plain, name: 'broken', options: { type: 'object', properties: { a: { type: 'no-such-type' } } } } as unknown as StagePlugin<'encode'>;
    const error = thrown(() => registry.register(broken, 'acme@1'));
    expect(error.code).toBe('AVATAR_ERR_PLUGIN_INVALID');
    expect(error.message).toContain('options is not a valid JSON Schema');
    const notObject = { ...plain, name: 'flat', options: { type: 'string' } } as unknown as StagePlugin<'encode'>;
    expect(thrown(() => registry.register(notObject, 'acme@1')).message).toContain('of type "object"');
    registry.register(face, 'acme@1');
    expect(registry.entry('face')?.source).toBe('acme@1');
  });
});
