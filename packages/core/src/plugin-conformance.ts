import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUALITY_PRESETS } from './config.js';
import { readMp4Summary, readWavInfo } from './container.js';
import { resolvePluginOptions } from './plugin-options.js';
import { isAvatarError } from './errors.js';
import { silentLogger } from './log.js';
import type { AnyStagePlugin, FrameStream, LoadedStageOf, ModelDevice, RunContext, StageInput, StageKind, StageOutput, StagePlugin, WatchedVideo } from './plugin.js';
import { PLUGIN_API_VERSION } from './plugin.js';
import { PluginRegistry } from './registry.js';
import { ffmpegPath } from './tools.js';

/** What the suite needs to run a plugin: an input for its stage, made in a fresh folder of the suite's. */
export interface StageConformanceOptions<K extends StageKind> {
  /** a real input for one run; `dir` is an empty folder for inputs and outputs */
  input(dir: string): StageInput<K> | Promise<StageInput<K>>;
  /** the engine options to load it with (checked against its schema as the host would) */
  options?: Readonly<Record<string, unknown>>;
  /** how long after a run starts the suite aborts it (default 50 ms) */
  cancelAfterMs?: number;
  /** how soon after the abort the run must have stopped (default 5000 ms) */
  cancelWithinMs?: number;
  /** the package name the registry reports (default "conformance") */
  source?: string;
  /** time allowed for one test (default 60 s) */
  timeoutMs?: number;
  /** the device load() is given (default the CPU; a plugin that runs only on a GPU must name one) */
  device?: ModelDevice;
}

/** Two seconds of 25 fps RGBA frames, a bright bar crossing a grey field: what a live encode is fed. */
function barFrames(): FrameStream {
  const width = 64, height = 48, count = 50;
  async function* frames(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < count; i++) {
      const frame = new Uint8Array(width * height * 4).fill(96);
      for (let y = 0; y < height; y++) for (let x = i; x < i + 8 && x < width; x++) frame.fill(230, 4 * (y * width + x), 4 * (y * width + x) + 3);
      yield frame;
    }
  }
  return { width, height, fps: 25, frameCount: count, frames: frames() };
}

/**
 * Digests of a video's decoded frames (grey, in order) and sound (16 kHz mono, `primingSamples` dropped
 * first at its own rate), from a file or from bytes, by ffmpeg.
 */
async function decodedDigests(source: string | Buffer, primingSamples: number): Promise<{ frames: string; sound: string }> {
  const digest = (args: string[]): Promise<string> => new Promise((resolve, reject) => {
    const child = execFile(ffmpegPath(), ['-v', 'error', '-i', typeof source === 'string' ? source : 'pipe:0', ...args, '-f', 'md5', '-'], (error, out) => (error ? reject(error) : resolve(out.trim())));
    if (typeof source !== 'string') child.stdin?.end(source);
  });
  const [frames, sound] = await Promise.all([
    digest(['-map', '0:v:0', '-fps_mode', 'passthrough', '-pix_fmt', 'gray', '-f', 'rawvideo']),
    digest(['-map', '0:a:0', ...(primingSamples > 0 ? ['-af', `atrim=start_sample=${primingSamples}`] : []), '-ac', '1', '-ar', '16000', '-f', 'f32le']),
  ]);
  return { frames, sound };
}

/** A two-second 16 kHz mono tone as a WAV file. */
async function toneWav(path: string): Promise<void> {
  const rate = 16_000, samples = 2 * rate;
  const wav = Buffer.alloc(44 + 2 * samples);
  wav.write('RIFF', 0, 'latin1');
  wav.writeUInt32LE(36 + 2 * samples, 4);
  wav.write('WAVEfmt ', 8, 'latin1');
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(1, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(2 * rate, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36, 'latin1');
  wav.writeUInt32LE(2 * samples, 40);
  for (let i = 0; i < samples; i++) wav.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / rate)), 44 + 2 * i);
  await writeFile(path, wav);
}

/** A run that finishes this long after its signal aborted was not stopped by it. */
const LATE_FINISH_MS = 250;

interface Recorded {
  progress: number[];
}

function runContext(signal: AbortSignal, workDir: string, recorded: Recorded): RunContext {
  return { signal, workDir, log: silentLogger, progress: (fraction) => recorded.progress.push(fraction) };
}

const bytesOf = async (path: string): Promise<number | undefined> => (await stat(path).catch(() => undefined))?.size;

/** Consumes a lip-sync engine's frames, checking each one's size; stops early when `stopAfter` frames are in. */
async function drainFrames(frames: StageOutput<'lipsync'>, stopAfter?: () => void): Promise<number> {
  const { width, height } = frames;
  const expected = (frames.pixelFormat ?? 'rgba') === 'rgba' ? width * height * 4 : width * height * 1.5;
  let count = 0;
  for await (const frame of frames.frames) {
    expect(frame.byteLength, `frame ${count} size`).toBe(expected);
    count += 1;
    if (count === 1) stopAfter?.();
  }
  return count;
}

/** The checks of a stage's output that hold for every engine of that stage. */
async function checkOutput<K extends StageKind>(stage: K, input: StageInput<K>, output: StageOutput<K>): Promise<void> {
  switch (stage) {
    case 'tts': {
      const speech = output as StageOutput<'tts'>;
      const wav = await readWavInfo(speech.wavPath);
      expect(wav, `${speech.wavPath} is a WAV file`).toBeDefined();
      expect(wav?.channels).toBe(1);
      expect(wav?.codec).toBe('pcm_s16le');
      expect(wav?.sampleRate).toBe(speech.sampleRate);
      expect(speech.durationSeconds).toBeGreaterThan(0);
      expect(Math.abs((wav?.durationSeconds ?? 0) - speech.durationSeconds)).toBeLessThan(0.05);
      expect(Math.abs(speech.pcm.length / speech.sampleRate - speech.durationSeconds)).toBeLessThan(0.05);
      expect(speech.spokenText.trim().length).toBeGreaterThan(0);
      let at = 0;
      for (const p of speech.phonemes ?? []) {
        expect(p.start).toBeGreaterThanOrEqual(at - 1e-6);
        expect(p.end).toBeGreaterThanOrEqual(p.start);
        expect(p.end).toBeLessThanOrEqual(speech.durationSeconds + 0.05);
        at = p.start;
      }
      return;
    }
    case 'voice': {
      const match = output as StageOutput<'voice'>;
      for (const key of ['engine', 'voice', 'language'] as const) expect(typeof match.settings[key]).toBe('string');
      expect(Number.isFinite(match.settings.rate) && match.settings.rate > 0).toBe(true);
      expect(Number.isFinite(match.settings.pitch)).toBe(true);
      expect(match.measured.durationSeconds).toBeGreaterThan(0);
      expect(match.reason.length).toBeGreaterThan(0);
      return;
    }
    case 'face': {
      const avatar = output as StageOutput<'face'>;
      const faceInput = input as StageInput<'face'>;
      expect(await bytesOf(avatar.imagePath), `${avatar.imagePath} exists`).toBeGreaterThan(0);
      expect(avatar.width).toBeGreaterThan(0);
      expect(avatar.height).toBeGreaterThan(0);
      expect(avatar.face.landmarks).toHaveLength(68);
      for (const p of avatar.face.landmarks) {
        expect(p.x).toBeGreaterThan(-avatar.width * 0.5);
        expect(p.x).toBeLessThan(avatar.width * 1.5);
        expect(p.y).toBeGreaterThan(-avatar.height * 0.5);
        expect(p.y).toBeLessThan(avatar.height * 1.5);
      }
      for (const v of [avatar.face.pose.yaw, avatar.face.pose.pitch, avatar.face.pose.roll, avatar.face.score]) expect(Number.isFinite(v)).toBe(true);
      if (faceInput.prepare) {
        expect([avatar.width, avatar.height]).toEqual([faceInput.prepare.size, faceInput.prepare.size]);
      }
      return;
    }
    case 'lipsync': {
      const frames = output as StageOutput<'lipsync'>;
      expect(Number.isInteger(frames.width) && frames.width > 0).toBe(true);
      expect(Number.isInteger(frames.height) && frames.height > 0).toBe(true);
      expect(frames.fps).toBeGreaterThan(0);
      expect(frames.frameCount).toBeGreaterThan(0);
      if (frames.pixelFormat === 'yuv420p') expect(frames.width % 2 + frames.height % 2).toBe(0);
      expect(await drainFrames(frames)).toBe(frames.frameCount);
      return;
    }
    case 'encode': {
      const video = output as StageOutput<'encode'>;
      const encodeInput = input as StageInput<'encode'>;
      expect(video.outputPath).toBe(encodeInput.outputPath);
      expect(await bytesOf(video.outputPath)).toBe(video.bytes);
      expect(video.format).toBe(encodeInput.settings.format);
      expect(video.durationSeconds).toBeGreaterThan(0);
      if (video.format === 'mp4') {
        const summary = await readMp4Summary(video.outputPath);
        expect(summary?.tracks.map((t) => t.type).sort()).toEqual(['audio', 'video']);
      }
      return;
    }
    case 'inspect': {
      const summary = output as StageOutput<'inspect'>;
      for (const v of [summary.lagFrames, summary.correlation, summary.silenceStillness, summary.borderMotion, summary.sharpnessRatio]) {
        expect(Number.isFinite(v)).toBe(true);
      }
      return;
    }
    default:
      throw new Error(`no output checks for stage ${String(stage)}`);
  }
}

/** The file a stage's input names for its output, if any: after a cancelled run it must not be there. */
function outputPathOf(stage: StageKind, input: unknown): string | undefined {
  if (stage === 'tts' || stage === 'encode') return (input as { outputPath: string }).outputPath;
  if (stage === 'face') return (input as StageInput<'face'>).prepare?.outputPath;
  return undefined;
}

/**
 * The behaviour every engine of a stage promises the host, checked on a real input: it registers (contract
 * shape, plugin API version), its check() answers, load and unload pair (also without a run, and twice in a
 * row), a run gives an output of the stage's type (audio of the stated rate and length, frames of the stated
 * size and count, a file of the stated bytes...), progress stays in 0..1 and never goes back, and an abort
 * stops a run within a bounded time leaving no output file; an encoder that declares liveOutput streams
 * fragmented MP4 to `live`, the bytes of its file; one that declares watchOutput hands `watch` fragmented MP4 that decodes to
 * the frames and sound of its file; one that declares captions carries them as a subtitle track. Call it from a test file:
 *
 * ```ts
 * runStagePluginConformance(myPlugin, { input: (dir) => ({ text: 'Hello.', voice, outputPath: join(dir, 'a.wav'), maxSeconds: 30 }) });
 * ```
 */
export function runStagePluginConformance<K extends StageKind>(plugin: StagePlugin<K>, options: StageConformanceOptions<K>): void {
  const timeout = options.timeoutMs ?? 60_000;
  describe(`stage plugin conformance: ${plugin.stage}/${plugin.name}`, () => {
    let root: string;
    let n = 0;
    const fresh = async (): Promise<string> => {
      const dir = join(root, String(n++));
      await mkdir(dir, { recursive: true });
      return dir;
    };
    const loadOptions = (): Readonly<Record<string, unknown>> => resolvePluginOptions(plugin as unknown as AnyStagePlugin, options.options, options.source ?? 'conformance');
    const load = async (signal?: AbortSignal): Promise<LoadedStageOf<K>> =>
      plugin.load({ log: silentLogger, storageDir: join(root, 'storage'), options: loadOptions(), device: loadDevice(), ...(signal && { signal }) });
    const loadDevice = (): ModelDevice => {
      if (options.device) return options.device;
      if (plugin.resources.device === 'gpu') throw new Error(`${plugin.stage}/${plugin.name} runs only on a GPU: give the suite a GPU device (options.device)`);
      return { kind: 'cpu' };
    };

    beforeAll(async () => {
      root = await mkdtemp(join(tmpdir(), `avatar-conformance-${plugin.stage}-`));
    });
    afterAll(async () => {
      await rm(root, { recursive: true, force: true });
    });

    it('fits the contract: the registry takes it, written for this plugin API', () => {
      const registry = new PluginRegistry();
      registry.register(plugin, options.source ?? 'conformance');
      expect(plugin.apiVersion).toBe(PLUGIN_API_VERSION);
      expect(registry.find(plugin.stage, plugin.name)).toBe(plugin);
      expect(() => loadOptions()).not.toThrow();
    });

    it('answers its check with ok and a detail', async () => {
      if (!plugin.check) return;
      const check = await plugin.check();
      expect(typeof check.ok).toBe('boolean');
      expect(typeof check.detail).toBe('string');
      expect(check.ok, check.detail).toBe(true);
    }, timeout);

    it('loads and unloads, also without a run and twice in a row', async () => {
      for (let i = 0; i < 2; i++) {
        const loaded = await load();
        expect(typeof loaded.run).toBe('function');
        await loaded.unload();
      }
    }, timeout);

    it('runs a real input to an output of the stage\'s type, with progress in 0..1 that never goes back', async () => {
      const dir = await fresh();
      const input = await options.input(dir);
      const recorded: Recorded = { progress: [] };
      const loaded = await load();
      try {
        const output = await loaded.run(input, runContext(new AbortController().signal, dir, recorded));
        await checkOutput(plugin.stage, input, output);
      } finally {
        await loaded.unload();
      }
      for (const [i, f] of recorded.progress.entries()) {
        expect(f, `progress ${i}`).toBeGreaterThanOrEqual(0);
        expect(f, `progress ${i}`).toBeLessThanOrEqual(1);
        if (i > 0) expect(f, `progress ${i} after ${recorded.progress[i - 1]}`).toBeGreaterThanOrEqual(recorded.progress[i - 1] ?? 0);
      }
    }, timeout);

    // (only for the engines it applies to: a test that cannot fail is not listed)
    if (plugin.stage === 'encode' && plugin.liveOutput) it('streams fragmented MP4 to live while it encodes (it declares liveOutput), the bytes of its file', async () => {
      const dir = await fresh();
      const audioPath = join(dir, 'tone.wav');
      await toneWav(audioPath);
      const chunks: Buffer[] = [];
      const live = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk);
          callback();
        },
      });
      const outputPath = join(dir, 'live.mp4');
      const input = { kind: 'frames', frames: barFrames(), audioPath, outputPath, settings: { format: 'mp4', ...QUALITY_PRESETS.low }, live } as const;
      const loaded = await load();
      try {
        await loaded.run(input as unknown as StageInput<K>, runContext(new AbortController().signal, dir, { progress: [] }));
      } finally {
        await loaded.unload();
      }
      const streamed = Buffer.concat(chunks);
      expect(chunks.length, 'chunks written to live').toBeGreaterThan(0);
      expect(streamed.toString('latin1', 4, 8), 'the stream starts with an ftyp box').toBe('ftyp');
      expect(streamed.includes('moof'), 'the stream is fragmented (moof boxes)').toBe(true);
      expect(streamed.equals(await readFile(outputPath)), 'live and the file hold the same bytes').toBe(true);
    }, timeout);

    if (plugin.stage === 'encode' && plugin.watchOutput) it('hands the video to watch as it encodes (it declares watchOutput): fragmented MP4 with the frames and sound of its file', async () => {
      const dir = await fresh();
      const audioPath = join(dir, 'tone.wav');
      await toneWav(audioPath);
      const outputPath = join(dir, 'watched.mp4');
      let watched: Promise<{ video: WatchedVideo; bytes: Buffer }> | undefined;
      const watch = (video: WatchedVideo): void => {
        const chunks: Buffer[] = [];
        video.bytes.on('data', (chunk: Buffer) => chunks.push(chunk));
        watched = new Promise((resolve, reject) => {
          video.bytes.on('end', () => resolve({ video, bytes: Buffer.concat(chunks) }));
          video.bytes.on('error', reject);
        });
      };
      const input = { kind: 'frames', frames: barFrames(), audioPath, outputPath, settings: { format: 'mp4', ...QUALITY_PRESETS.low }, watch } as const;
      const loaded = await load();
      try {
        await loaded.run(input as unknown as StageInput<K>, runContext(new AbortController().signal, dir, { progress: [] }));
      } finally {
        await loaded.unload();
      }
      expect(watched, 'watch was called').toBeDefined();
      const { video, bytes } = await (watched as NonNullable<typeof watched>);
      expect(bytes.toString('latin1', 4, 8), 'the stream starts with an ftyp box').toBe('ftyp');
      expect(bytes.includes('moof'), 'the stream is fragmented (moof boxes)').toBe(true);
      const file = await decodedDigests(outputPath, 0);
      expect(await decodedDigests(bytes, video.audioPrimingSamples), 'decoded frames and sound, stream and file').toEqual(file);
    }, timeout);

    if (plugin.stage === 'encode' && plugin.captions) it('carries captions as a subtitle track (it declares captions)', async () => {
      const dir = await fresh();
      const audioPath = join(dir, 'tone.wav');
      await toneWav(audioPath);
      const captions = join(dir, 'captions.vtt');
      await writeFile(captions, 'WEBVTT\n\n00:00:00.200 --> 00:00:01.500\nA caption.\n');
      const outputPath = join(dir, 'captioned.mp4');
      const input = { kind: 'frames', frames: barFrames(), audioPath, outputPath, settings: { format: 'mp4', ...QUALITY_PRESETS.low }, captions: { path: captions, mode: 'soft' } } as const;
      const loaded = await load();
      try {
        await loaded.run(input as unknown as StageInput<K>, runContext(new AbortController().signal, dir, { progress: [] }));
      } finally {
        await loaded.unload();
      }
      const summary = await readMp4Summary(outputPath);
      expect(summary?.tracks.map((t) => t.type).sort(), 'the tracks of the MP4').toEqual(['audio', 'other', 'video']);
      expect(summary?.tracks.find((t) => t.type === 'other')?.codec, 'the subtitle track\'s codec').toBe('tx3g');
    }, timeout);

    it('does not start a run whose signal is already aborted, and writes nothing', async () => {
      const dir = await fresh();
      const input = await options.input(dir);
      const controller = new AbortController();
      controller.abort(new Error('cancelled before the run'));
      const loaded = await load();
      const started = performance.now();
      let stopped = false;
      try {
        const output = await loaded.run(input, runContext(controller.signal, dir, { progress: [] }));
        if (plugin.stage === 'lipsync') await drainFrames(output as StageOutput<'lipsync'>);
      } catch {
        stopped = true;
      } finally {
        await loaded.unload();
      }
      expect(stopped, 'the run rejects (or its frames stop) when its signal is already aborted').toBe(true);
      expect(performance.now() - started).toBeLessThan(options.cancelWithinMs ?? 5_000);
      const target = outputPathOf(plugin.stage, input);
      if (target) expect(await bytesOf(target), `${target} after a cancelled run`).toBeUndefined();
    }, timeout);

    it('stops a run soon after its signal aborts, leaving no output file, and unloads after', async () => {
      const dir = await fresh();
      const input = await options.input(dir);
      const controller = new AbortController();
      const loaded = await load(controller.signal);
      const within = options.cancelWithinMs ?? 5_000;
      let abortedAt = 0;
      const abort = (): void => {
        abortedAt ||= performance.now();
        controller.abort(new Error('cancelled by the conformance suite'));
      };
      const timer = setTimeout(abort, options.cancelAfterMs ?? 50);
      let outcome: 'finished' | 'stopped' = 'finished';
      try {
        const output = await loaded.run(input, runContext(controller.signal, dir, { progress: [] }));
        if (plugin.stage === 'lipsync') {
          // a lip-sync engine works while its frames are consumed: the abort comes after the first one,
          // and the frames must stop coming (or end in an error) before the last
          const frames = output as StageOutput<'lipsync'>;
          const count = await drainFrames(frames, abort);
          expect(count, 'frames yielded after the abort').toBeLessThan(frames.frameCount);
          outcome = 'stopped';
        } else if (abortedAt > 0) {
          // it finished after its signal aborted: fine only when it was finishing anyway
          expect(performance.now() - abortedAt, 'ms the run went on after its signal aborted').toBeLessThan(LATE_FINISH_MS);
        }
      } catch (error) {
        outcome = 'stopped';
        // an abort, or one of the project's errors (a cancellation); not an unrelated crash
        const abortLike = error instanceof Error && (error.name === 'AbortError' || controller.signal.aborted);
        expect(abortLike || isAvatarError(error), `error on abort: ${String(error)}`).toBe(true);
      } finally {
        clearTimeout(timer);
        await loaded.unload();
      }
      if (outcome === 'stopped' && abortedAt > 0) {
        expect(performance.now() - abortedAt, 'ms from the abort until the run stopped').toBeLessThan(within);
        const target = outputPathOf(plugin.stage, input);
        if (target) expect(await bytesOf(target), `${target} after a cancelled run`).toBeUndefined();
      }
    }, timeout);
  });
}
