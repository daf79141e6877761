import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PipelineCoordinator, PluginRegistry, ResourceManager, VoiceProfileStore } from '@avatar/core';
import type { EngineChoice, EngineOptions, LoadContext, StagePlugin } from '@avatar/core';
import { PORTRAIT, ROOT, ffprobe, tempDir } from './helpers/cli.js';

// Engine choice through the coordinator, with the real speech and encode engines and a third-party
// encode engine registered after the built-ins (as an installed package would be).

let SPEECH = '';

async function setUp(storage: string, options: { engines?: EngineChoice; engineOptions?: EngineOptions; extra?: StagePlugin[]; commercialSafe?: boolean } = {}) {
  const registry = new PluginRegistry();
  await registry.loadPackage('@avatar/tts', { from: [ROOT] });
  await registry.loadPackage('@avatar/encode', { from: [ROOT] });
  for (const p of options.extra ?? []) registry.register(p, 'acme-encoders@2.1.0');
  const coordinator = new PipelineCoordinator({
    registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage,
    ...(options.engines && { engines: options.engines }), ...(options.engineOptions && { engineOptions: options.engineOptions }),
    ...(options.commercialSafe && { commercialSafe: true }),
  });
  return { coordinator, registry };
}

/** The built-in encoder under another name, with an option and a record of what each load was given. */
function taggedEncoder(ffmpeg: StagePlugin<'encode'>, seen: Readonly<Record<string, unknown>>[], extra: Partial<StagePlugin<'encode'>> = {}): StagePlugin<'encode'> {
  return {
    ...ffmpeg,
    name: 'tagged',
    license: undefined, // a third party's engine that declares none
    options: { type: 'object', properties: { tag: { type: 'string', maxLength: 20, default: 'none', description: 'a word to remember' } } },
    async load(ctx: LoadContext) {
      seen.push(ctx.options);
      return ffmpeg.load({ ...ctx, options: {} });
    },
    ...extra,
  };
}

describe('choosing engines', () => {
  let dir: string;
  let ffmpeg: StagePlugin<'encode'>;
  beforeAll(async () => {
    dir = await tempDir('avatar-engines-');
    SPEECH = join(dir, 'hello.wav');
    expect(spawnSync('flite', ['-t', 'Hello there, this is a test.', '-o', SPEECH]).status).toBe(0);
    const { plugins } = await import('@avatar/encode');
    ffmpeg = plugins.find((p) => p.stage === 'encode') as StagePlugin<'encode'>;
  });

  it('runs the stage default unless a run picks another, and records which engine ran', async () => {
    const seen: Readonly<Record<string, unknown>>[] = [];
    const { coordinator } = await setUp(join(dir, 's1'), { extra: [taggedEncoder(ffmpeg, seen)] });
    const plain = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'plain.mp4'), config: { videoQuality: 'low' } });
    expect(plain.error).toBeNull();
    expect(plain.engines).toEqual({ encode: { name: 'ffmpeg', package: '@avatar/encode@0.1.0', license: expect.objectContaining({ commercialUse: true }) } });
    expect(seen).toEqual([]);

    const tagged = await coordinator.encodeStill({
      imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'tagged.mp4'),
      config: { videoQuality: 'low', engines: { encode: 'tagged' }, engineOptions: { encode: { tag: 'hello' } } },
    });
    expect(tagged.error).toBeNull();
    expect(tagged.engines).toEqual({ encode: { name: 'tagged', package: 'acme-encoders@2.1.0' } });
    expect(tagged.stages.find((s) => s.stage === 'encode_video')?.engine).toBe('tagged');
    expect(seen).toEqual([{ tag: 'hello' }]);
    expect(ffprobe(join(dir, 'tagged.mp4')).streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
  });

  it('takes defaults for a process (a config file, AVATAR_ENGINES); their options go with the engine they were set for', async () => {
    const seen: Readonly<Record<string, unknown>>[] = [];
    const { coordinator } = await setUp(join(dir, 's2'), {
      engines: { encode: 'tagged' }, engineOptions: { encode: { tag: 'server' } }, extra: [taggedEncoder(ffmpeg, seen)],
    });
    const byDefault = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'd1.mp4'), config: { videoQuality: 'low' } });
    expect(byDefault.engines.encode?.name).toBe('tagged');
    expect(seen).toEqual([{ tag: 'server' }]);
    // a run that picks the built-in encoder is not handed the tagged engine's options (it takes none)
    const builtIn = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'd2.mp4'), config: { videoQuality: 'low', engines: { encode: 'ffmpeg' } } });
    expect(builtIn.error).toBeNull();
    expect(builtIn.engines.encode?.name).toBe('ffmpeg');
  });

  it('refuses an unknown engine before any work, listing the installed ones', async () => {
    const { coordinator } = await setUp(join(dir, 's3'));
    const out = join(dir, 'never.mp4');
    const result = await coordinator.execute({ text: 'Never spoken.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low', engines: { encode: 'nvenc' } } });
    expect(result.success).toBe(false);
    expect(result.error?.code).toBe('AVATAR_ERR_PLUGIN_NOT_FOUND');
    expect(result.error?.message).toBe('no encode engine named "nvenc" is installed (installed: ffmpeg)');
    expect(result.stagesCompleted).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(await readdir(join(dir, 's3', 'work'))).toEqual([]);
    // also for a stage this run does not use: a typo is never ignored
    const speech = await coordinator.speak({ text: 'Hello.', outputPath: join(dir, 'x.wav'), config: { engines: { lipsync: 'wrap' } } });
    expect(speech.error?.code).toBe('AVATAR_ERR_PLUGIN_NOT_FOUND');
    expect(existsSync(join(dir, 'x.wav'))).toBe(false);
  });

  it('refuses a chosen engine whose check fails, and a bad option, naming engine, package and option', async () => {
    const seen: Readonly<Record<string, unknown>>[] = [];
    const missing = taggedEncoder(ffmpeg, seen, { name: 'hw', async check() { return { ok: false, detail: 'no encoder chip found', install: 'a GPU with NVENC' }; } });
    const { coordinator } = await setUp(join(dir, 's4'), { extra: [missing, taggedEncoder(ffmpeg, seen)] });
    const unavailable = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'hw.mp4'), config: { engines: { encode: 'hw' } } });
    expect(unavailable.error?.code).toBe('AVATAR_ERR_ENGINE_UNAVAILABLE');
    expect(unavailable.error?.message).toBe('the encode engine "hw" (acme-encoders@2.1.0) cannot run here: no encoder chip found');
    expect(unavailable.error?.hint).toBe('Install what it needs (a GPU with NVENC), or pick another encode engine (installed: ffmpeg, hw, tagged).');
    const badOption = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'bad.mp4'), config: { engines: { encode: 'tagged' }, engineOptions: { encode: { tag: 42 } } } });
    expect(badOption.error?.code).toBe('AVATAR_ERR_ENGINE_OPTION_INVALID');
    expect(badOption.error?.message).toBe('option tag of the encode engine "tagged" (acme-encoders@2.1.0) must be string');
    expect(badOption.stagesCompleted).toEqual([]);
    expect(seen).toEqual([]);
    expect(existsSync(join(dir, 'hw.mp4')) || existsSync(join(dir, 'bad.mp4'))).toBe(false);
  });

  it('a plugin that throws a plain Error from load or run is named in the error; the host goes on working', async () => {
    const loadThrows = taggedEncoder(ffmpeg, [], { name: 'broken-load', async load() { throw new Error('cannot open the device'); } });
    const runThrows = taggedEncoder(ffmpeg, [], {
      name: 'broken-run',
      async load() {
        return { async run() { throw new TypeError('frames is not iterable'); }, async unload() {} };
      },
    });
    const { coordinator } = await setUp(join(dir, 's5'), { extra: [loadThrows, runThrows] });
    for (const [name, reason] of [['broken-load', 'cannot open the device'], ['broken-run', 'frames is not iterable']] as const) {
      const out = join(dir, `${name}.mp4`);
      const result = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: out, config: { engines: { encode: name } } });
      expect(result.error?.code).toBe('AVATAR_ERR_ENGINE_FAILED');
      expect(result.error?.message).toBe(`the encode engine "${name}" (acme-encoders@2.1.0) failed: ${reason}`);
      expect(existsSync(out)).toBe(false);
    }
    const after = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'after.mp4'), config: { videoQuality: 'low' } });
    expect(after.error).toBeNull();
  });

  it('commercialSafe refuses an engine without a licence or with a model not cleared for commercial use; results list the licences', async () => {
    const { onnxFacePlugin } = await import('@avatar/face');
    const extra = [taggedEncoder(ffmpeg, []), onnxFacePlugin as StagePlugin];
    const { coordinator } = await setUp(join(dir, 's7'), { extra });
    const undeclared = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'u.mp4'), config: { commercialSafe: true, engines: { encode: 'tagged' } } });
    expect(undeclared.error?.code).toBe('AVATAR_ERR_ENGINE_LICENSE');
    expect(undeclared.error?.message).toBe('the encode engine "tagged" (acme-encoders@2.1.0) is not cleared for commercial use: it declares no licence');
    const ssd = await coordinator.prepareAvatar({ imagePath: PORTRAIT, outputPath: join(dir, 'ssd.png'), config: { commercialSafe: true, engineOptions: { face: { detector: 'ssd' } } } });
    expect(ssd.error?.code).toBe('AVATAR_ERR_ENGINE_LICENSE');
    expect(ssd.error?.message).toContain('model ssd_mobilenetv1 is under MIT (trained on WIDER FACE, whose images are for research use only)');
    expect(ssd.stagesCompleted).toEqual([]);
    const cleared = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'c.mp4'), config: { commercialSafe: true, videoQuality: 'low' } });
    expect(cleared.error).toBeNull();
    expect(cleared.engines.encode?.license).toMatchObject({ commercialUse: true, code: expect.stringContaining('ffmpeg') });
    // voice matching too: a matcher with no declared licence is refused before it measures anything
    const echo: StagePlugin<'voice'> = {
      name: 'echo', stage: 'voice', apiVersion: 1, resources: { device: 'cpu' },
      async load() { return { async run() { throw new Error('not reached'); }, async unload() {} }; },
    };
    const { coordinator: voices } = await setUp(join(dir, 's7v'), { extra: [echo as StagePlugin] });
    const matched = await voices.matchVoice({ referencePath: SPEECH, engine: 'echo', config: { commercialSafe: true } });
    expect(matched.error?.code).toBe('AVATAR_ERR_ENGINE_LICENSE');
    // a process that requires it refuses whatever a run says
    const { coordinator: strict } = await setUp(join(dir, 's7'), { extra, commercialSafe: true });
    const loose = await strict.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'l.mp4'), config: { commercialSafe: false, engines: { encode: 'tagged' } } });
    expect(loose.error?.code).toBe('AVATAR_ERR_ENGINE_LICENSE');
  });

  it('an engine that ignores the cancel is left behind after a grace period, named; nothing is written and the host goes on', async () => {
    const controller = new AbortController();
    const deaf = taggedEncoder(ffmpeg, [], {
      name: 'deaf',
      async load() {
        return {
          // never looks at its signal; the run is cancelled once it is under way
          run: () => {
            setTimeout(() => controller.abort(), 100);
            return new Promise((resolveLater) => setTimeout(resolveLater, 20_000).unref());
          },
          async unload() {},
        };
      },
    });
    const registry = new PluginRegistry();
    await registry.loadPackage('@avatar/encode', { from: [ROOT] });
    registry.register(deaf, 'acme-encoders@2.1.0');
    const storage = join(dir, 's9');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, cancelGraceMs: 300 });
    const started = performance.now();
    const out = join(dir, 'deaf.mp4');
    const result = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: out, config: { engines: { encode: 'deaf' } }, signal: controller.signal });
    expect(performance.now() - started).toBeLessThan(3000);
    expect(result.error?.code).toBe('AVATAR_ERR_ENGINE_STUCK');
    expect(result.error?.message).toBe('the encode engine "deaf" (acme-encoders@2.1.0) did not stop within 0.3s of the run being cancelled; the run ended without it');
    expect(existsSync(out)).toBe(false);
    expect(await readdir(join(storage, 'work'))).toEqual([]);
    const after = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, 'after-deaf.mp4'), config: { videoQuality: 'low' } });
    expect(after.error).toBeNull();

    // the same for a load that ignores the cancel, and for an unload that never returns: each run is
    // cancelled once its engine is loading or running
    let stop = new AbortController();
    const cancelSoon = (): void => {
      const current = stop;
      setTimeout(() => current.abort(), 100);
    };
    const slowLoad = taggedEncoder(ffmpeg, [], {
      name: 'slow-load',
      load: () => {
        cancelSoon();
        return new Promise((resolveLater) => setTimeout(resolveLater, 20_000).unref());
      },
    });
    const hangingUnload = taggedEncoder(ffmpeg, [], {
      name: 'hanging-unload',
      async load() {
        return {
          run: (_input: unknown, ctx: { signal: AbortSignal }) => {
            cancelSoon();
            return new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('stopped'))));
          },
          unload: () => new Promise(() => undefined),
        } as never;
      },
    });
    registry.register(slowLoad, 'acme-encoders@2.1.0');
    registry.register(hangingUnload, 'acme-encoders@2.1.0');
    for (const [name, code] of [['slow-load', 'AVATAR_ERR_ENGINE_STUCK'], ['hanging-unload', 'AVATAR_ERR_CANCELLED']] as const) {
      stop = new AbortController();
      const begun = performance.now();
      const ended = await coordinator.encodeStill({ imagePath: PORTRAIT, audioPath: SPEECH, outputPath: join(dir, `${name}.mp4`), config: { engines: { encode: name } }, signal: stop.signal });
      expect(performance.now() - begun, name).toBeLessThan(3000);
      expect(ended.error?.code, name).toBe(code);
    }
  });

  it('a photo is judged by the chosen face engine; one that cannot report on a photo says so', async () => {
    const { onnxFacePlugin } = await import('@avatar/face');
    const face = onnxFacePlugin as StagePlugin<'face'>;
    const runOnly: StagePlugin<'face'> = {
      ...face, name: 'run-only',
      async load(ctx) {
        const loaded = await face.load(ctx);
        return { run: (input, runCtx) => loaded.run(input, runCtx), unload: () => loaded.unload() };
      },
    };
    const { coordinator } = await setUp(join(dir, 's8'), { extra: [face as StagePlugin, runOnly as StagePlugin] });
    const assessed = await coordinator.assessFace(PORTRAIT, { config: { engineOptions: { face: { minFaceSize: 4000 } } } });
    expect(assessed.faces).toHaveLength(1);
    expect(assessed.verdict.usable).toBe(false);
    expect(assessed.verdict.reasons[0]?.error.code).toBe('AVATAR_ERR_FACE_TOO_SMALL');
    const unsupported = await coordinator.assessFace(PORTRAIT, { config: { engines: { face: 'run-only' } } }).catch((e: unknown) => e);
    expect(unsupported).toMatchObject({ code: 'AVATAR_ERR_ENGINE_UNSUPPORTED', message: 'the face engine "run-only" (acme-encoders@2.1.0) cannot report on a photo without preparing it' });
  });

  it('a tts engine picked without a voice profile speaks with its own default voice; with a profile of another engine it is refused', async () => {
    const { coordinator } = await setUp(join(dir, 's6'));
    const espeak = await coordinator.speak({ text: 'Hello there.', outputPath: join(dir, 'espeak.wav'), config: { engines: { tts: 'espeak-ng' } } });
    expect(espeak.error).toBeNull();
    expect(espeak.engines.tts?.name).toBe('espeak-ng');
    expect((await coordinator.resolveVoice(null, { engines: { tts: 'espeak-ng' } })).voice).toEqual({ engine: 'espeak-ng', voice: 'en-us', language: 'en-US', rate: 1, pitch: 0 });
    expect((await coordinator.resolveVoice(null)).voice.engine).toBe('flite');

    const profile = await coordinator.voices.create({ engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 });
    const conflict = await coordinator.speak({ text: 'Hello.', voiceProfileId: profile.id, outputPath: join(dir, 'conflict.wav'), config: { engines: { tts: 'espeak-ng' } } });
    expect(conflict.error?.code).toBe('AVATAR_ERR_ENGINE_CONFLICT');
    expect(conflict.error?.message).toContain(`voice profile ${profile.id} speaks with the flite engine`);
    // a default tts engine for the process does not override a profile's own engine
    const { coordinator: withDefault } = await setUp(join(dir, 's6'), { engines: { tts: 'espeak-ng' } });
    const spoken = await withDefault.speak({ text: 'Hello.', voiceProfileId: profile.id, outputPath: join(dir, 'profile.wav') });
    expect(spoken.engines.tts?.name).toBe('flite');
  });
});
