import { AvatarError, PLUGIN_API_VERSION, checkReadableFile, decodeAudio, defineStagePlugin, regionsFromLandmarks } from '@avatar/core';
import type { FrameStream, InspectionSummary, LipsyncInput, ModelDevice, RunContext, SpeechPart, StagePlugin } from '@avatar/core';
import { inspectVideo } from './inspect.js';
import { FaceRenderer, blinkAt, blinkSchedule, headMotionAt } from './render/index.js';
import { loadSharp } from './sharp.js';
import { MouthTracker, trackFrameCount } from './track.js';
import type { SpeechAudio } from './track.js';

/** Decodes a user's recording to 16 kHz mono PCM with ffmpeg; the bytes never touch the disk. */
export async function decodeRecording(path: string, signal?: AbortSignal, maxSeconds?: number): Promise<SpeechAudio & { durationSeconds: number }> {
  await checkReadableFile(path, 'audio');
  // past the limit there is nothing to decode: a long file is refused without holding it all in memory
  const { samples, sampleRate, durationSeconds } = await decodeAudio(path, {
    sampleRate: 16000, ...(maxSeconds !== undefined && { maxSeconds: maxSeconds + 0.5 }), ...(signal && { signal }),
  });
  return { pcm: samples, sampleRate, durationSeconds };
}

/** A speech already whole, in one part, checked against the limit before anything is drawn. */
async function wholeOf(parts: AsyncIterable<SpeechPart>): Promise<{ part: SpeechPart } | undefined> {
  for await (const part of parts) return { part };
  return undefined;
}

/** Frame size: the avatar scaled so its longer side is at most `size`, both sides even (what H.264 needs). */
export function frameSize(width: number, height: number, size: number): { width: number; height: number; scale: number } {
  const scale = Math.min(1, size / Math.max(width, height));
  const even = (n: number): number => Math.max(2, Math.floor(n / 2) * 2);
  return { width: even(width * scale), height: even(height * scale), scale };
}

/** Frame buffers the renderer cycles through: the encoder may hold three in flight while the next is drawn. */
const RING = 4;

/**
 * Renders the talking head: the mouth track from the speech drives a warp of the avatar's own pixels.
 * `made` holds the renderers on a GPU until unload, which releases them: the page-locked frame buffers
 * (and the GPU's context, which they keep) go then, once the encoder is done with them, instead of when
 * the collector gets to them; and one opened before its frames were asked for is closed even if they
 * never are (an encoder that failed first).
 */
async function render(input: LipsyncInput, ctx: RunContext, device: ModelDevice, made: Set<FaceRenderer>): Promise<FrameStream> {
  const { avatar, settings, animation } = input;
  const landmarks = avatar.face.landmarks;
  if (!landmarks || landmarks.length !== 68) {
    throw new AvatarError('AVATAR_ERR_STAGE_FAILED', { stage: 'generate_lipsync', reason: 'the avatar has no 68 face landmarks (run the face stage first)' });
  }
  // the speech as parts: as it is made, or (a speech or a recording already whole) in one piece
  const parts: AsyncIterable<SpeechPart> = input.speechParts ?? (async function* (): AsyncGenerator<SpeechPart> {
    const audio: SpeechAudio & { durationSeconds: number } = input.speech
      ? { pcm: input.speech.pcm, sampleRate: input.speech.sampleRate, phonemes: input.speech.phonemes, durationSeconds: input.speech.durationSeconds }
      : await decodeRecording(input.audioPath, ctx.signal, input.maxSeconds);
    yield { index: 0, pcm: audio.pcm, sampleRate: audio.sampleRate, startSeconds: 0, ...(audio.phonemes && { phonemes: [...audio.phonemes] }) };
  })();
  const whole = input.speechParts ? undefined : await wholeOf(parts);
  if (whole && whole.part.pcm.length / whole.part.sampleRate > input.maxSeconds) {
    // decoding stopped just past the limit, so the figure is a lower bound
    throw new AvatarError('AVATAR_ERR_INPUT_AUDIO_TOO_LONG', { input: 'audio', seconds: `more than ${input.maxSeconds}`, limit: input.maxSeconds });
  }
  const size = frameSize(avatar.width, avatar.height, settings.size);
  const sx = size.width / avatar.width;
  const sy = size.height / avatar.height;
  const points = landmarks.map((p) => ({ x: p.x * sx, y: p.y * sy }));
  const fps = settings.fps;
  const frameCount = whole ? trackFrameCount(whole.part, fps) : 0;
  // Blinks are drawn from a schedule as long as the longest speech allowed, each one the same whatever
  // follows it; none starts in the last 0.2 s, which is known once the speech is whole: no frame before
  // that is final until then (the mouth track waits 0.6 s of speech past a frame).
  const schedule = blinkSchedule(input.maxSeconds, animation.blinkRate, animation.seed);
  const blinksUntil = (seconds: number): number[] => schedule.filter((t) => t < seconds - 0.2);
  const regions = regionsFromLandmarks(points, size.width, size.height);
  const signal = ctx.signal;
  // Frames are drawn as the encoder asks for them, so per-frame progress is the encoder's to report.
  // The photo's pixels and the mesh are made at once, before the encoder asks (the photo is read on
  // libuv's threads): a run drawn as it is spoken calls this as soon as the face is known, while its first
  // sentence is still being spoken, and its encoder (started ahead) asks for frames with that sentence.
  const makeRenderer = async (): Promise<FaceRenderer> => {
    const sharp = await loadSharp();
    const { data } = await sharp(avatar.imagePath, { limitInputPixels: 100_000_000 })
      .rotate()
      .resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    const renderer = new FaceRenderer({ width: size.width, height: size.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) }, points, {
      expressiveness: 1,
      ring: RING,
      pixelFormat: 'yuv420p',
    });
    // on the GPU the host placed this engine on, when there is one (the CPU's kernels take over if it
    // fails), opened off the event loop: a server's requests go on meanwhile; held before the open, so
    // an unload while it is under way releases it too
    if (device.kind === 'gpu') {
      made.add(renderer);
      await renderer.useGpu({ ...(device.uuid && { uuid: device.uuid }) });
    }
    return renderer;
  };
  // On a GPU the renderer opens before this returns, so the encoder knows before it starts that the frames
  // are there (it may take them from GPU memory); on the CPU it is made meanwhile, and a failure to make it
  // is the first frame's (a renderer on the CPU holds nothing to release if its frames are never asked for).
  const early = device.kind === 'gpu' ? await makeRenderer() : undefined;
  const ready = early ? Promise.resolve(early) : makeRenderer();
  ready.catch(() => {});
  async function* frames(): AsyncGenerator<Uint8Array> {
    const renderer = await ready;
    const noGpu = (): string => `cuda: ${device.kind === 'cpu' ? (device.reason ?? 'the host placed this engine on the CPU') : (renderer.gpuMissing ?? 'not used')}`;
    // said again at the end: a GPU that fails or draws a checked frame differently is left mid-run
    const say = (): void => {
      const host = renderer.hostMemory;
      stream.computePath = renderer.kernel === 'cuda'
        ? { path: `cuda (${renderer.gpuDevice ?? 'GPU'})`, ...(!host.pinned && { notUsed: `page-locked host memory: ${host.reason}` }) }
        : renderer.kernel === 'native' ? { path: 'native', notUsed: noGpu() } : { path: 'ts', notUsed: `${noGpu()}; native: ${renderer.nativeMissing ?? 'not available'}` };
    };
    say();
    if (renderer.kernel !== 'cuda' && device.kind === 'gpu') ctx.log.info(`frames are drawn on the CPU: ${noGpu()}`);
    if (renderer.kernel === 'cuda') {
      const host = renderer.hostMemory;
      ctx.log.info(renderer.keepsFramesOnGpu
        ? `frames are drawn on the GPU (${renderer.gpuDevice ?? 'unnamed'}) and stay there for its encoder`
        : `frames are drawn on the GPU (${renderer.gpuDevice ?? 'unnamed'}) and each copied once into ${host.pinned ? 'page-locked' : `ordinary (not page-locked: ${host.reason})`} host memory, which ffmpeg's pipe reads as it is; the video is encoded on the CPU`);
    }
    try {
      let tracker: MouthTracker | undefined;
      let seconds = 0;
      let blinks = schedule;
      let i = 0;
      const drawn = function* (): Generator<Uint8Array> {
        for (; tracker && i < tracker.ready; i++) {
          signal.throwIfAborted();
          const t = i / fps;
          const head = headMotionAt(t, animation.headMotion, animation.seed, renderer.mouthScale * 1.6);
          yield renderer.render(tracker.poseAt(i), { blink: blinkAt(t, blinks), ...head });
        }
      };
      for await (const part of whole ? [whole.part] : parts) {
        tracker ??= new MouthTracker({ fps, sampleRate: part.sampleRate, phonemes: part.phonemes !== undefined, expressiveness: animation.expressiveness });
        if (part.sampleRate !== tracker.sampleRate) throw new AvatarError('AVATAR_ERR_STAGE_FAILED', { stage: 'generate_lipsync', reason: `the speech's parts came at ${tracker.sampleRate} and ${part.sampleRate} Hz` });
        seconds += part.pcm.length / part.sampleRate;
        if (seconds > input.maxSeconds) {
          throw new AvatarError('AVATAR_ERR_INPUT_AUDIO_TOO_LONG', { input: 'audio', seconds: `more than ${input.maxSeconds}`, limit: input.maxSeconds });
        }
        tracker.push(part.pcm, part.phonemes);
        yield* drawn();
      }
      if (!tracker) throw new AvatarError('AVATAR_ERR_STAGE_FAILED', { stage: 'generate_lipsync', reason: 'the speech came with no audio' });
      tracker.finish();
      blinks = blinksUntil(seconds);
      yield* drawn();
    } finally {
      if (renderer.kernel !== 'cuda' && device.kind === 'gpu' && renderer.gpuDevice) ctx.log.warn(`the GPU stopped drawing frames mid-run: ${renderer.gpuMissing ?? ''}`);
      say();
      renderer.close();
    }
  }
  ctx.progress(1, frameCount > 0 ? `${frameCount} frames ready to stream` : 'frames follow the speech as it is made');
  const stream: FrameStream = { width: size.width, height: size.height, fps, frameCount, frames: frames(), regions, ring: RING, pixelFormat: 'yuv420p' };
  if (early?.kernel === 'cuda') {
    const renderer = early;
    stream.gpu = {
      device: renderer.gpuDevice ?? 'GPU',
      ...(device.kind === 'gpu' && device.uuid && { uuid: device.uuid }),
      handle: renderer.gpuHandle,
      leaveOnGpu: () => renderer.keepFramesOnGpu(),
      lastOnGpu: () => renderer.lastOnGpu,
    };
  }
  return stream;
}

/**
 * The embedded lip-sync engine: no model to download. It holds no model either; its memory is the avatar
 * image and a few frames, so it declares a small amount (on a GPU, its CUDA context's): where the host places it on
 * a GPU its frames are drawn there (CUDA), else on the CPU.
 */
export const warpPlugin: StagePlugin<'lipsync'> = defineStagePlugin({
  name: 'warp',
  stage: 'lipsync',
  apiVersion: PLUGIN_API_VERSION,
  description: 'talking head from the photo itself: a landmark-mesh warp driven by the speech, with blinks and head motion',
  // (on a GPU most of it is the CUDA context itself; the photo and frames take a few MB; an NVENC session
  // the encoder may open on the same GPU for these frames needs room too: a guess, not yet measured on one)
  resources: { device: 'any', ramMB: 64, vramMB: 768 },
  // frames follow the speech as it is made (LipsyncInput.speechParts)
  speechParts: true,
  // no model: the photo is warped by the project's own code
  license: () => ({ code: 'MIT', commercialUse: true, models: [] }),
  async check() {
    return { ok: true, detail: 'built in (sharp ' + (await loadSharp()).versions.sharp + ')' };
  },
  async load(loadCtx) {
    const made = new Set<FaceRenderer>();
    return {
      run: (input, ctx) => render(input, ctx, loadCtx.device, made),
      async unload() {
        for (const renderer of made) renderer.release();
        made.clear();
      },
    };
  },
});

/** Measures a talking-head video from the outside (decoded frames and audio only), finished or as it is encoded. */
export const syncInspectorPlugin: StagePlugin<'inspect'> = defineStagePlugin({
  name: 'sync-inspector',
  stage: 'inspect',
  apiVersion: PLUGIN_API_VERSION,
  description: 'mouth motion against the audio envelope, stillness in silences, border motion, mouth sharpness',
  resources: { device: 'cpu' },
  // measures the video while it is encoded, from the same packets (InspectInput.watching)
  watchesEncode: true,
  options: {
    type: 'object',
    properties: {
      // 320 px by default: the measures are relative, and a quarter of the pixels of a 640 px analysis
      maxAnalysisSize: { type: 'integer', minimum: 64, maximum: 4096, default: 320, description: 'frames are analysed downscaled to at most this many pixels on the longer side' },
    },
  },
  license: () => ({ code: 'MIT (decodes with ffmpeg: LGPL-2.1-or-later / GPL-2.0-or-later as built by Debian)', commercialUse: true, models: [] }),
  async load(loadCtx) {
    const maxAnalysisSize = Number(loadCtx.options.maxAnalysisSize ?? 320);
    return {
      async run(input, ctx): Promise<InspectionSummary> {
        const { mouth, face } = input.regions;
        // a face box of no area: not known, so the whole border band is measured
        const faceBox = face.width > 0 && face.height > 0 ? face : undefined;
        // (the crops past the inspector's memory wait in the run's work folder: /tmp is often memory itself)
        const report = await inspectVideo(input.videoPath, { mouthBox: mouth, ...(faceBox && { faceBox }), maxAnalysisSize, ...(input.watching && { watching: input.watching }), scratchDir: ctx.workDir, signal: ctx.signal });
        return {
          lagFrames: report.sync.lagFrames,
          correlation: round(report.sync.correlation),
          silenceStillness: round(report.silence.stillnessRatio ?? 0),
          borderMotion: round(report.borders.meanMotion),
          sharpnessRatio: round(report.sharpness.ratio ?? 1),
          details: JSON.parse(JSON.stringify(report)) as Record<string, unknown>,
        };
      },
      async unload() {},
    };
  },
});

const round = (n: number): number => Math.round(n * 1000) / 1000;
