import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AvatarError, MemoryLogger, PLUGIN_API_VERSION, PipelineCoordinator, PluginRegistry, ResourceManager, VoiceProfileStore, defineStagePlugin,
} from '@avatar/core';
import type { Avatar, FrameStream, LoadContext, ProgressEvent, RunContext, Speech, StagePlugin, TtsInput } from '@avatar/core';
import { DEFAULT_VOICE } from '@avatar/tts';
import { PORTRAIT, ROOT, ffprobe, tempDir } from './helpers/cli.js';

// Stand-ins for the stages not built yet, so the coordinator's streaming path is exercised with the real
// speech and encode engines. The frames are real RGBA images whose brightness follows the speech envelope.
function testStages(events: string[], options: { failFace?: boolean; slowFrames?: boolean } = {}): StagePlugin[] {
  const face = defineStagePlugin({
    name: 'test-face', stage: 'face', apiVersion: 1, resources: { device: 'cpu', ramMB: 50 },
    async load() {
      events.push('load face');
      return {
        async run(input) {
          if (options.failFace) throw new Error('no face in this photo');
          const probe = ffprobe(input.imagePath).streams[0];
          const width = probe?.width ?? 0;
          const height = probe?.height ?? 0;
          // a stand-in face: the whole photo, no landmarks (the real stage is tested in tests/face-*.test.ts)
          return {
            imagePath: input.imagePath, width, height,
            face: {
              box: { x: 0, y: 0, width, height }, score: 1, landmarks: [], pose: { yaw: 0, pitch: 0, roll: 0 },
              quality: { widthPx: width, heightPx: height, sharpness: 0, sharpnessRatio: 1, meanLuma: 128, darkFraction: 0, brightFraction: 0, mouthInside: true, chinInside: true },
              models: { detector: 'none', landmarks: 'none' },
            },
          };
        },
        async unload() { events.push('unload face'); },
      };
    },
  });
  const lipsync = defineStagePlugin({
    name: 'test-lipsync', stage: 'lipsync', apiVersion: 1, resources: { device: 'cpu', ramMB: 100 },
    async load() {
      events.push('load lipsync');
      return {
        async run(input): Promise<FrameStream> {
          const { settings } = input;
          const speech = input.speech;
          if (!speech) throw new Error('this stand-in renders from synthesised speech only');
          const width = 128;
          const height = 128;
          const frameCount = Math.ceil(speech.durationSeconds * settings.fps);
          const perFrame = speech.sampleRate / settings.fps;
          async function* frames(): AsyncGenerator<Uint8Array> {
            for (let i = 0; i < frameCount; i++) {
              let sum = 0;
              const start = Math.floor(i * perFrame);
              for (let s = start; s < Math.min(speech.pcm.length, start + perFrame); s++) sum += Math.abs(speech.pcm[s] ?? 0);
              const level = Math.min(255, Math.round((sum / perFrame / 4000) * 255));
              if (options.slowFrames) await new Promise((r) => setTimeout(r, 20));
              yield new Uint8Array(width * height * 4).fill(level);
            }
          }
          return { width, height, fps: settings.fps, frameCount, frames: frames() };
        },
        async unload() { events.push('unload lipsync'); },
      };
    },
  });
  return [face, lipsync] as StagePlugin[];
}

/**
 * The built-in face, lip-sync and encode engines, and flite with its run going through `wrap` (a speech
 * engine that behaves in a way the test needs), in a registry of their own.
 */
async function registryWithFlite(wrap: (run: (input: TtsInput, ctx: RunContext) => Promise<Speech>, input: TtsInput, ctx: RunContext) => Promise<Speech>): Promise<PluginRegistry> {
  const { plugins: speakers } = await import('@avatar/tts');
  const flite = speakers.find((p) => p.stage === 'tts' && p.name === 'flite') as StagePlugin<'tts'>;
  const registry = new PluginRegistry();
  registry.register({
    ...flite,
    async load(ctx: LoadContext) {
      const loaded = await flite.load(ctx);
      return { run: (input: TtsInput, runCtx: RunContext) => wrap((i, c) => loaded.run(i, c), input, runCtx), unload: () => loaded.unload() };
    },
  }, 'test');
  for (const pkg of ['@avatar/face', '@avatar/lipsync', '@avatar/encode']) await registry.loadPackage(pkg, { from: [ROOT] });
  return registry;
}

/** The command lines of this process's running children, from /proc (a zombie not reaped yet is not running). */
async function childCommands(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) !== process.pid || fields[0] === 'Z') continue;
    out.push((await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' '));
  }
  return out;
}

async function coordinatorWith(storage: string, extra: StagePlugin[] = []) {
  const registry = new PluginRegistry();
  await registry.loadPackage('@avatar/tts', { from: [ROOT] });
  await registry.loadPackage('@avatar/encode', { from: [ROOT] });
  for (const p of extra) registry.register(p, 'test');
  const log = new MemoryLogger();
  const resources = new ResourceManager({ log });
  const coordinator = new PipelineCoordinator({ registry, resources, voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE, log });
  return { coordinator, resources, log };
}

describe('PipelineCoordinator with the real engines', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('avatar-coord-');
  });

  it('without a face stage: refused before any work, leaves nothing', async () => {
    const { coordinator } = await coordinatorWith(join(dir, 's1'));
    const out = join(dir, 'a.mp4');
    const result = await coordinator.execute({ text: 'Testing one two three.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' } });
    expect(result.success).toBe(false);
    expect(result.stagesCompleted).toEqual([]);
    expect(result.error?.code).toBe('AVATAR_ERR_STAGE_NOT_INSTALLED');
    expect(result.error?.message).toContain('the face stage is not installed');
    expect(result.stages).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(await readdir(join(dir, 's1', 'work'))).toEqual([]);
  });

  it('streams frames from the renderer into the encoder, with models loaded one at a time', async () => {
    const events: string[] = [];
    const { coordinator, resources, log } = await coordinatorWith(join(dir, 's2'), testStages(events));
    const out = join(dir, 'b.mp4');
    const progress: ProgressEvent[] = [];
    const result = await coordinator.execute({
      text: 'The frames go straight into the encoder.', avatarImage: PORTRAIT, outputPath: out,
      config: { videoQuality: 'low' }, onProgress: (e) => progress.push(e),
    });
    expect(result.error).toBeNull();
    expect(result.success).toBe(true);
    expect(result.stagesCompleted).toEqual(['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video', 'cleanup']);
    expect(events).toEqual(['load face', 'unload face', 'load lipsync', 'unload lipsync']);
    expect(resources.loadedModels).toEqual([]);
    const probe = ffprobe(out);
    // with its captions as a subtitle track (the default, soft)
    expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264', 'mov_text']);
    expect(Math.abs(Number(probe.format.duration) - (result.durationSeconds ?? 0))).toBeLessThan(0.1);
    // progress only moves forward and ends at 1
    const fractions = progress.map((p) => p.fraction);
    expect(fractions.every((f, i) => i === 0 || f >= (fractions[i - 1] ?? 0) - 1e-9)).toBe(true);
    expect(fractions.at(-1)).toBe(1);
    expect(log.entries.some((e) => e.message.startsWith('memory start synthesize_speech'))).toBe(true);
    expect(await readdir(join(dir, 's2', 'work'))).toEqual([]);
  });

  it('with the real face stage: the renderer gets a prepared avatar at the preset size with 68 landmarks', async () => {
    const seen: Avatar[] = [];
    const events: string[] = [];
    const lipsync = testStages(events)[1] as StagePlugin<'lipsync'>;
    const spy = defineStagePlugin({
      ...lipsync,
      async load(ctx) {
        const inner = await lipsync.load(ctx);
        return { run: (input, runCtx) => { seen.push(input.avatar); return inner.run(input, runCtx); }, unload: () => inner.unload() };
      },
    });
    const { onnxFacePlugin } = await import('@avatar/face');
    const { coordinator } = await coordinatorWith(join(dir, 's5'), [onnxFacePlugin as StagePlugin, spy as StagePlugin]);
    const out = join(dir, 'real-face.mp4');
    const result = await coordinator.execute({ text: 'A real face.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' } });
    expect(result.error).toBeNull();
    const avatar = seen[0]!;
    expect(avatar).toMatchObject({ width: 256, height: 256 });
    expect(avatar.imagePath.startsWith(join(dir, 's5', 'work'))).toBe(true);
    expect(avatar.face.landmarks).toHaveLength(68);
    expect(Math.abs(avatar.face.pose.roll)).toBeLessThan(1);
    expect(await readdir(join(dir, 's5', 'work'))).toEqual([]);
  });

  it('a failing stage releases its model and removes the work folder', async () => {
    const events: string[] = [];
    const { coordinator, resources } = await coordinatorWith(join(dir, 's3'), testStages(events, { failFace: true }));
    const out = join(dir, 'c.mp4');
    const result = await coordinator.execute({ text: 'Fail at the face.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low', cleanupIntermediates: false } });
    expect(result.success).toBe(false);
    expect(result.error?.code).toBe('AVATAR_ERR_ENGINE_FAILED');
    expect(result.error?.message).toBe('the face engine "test-face" (test) failed: no face in this photo');
    expect(result.stagesCompleted).toEqual(['load_profile', 'synthesize_speech']);
    expect(events).toEqual(['load face', 'unload face']);
    expect(resources.loadedModels).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(await readdir(join(dir, 's3', 'work'))).toEqual([]);
  });

  it('a renderer whose frames fail mid-encode is the engine named, not the encoder pulling them', async () => {
    const events: string[] = [];
    const [face, lipsync] = testStages(events) as [StagePlugin, StagePlugin<'lipsync'>];
    const broken: StagePlugin<'lipsync'> = {
      ...lipsync, name: 'broken-renderer',
      async load(ctx) {
        const inner = await lipsync.load(ctx);
        return {
          async run(input, runCtx) {
            const stream = await inner.run(input, runCtx);
            async function* failing(): AsyncGenerator<Uint8Array> {
              let n = 0;
              for await (const frame of stream.frames) {
                if (++n > 3) throw new Error('renderer bug at frame 4');
                yield frame;
              }
            }
            return { ...stream, frames: failing() };
          },
          unload: () => inner.unload(),
        };
      },
    };
    const { coordinator } = await coordinatorWith(join(dir, 's3b'), [face, broken as StagePlugin]);
    const out = join(dir, 'blame.mp4');
    const result = await coordinator.execute({ text: 'The renderer breaks here.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' } });
    expect(result.error?.code).toBe('AVATAR_ERR_ENGINE_FAILED');
    expect(result.error?.message).toBe('the lipsync engine "broken-renderer" (test) failed: renderer bug at frame 4');
    expect(existsSync(out)).toBe(false);
  });

  it('cancelling mid-encode stops the run, unloads the renderer and writes nothing', async () => {
    const events: string[] = [];
    const { coordinator, resources } = await coordinatorWith(join(dir, 's4'), testStages(events, { slowFrames: true }));
    const out = join(dir, 'd.mp4');
    const controller = new AbortController();
    const result = await coordinator.execute({
      text: 'This run is cancelled while the frames are being encoded, long before the end of this sentence.',
      avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' }, signal: controller.signal,
      onProgress: (e) => { if (e.stage === 'encode_video' && e.stageFraction > 0.1) controller.abort(); },
    });
    expect(result.success).toBe(false);
    expect(result.error?.code).toBe('AVATAR_ERR_CANCELLED');
    expect(result.error?.message).toContain('encode_video');
    expect(events).toContain('unload lipsync');
    expect(resources.loadedModels).toEqual([]);
    expect(await readdir(dir)).not.toContain('d.mp4');
    expect((await readdir(dir)).filter((f) => f.includes('partial'))).toEqual([]);
    expect(await readdir(join(dir, 's4', 'work'))).toEqual([]);
  });

  it('with every built-in stage: a cancel after encoding (during the inspection) leaves nothing at the output path', async () => {
    const registry = new PluginRegistry();
    for (const pkg of ['@avatar/tts', '@avatar/face', '@avatar/lipsync', '@avatar/encode']) await registry.loadPackage(pkg, { from: [ROOT] });
    const storage = join(dir, 's7');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const out = join(dir, 'late-cancel.mp4');
    const controller = new AbortController();
    const stages: string[] = [];
    const result = await coordinator.execute({
      text: 'Cancelled after the video is encoded.', avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' }, signal: controller.signal,
      // (the inspection runs beside the encode and ends after it; the run's progress names it once the
      // encode is over: cancelled then)
      onProgress: (e) => { stages.push(e.stage); if (e.stage === 'inspect_video') controller.abort(); },
    });
    expect(stages).toContain('inspect_video');
    expect(result.error?.code).toBe('AVATAR_ERR_CANCELLED');
    expect(result.stagesCompleted).toContain('encode_video');
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.includes('partial') || f.startsWith('.late-cancel'))).toEqual([]);
  });

  it('an inspector that would watch the encode but fails to load stops nothing: the run ends with its error, the encode not left waiting on it', async () => {
    const registry = new PluginRegistry();
    for (const pkg of ['@avatar/tts', '@avatar/face', '@avatar/lipsync', '@avatar/encode']) await registry.loadPackage(pkg, { from: [ROOT] });
    registry.register({
      name: 'broken-watcher', stage: 'inspect', apiVersion: PLUGIN_API_VERSION, resources: { device: 'cpu' }, watchesEncode: true,
      async load() { throw new AvatarError('AVATAR_ERR_STAGE_FAILED', { stage: 'inspect', reason: 'this inspector cannot load' }); },
    } as StagePlugin<'inspect'>, 'test');
    const storage = join(dir, 's-watch');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const out = join(dir, 'broken-watcher.mp4');
    // long enough that the encoder would fill a reader's buffer many times over
    const result = await coordinator.execute({
      text: 'A sentence long enough to make a video of several seconds, so that its encoder writes far more than a stream holds before anyone reads it.',
      avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low', engines: { inspect: 'broken-watcher' } },
    });
    expect(result.error?.message).toMatch(/cannot load/);
    expect(result.stagesCompleted).toContain('encode_video');
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('a live run is drawn and encoded as the speech is made: the frames start before the speech is whole, and the video has all of it', async () => {
    const order: string[] = [];
    let drawingStarted: () => void = () => {};
    const drawing = new Promise<void>((resolve) => { drawingStarted = resolve; });
    // flite, telling when its speech is whole; it holds the speech back until the frames start (on a
    // busy machine flite may well finish before the face is found), for ten seconds at most: frames that
    // wait for the whole speech would then come after it
    const registry = await registryWithFlite(async (run, input, ctx) => {
      const speech = await run(input, ctx);
      await Promise.race([drawing, new Promise((r) => setTimeout(r, 10_000))]);
      order.push('speech whole');
      return speech;
    });
    const storage = join(dir, 's-pipelined');
    const log = new MemoryLogger();
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE, log });
    const chunks: Buffer[] = [];
    const live = new Writable({ write(chunk: Buffer, _e, callback) { chunks.push(chunk); callback(); } });
    const named: string[] = [];
    const encoded: number[] = [];
    // (long enough that its speech is still being made once the face is found, also in a fresh process)
    const text = 'Hello! I am Grace. This video starts while its speech is still being made. Sentence after sentence, the frames follow the voice. '
      + 'The whole of it still ends up in one video, with every word heard. '.repeat(6);
    const result = await coordinator.execute({
      text, avatarImage: PORTRAIT, outputPath: join(dir, 'pipelined.mp4'), config: { videoQuality: 'low' }, live,
      onProgress: (e) => {
        if (e.stage === 'generate_lipsync' && !order.includes('drawing')) {
          order.push('drawing');
          drawingStarted();
        }
        if (named.at(-1) !== e.stage) named.push(e.stage);
        if (e.stage === 'encode_video') encoded.push(e.stageFraction);
      },
    });
    expect(result.error).toBeNull();
    expect(order).toEqual(['drawing', 'speech whole']);
    // the stages ran side by side, yet the run's progress names the furthest running one: the encode
    // while it runs, not the speech's reports beside it (they took turns naming the job's stage)
    expect(named.slice(named.indexOf('encode_video'))).toEqual(['encode_video', 'inspect_video', 'cleanup']);
    expect(named.slice(0, 3)).toEqual(['load_profile', 'synthesize_speech', 'validate_avatar']);
    // and the encode reports how far it is once the speech is whole: its frames counted against the
    // frames the whole sound has (how far it has got by then depends on how fast the speech came: on a
    // busy machine, with the later sentences at a lower priority, the frames keep pace with the speech
    // to its end, and the mouth track holds back its last 0.65 s until then)
    const total = Math.round((result.durationSeconds ?? 0) * 20);
    const counted = [...new Set(encoded.filter((f) => f > 0 && f < 1))];
    expect(counted.length, JSON.stringify(encoded)).toBeGreaterThanOrEqual(3);
    for (const f of counted) expect(f === 0.99 || Math.abs(f * total - Math.round(f * total)) < 1e-6, `${f} of ${total} frames`).toBe(true);
    expect(Math.max(...counted)).toBeGreaterThanOrEqual(0.9);
    expect(result.inspection?.lagFrames).toBe(0);
    const file = join(dir, 'pipelined-live.mp4');
    await writeFile(file, Buffer.concat(chunks));
    const info = await ffprobe(file);
    const seconds = (type: string): number => Number(info.streams.find((x) => x.codec_type === type)?.duration ?? 0);
    expect(Math.abs(seconds('video') - (result.durationSeconds ?? 0))).toBeLessThan(0.1);
    expect(Math.abs(seconds('audio') - seconds('video'))).toBeLessThan(0.1);
    expect(result.captions?.cues).toBeGreaterThan(0);
    // its encoder was the ffmpeg started while the speech and the face were made
    expect(log.entries.some((e) => e.message === 'ffmpeg started ahead of the encode taken')).toBe(true);
  }, 60_000);

  it('a live run\'s renderer starts once the face is known, before the first sentence is spoken', async () => {
    const order: string[] = [];
    let drawingStarted: () => void = () => {};
    const drawing = new Promise<void>((resolve) => { drawingStarted = resolve; });
    // flite, its parts held back until the renderer starts (for ten seconds at most: a renderer that
    // waits for the first part starts after that)
    const registry = await registryWithFlite(async (run, input, ctx) => {
      const gate = Promise.race([drawing, new Promise((r) => setTimeout(r, 10_000))]);
      let handed: Promise<unknown> = gate;
      const speech = await run({
        ...input,
        onPart: (part) => {
          handed = handed.then(() => {
            if (!order.includes('first part')) order.push('first part');
            input.onPart?.(part);
          });
        },
      }, ctx);
      await handed;
      return speech;
    });
    const storage = join(dir, 's-renderer-early');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const live = new Writable({ write(_chunk: Buffer, _e, callback) { callback(); } });
    const result = await coordinator.execute({
      text: 'Hello! I am Grace.', avatarImage: PORTRAIT, outputPath: join(dir, 'renderer-early.mp4'), config: { videoQuality: 'low' }, live,
      onProgress: (e) => {
        if (e.stage === 'generate_lipsync' && !order.includes('drawing')) {
          order.push('drawing');
          drawingStarted();
        }
      },
    });
    expect(result.error).toBeNull();
    expect(order).toEqual(['drawing', 'first part']);
    expect(result.durationSeconds).toBeGreaterThan(1);
  }, 60_000);

  it('a live run whose speech fails partway, after its first sentences are drawn, reports the speech\'s error and leaves nothing', async () => {
    // flite, failing once its second part is out (a slow third one gives the frames time to start)
    const registry = await registryWithFlite((run, input, ctx) => {
      let parts = 0;
      return run({
        ...input,
        onPart: (part) => {
          input.onPart?.(part);
          if (++parts === 2) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'stand-in failure after two sentences' });
        },
      }, ctx);
    });
    const storage = join(dir, 's-pipelined-fails');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const live = new Writable({ write(_chunk: Buffer, _e, callback) { callback(); } });
    const text = 'Hello! I am Grace. This sentence is never said: the speech fails before it. Nor is this one.';
    const out = join(dir, 'pipelined-fails.mp4');
    const result = await coordinator.execute({ text, avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low' }, live });
    expect(result.error?.code, JSON.stringify(result.error)).toBe('AVATAR_ERR_TTS_FAILED');
    expect(result.error?.message).toMatch(/after two sentences/);
    expect(result.stagesCompleted).not.toContain('synthesize_speech');
    expect(result.stagesCompleted).not.toContain('encode_video');
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.startsWith('.pipelined-fails'))).toEqual([]);
  }, 60_000);

  it('a live run that fails before its first frame (no face in the photo) leaves no encoder started ahead running', async () => {
    const { plugins: speakers } = await import('@avatar/tts');
    const { plugins: encoders } = await import('@avatar/encode');
    const { plugins: faces } = await import('@avatar/face');
    const registry = new PluginRegistry();
    registry.register(speakers.find((p) => p.stage === 'tts' && p.name === 'flite') as StagePlugin, 'test');
    await registry.loadPackage('@avatar/lipsync', { from: [ROOT] });
    // the encoder, noting that its ffmpeg was started ahead; the face stage finds no face only after
    // that (within 10 s), as it would on a photo it takes longer to look at
    const ffmpeg = encoders[0] as StagePlugin<'encode'>;
    let startedAhead = false;
    let aheadSeen: () => void = () => {};
    const seen = new Promise<void>((resolve) => { aheadSeen = resolve; });
    registry.register({
      ...ffmpeg,
      async encodeAhead(plan) {
        await ffmpeg.encodeAhead?.(plan);
        for (let i = 0; i < 100 && !startedAhead; i++) {
          startedAhead = (await childCommands()).some((c) => c.includes('yuv4mpegpipe'));
          if (!startedAhead) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        aheadSeen();
      },
    }, 'test');
    const face = faces[0] as StagePlugin<'face'>;
    registry.register({
      ...face,
      async load(ctx: LoadContext) {
        const loaded = await face.load(ctx);
        return {
          run: async (input, runCtx) => {
            await Promise.race([seen, new Promise((resolve) => setTimeout(resolve, 10_000))]);
            return loaded.run(input, runCtx);
          },
          unload: () => loaded.unload(),
        };
      },
    }, 'test');
    const storage = join(dir, 's-ahead-no-face');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const live = new Writable({ write(_chunk: Buffer, _e, callback) { callback(); } });
    const out = join(dir, 'ahead-no-face.mp4');
    const result = await coordinator.execute({ text: 'Hello! Nobody is in this picture. So nothing is drawn.', avatarImage: join(ROOT, 'tests/fixtures/faces/coffee.jpg'), outputPath: out, config: { videoQuality: 'low' }, live });
    expect(result.error?.code, JSON.stringify(result.error)).toBe('AVATAR_ERR_FACE_NONE');
    // the encoder started while the speech and the face were made went with the run (it is killed, then reaped)
    let left: string[] = [];
    for (let i = 0; i < 40; i++) {
      left = await childCommands();
      if (!left.some((c) => c.includes('ffmpeg'))) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(startedAhead).toBe(true);
    expect(left.filter((c) => c.includes('ffmpeg'))).toEqual([]);
    expect(existsSync(out)).toBe(false);
  }, 60_000);

  it('a service\'s live run leaves an encoder started for the next, which that run takes; the service\'s end stops it', async () => {
    const registry = await registryWithFlite((run, input, ctx) => run(input, ctx));
    const storage = join(dir, 's-standby');
    const log = new MemoryLogger();
    const service = new AbortController();
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE, log, encoderStandby: service.signal });
    const waitingEncoders = async (): Promise<number> => {
      let found = 0;
      for (let i = 0; i < 100 && found === 0; i++) {
        found = (await childCommands()).filter((c) => c.includes('yuv4mpegpipe')).length;
        if (found === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return found;
    };
    const live = (): Writable => new Writable({ write(_chunk: Buffer, _e, callback) { callback(); } });
    const text = 'Hello! I am Grace. This is said twice, by two runs of one service.';
    const first = await coordinator.execute({ text, avatarImage: PORTRAIT, outputPath: join(dir, 'standby-1.mp4'), config: { videoQuality: 'low' }, live: live(), liveOnly: true });
    expect(first.error).toBeNull();
    expect(await waitingEncoders()).toBe(1);
    const taken = (): number => log.entries.filter((e) => e.message === 'ffmpeg started ahead of the encode taken').length;
    const before = taken();
    const second = await coordinator.execute({ text, avatarImage: PORTRAIT, outputPath: join(dir, 'standby-2.mp4'), config: { videoQuality: 'low' }, live: live(), liveOnly: true });
    expect(second.error).toBeNull();
    expect(taken()).toBe(before + 1);
    // and one waits for a third; the service's end stops it
    expect(await waitingEncoders()).toBe(1);
    service.abort();
    let left = 1;
    for (let i = 0; i < 40 && left > 0; i++) {
      left = (await childCommands()).filter((c) => c.includes('ffmpeg')).length;
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(left).toBe(0);
  }, 60_000);

  it('a live run whose speech engine ignores the length limit is refused as a text too long, not by the renderer as audio', async () => {
    // flite, as a third party's engine might be: it speaks whatever it is given
    const registry = await registryWithFlite((run, input, ctx) => run({ ...input, maxSeconds: 3600 }, ctx));
    const storage = join(dir, 's-pipelined-long');
    const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const live = new Writable({ write(_chunk: Buffer, _e, callback) { callback(); } });
    // (long enough that the speech goes on well after the renderer has more than the limit)
    const text = 'Hello! I am Grace. ' + 'This sentence makes the speech longer than the run allows. '.repeat(40);
    const out = join(dir, 'pipelined-long.mp4');
    const result = await coordinator.execute({ text, avatarImage: PORTRAIT, outputPath: out, config: { videoQuality: 'low', maxVideoLengthSeconds: 5 }, live });
    expect(result.error?.code, JSON.stringify(result.error)).toBe('AVATAR_ERR_INPUT_TEXT_TOO_LONG');
    expect(result.error?.params).toMatchObject({ input: 'text', limit: 5 });
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.startsWith('.pipelined-long'))).toEqual([]);
  }, 60_000);

  it('an encoder that declares memory runs alongside the renderer instead of waiting for it', async () => {
    const events: string[] = [];
    const registry = new PluginRegistry();
    await registry.loadPackage('@avatar/tts', { from: [ROOT] });
    const { plugins: encoders } = await import('@avatar/encode');
    const ffmpeg = encoders[0] as StagePlugin<'encode'>;
    registry.register({ ...ffmpeg, name: 'heavy-ffmpeg', resources: { device: 'cpu', ramMB: 100 } }, 'test');
    for (const p of testStages(events)) registry.register(p, 'test');
    const storage = join(dir, 's8');
    const resources = new ResourceManager();
    const coordinator = new PipelineCoordinator({ registry, resources, voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
    const result = await coordinator.execute({ text: 'Both loaded at once.', avatarImage: PORTRAIT, outputPath: join(dir, 'alongside.mp4'), config: { videoQuality: 'low' } });
    expect(result.error).toBeNull();
    expect(resources.loadedModels).toEqual([]);
  });

  it('starts the encoder\'s preparation early, before the face stage loads, and a failing preparation costs the run nothing', async () => {
    const { plugins: encoders } = await import('@avatar/encode');
    const ffmpeg = encoders[0] as StagePlugin<'encode'>;
    for (const failing of [false, true]) {
      const events: string[] = [];
      const registry = new PluginRegistry();
      await registry.loadPackage('@avatar/tts', { from: [ROOT] });
      registry.register({
        ...ffmpeg,
        name: 'watched-ffmpeg',
        async prewarm() {
          events.push('prewarm encode');
          if (failing) throw new Error('not now');
          await ffmpeg.prewarm?.();
        },
        async load(ctx: LoadContext) {
          events.push('load encode');
          return ffmpeg.load(ctx);
        },
      }, 'test');
      for (const p of testStages(events)) registry.register(p, 'test');
      const storage = join(dir, failing ? 's9b' : 's9a');
      const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
      const result = await coordinator.execute({ text: 'Ready early.', avatarImage: PORTRAIT, outputPath: join(dir, `early-${failing}.mp4`), config: { videoQuality: 'low' } });
      expect(result.error).toBeNull();
      expect(events).toEqual(['prewarm encode', 'load face', 'unload face', 'load lipsync', 'load encode', 'unload lipsync']);
    }
  });

  it('runs the face stage beside the speech once the speech engine runs, not before it starts, and after a speech stage that reports nothing', async () => {
    const { plugins: speakers } = await import('@avatar/tts');
    const { plugins: encoders } = await import('@avatar/encode');
    const flite = speakers.find((p) => p.stage === 'tts' && p.name === 'flite') as StagePlugin<'tts'>;
    for (const quiet of [false, true]) {
      const events: string[] = [];
      const registry = new PluginRegistry();
      registry.register({
        ...flite,
        async load(ctx: LoadContext) {
          const loaded = await flite.load(ctx);
          return {
            run: async (input, runCtx) => {
              const speech = await loaded.run(input, {
                ...runCtx,
                progress: (fraction, detail) => {
                  if (quiet) return;
                  events.push(`speech ${fraction}`);
                  runCtx.progress(fraction, detail);
                },
              });
              // a slower engine: the face stage has time to run beside it
              await new Promise((resolve) => setTimeout(resolve, 400));
              events.push('speech done');
              return speech;
            },
            unload: () => loaded.unload(),
          };
        },
      }, 'test');
      registry.register(encoders[0] as StagePlugin, 'test');
      const [face, lipsync] = testStages(events) as [StagePlugin<'face'>, StagePlugin];
      registry.register(face, 'test');
      registry.register(lipsync, 'test');
      const storage = join(dir, quiet ? 's10b' : 's10a');
      const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
      const result = await coordinator.execute({ text: 'Warm when it speaks.', avatarImage: PORTRAIT, outputPath: join(dir, `warm-${quiet}.mp4`), config: { videoQuality: 'low' } });
      expect(result.error).toBeNull();
      // flite's first report above 0 comes from its process start; the face stage starts after it, and
      // (side by side) before the speech is done; without reports, once it is done
      if (quiet) expect(events.slice(0, 2)).toEqual(['speech done', 'load face']);
      else {
        expect(events.slice(0, 2)).toEqual(['speech 0', 'speech 0.1']);
        expect(events.indexOf('load face')).toBeGreaterThan(1);
        expect(events.indexOf('load face'), events.join(", ")).toBeLessThan(events.indexOf('speech done'));
      }
      expect(events.filter((e) => e === 'load face')).toHaveLength(1);
      // both reported, in the plan's order, the run's progress never going back
      expect(result.stagesCompleted.slice(0, 3)).toEqual(['load_profile', 'synthesize_speech', 'validate_avatar']);
    }
  });

  it('beside the speech: a speech that fails stops the face stage, and the run names the stage that failed first', async () => {
    const { plugins: speakers } = await import('@avatar/tts');
    const flite = speakers.find((p) => p.stage === 'tts' && p.name === 'flite') as StagePlugin<'tts'>;
    // a speech engine that starts (reports), then fails a little later; or one that takes its time
    const speech = (fails: boolean): StagePlugin<'tts'> => ({
      ...flite,
      async load(ctx: LoadContext) {
        const loaded = await flite.load(ctx);
        return {
          run: async (input, runCtx) => {
            runCtx.progress(0.1, 'started');
            await new Promise((resolve) => setTimeout(resolve, 300));
            if (fails) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: 'stand-in failure' });
            return loaded.run(input, runCtx);
          },
          unload: () => loaded.unload(),
        };
      },
    });
    // a face stage that takes a second unless it is stopped, or finds no face at once
    const face = (findsNone: boolean, events: string[]): StagePlugin<'face'> => defineStagePlugin({
      name: 'test-face', stage: 'face', apiVersion: 1, resources: { device: 'cpu', ramMB: 50 },
      async load() {
        events.push('load face');
        return {
          async run(_input, ctx) {
            if (findsNone) throw new AvatarError('AVATAR_ERR_FACE_NONE', { input: 'avatar image' });
            await new Promise<void>((resolve, reject) => {
              const timer = setTimeout(resolve, 1_000);
              ctx.signal.addEventListener('abort', () => { clearTimeout(timer); events.push('face stopped'); reject(ctx.signal.reason); }, { once: true });
            });
            throw new Error('the face stage should have been stopped');
          },
          async unload() { events.push('unload face'); },
        };
      },
    });
    const run = async (fails: boolean, findsNone: boolean, events: string[]) => {
      const registry = new PluginRegistry();
      registry.register(speech(fails), 'test');
      const { plugins: encoders } = await import('@avatar/encode');
      registry.register(encoders[0] as StagePlugin, 'test');
      const [, lipsync] = testStages(events) as [StagePlugin<'face'>, StagePlugin];
      registry.register(face(findsNone, events), 'test');
      registry.register(lipsync, 'test');
      const storage = join(dir, `s11-${fails}-${findsNone}`);
      const coordinator = new PipelineCoordinator({ registry, resources: new ResourceManager(), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE });
      const started = performance.now();
      const result = await coordinator.execute({ text: 'Side by side.', avatarImage: PORTRAIT, outputPath: join(dir, `side-${fails}-${findsNone}.mp4`), config: { videoQuality: 'low' } });
      return { result, ms: performance.now() - started };
    };
    // the speech fails while the face stage works: the face stage is stopped, the speech's error reported
    const stopped: string[] = [];
    const failedSpeech = await run(true, false, stopped);
    expect(failedSpeech.result.error?.code).toBe('AVATAR_ERR_TTS_FAILED');
    expect(failedSpeech.result.stagesCompleted).toEqual(['load_profile']);
    expect(stopped).toEqual(['load face', 'face stopped', 'unload face']);
    expect(failedSpeech.ms).toBeLessThan(900); // not the face stage's second
    // the face stage finds no face while the speech goes on: its error is the run's, once the speech is done
    const noFace = await run(false, true, []);
    expect(noFace.result.error?.code).toBe('AVATAR_ERR_FACE_NONE');
    expect(noFace.result.stagesCompleted).toEqual(['load_profile', 'synthesize_speech']);
  });

  it('checks inputs before any engine starts', async () => {
    const events: string[] = [];
    const { coordinator } = await coordinatorWith(join(dir, 's5'), testStages(events));
    const bad = await coordinator.execute({ text: 'x', avatarImage: PORTRAIT, outputPath: join(dir, 'e.mp4'), config: { encodingCrf: 99 } });
    expect(bad.error?.code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(bad.stagesCompleted).toEqual([]);
    const ext = await coordinator.execute({ text: 'x', avatarImage: PORTRAIT, outputPath: join(dir, 'e.webm') });
    expect(ext.error?.code).toBe('AVATAR_ERR_OUTPUT_EXTENSION');
    const img = await coordinator.execute({ text: 'x', avatarImage: join(ROOT, 'package.json'), outputPath: join(dir, 'e.mp4') });
    expect(img.error?.code).toBe('AVATAR_ERR_INPUT_NOT_IMAGE');
    expect(events).toEqual([]);
  });
});
