import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@avatar/core';
import type { Avatar, RunContext, StagePlugin } from '@avatar/core';
import { plugins as facePlugins } from '@avatar/face';
import { spawnSync } from 'node:child_process';
import { frameKernels } from '@avatar/native';
import { FaceRenderer, blinkAt, blinkSchedule, headMotionAt, rgbaToI420 } from './index.js';
import type { FrameState, RgbaImage } from './index.js';
import { MOUTH_PARAM_FIELDS } from './mouth.js';
import type { MouthPose } from '../track.js';

// The renderer is tested on a real portrait with landmarks from the real face stage.
const PORTRAIT = new URL('../../../../tests/fixtures/grace_hopper.jpg', import.meta.url).pathname;
const REST: MouthPose = { jawOpen: 0, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 };
const OPEN: MouthPose = { jawOpen: 0.8, lipWidth: 0.1, lipClosure: 0, teethVisible: 0.6, lipToTeeth: 0 };
const STILL: FrameState = { blink: 0, headAngle: 0, headX: 0, headY: 0 };

let image: RgbaImage;
let avatar: Avatar;
// a photo that shows its teeth: the mouth is then drawn between them (the other branch of the kernels)
const SMILE = new URL('../../../../tests/fixtures/faces/astronaut_eileen_collins.jpg', import.meta.url).pathname;
let smileImage: RgbaImage;
let smile: Avatar;

const hash = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

beforeAll(async () => {
  const face = facePlugins.find((p) => p.stage === 'face') as StagePlugin<'face'>;
  const loaded = await face.load({ log: silentLogger, storageDir: '/tmp', options: {}, device: { kind: 'cpu' } });
  const ctx: RunContext = { signal: new AbortController().signal, progress() {}, log: silentLogger, workDir: '/tmp' };
  avatar = await loaded.run({ imagePath: PORTRAIT }, ctx);
  smile = await loaded.run({ imagePath: SMILE }, ctx);
  await loaded.unload();
  const { data, info } = await sharp(PORTRAIT).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  image = { width: info.width, height: info.height, data: new Uint8Array(data) };
  const smilePixels = await sharp(SMILE).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  smileImage = { width: smilePixels.info.width, height: smilePixels.info.height, data: new Uint8Array(smilePixels.data) };
});

/** Pixels that differ between two RGBA frames, and their bounding box. */
function changed(a: Uint8Array, b: Uint8Array, width: number): { count: number; box: [number, number, number, number] } {
  let count = 0;
  const box: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
  for (let i = 0; i < a.length; i += 4) {
    if (a[i] !== b[i] || a[i + 1] !== b[i + 1] || a[i + 2] !== b[i + 2]) {
      count++;
      const x = (i / 4) % width;
      const y = Math.floor(i / 4 / width);
      box[0] = Math.min(box[0], x);
      box[1] = Math.min(box[1], y);
      box[2] = Math.max(box[2], x);
      box[3] = Math.max(box[3], y);
    }
  }
  return { count, box };
}

describe('FaceRenderer on a real portrait', () => {
  it('says why the compiled kernels are not drawing, when they are not', () => {
    expect(new FaceRenderer(image, avatar.face.landmarks).nativeMissing).toBe('the compiled kernels draw I420 frames only');
    const asked = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p', kernel: 'js' });
    expect(asked.kernel).toBe('js');
    expect(asked.nativeMissing).toBe('the TypeScript kernels were asked for');
    const auto = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p' });
    expect(auto.nativeMissing === undefined).toBe(auto.kernel === 'native');
  });

  it('at rest, with no blink and no head motion, the frame is the photo itself', () => {
    const renderer = new FaceRenderer(image, avatar.face.landmarks);
    expect(changed(renderer.render(REST, STILL), image.data, image.width).count).toBe(0);
  });

  it('an open mouth changes only the mouth and jaw, and draws a dark opening between the lips', () => {
    const renderer = new FaceRenderer(image, avatar.face.landmarks);
    const frame = renderer.render(OPEN, STILL);
    const { count, box } = changed(frame, image.data, image.width);
    expect(count).toBeGreaterThan(500);
    const lm = avatar.face.landmarks;
    // nothing at the eyes or above moved; sideways the change stays near the jaw (the skin just
    // outside the jaw line stretches with it)
    expect(box[1]).toBeGreaterThan(Math.max(...[40, 41, 46, 47].map((i) => lm[i]!.y)));
    const jawWidth = lm[16]!.x - lm[0]!.x;
    expect(box[0]).toBeGreaterThanOrEqual(lm[0]!.x - 0.3 * jawWidth);
    expect(box[2]).toBeLessThanOrEqual(lm[16]!.x + 0.3 * jawWidth);
    // the middle of the opening is dark (cavity) or light (teeth), not skin
    const cx = Math.round((lm[62]!.x + lm[66]!.x) / 2);
    let dark = 0;
    for (let y = Math.round(lm[62]!.y); y < Math.round(lm[62]!.y) + 30; y++) {
      const o = (y * image.width + cx) * 4;
      if (frame[o]! < 90 && frame[o + 1]! < 60) dark++;
    }
    expect(dark).toBeGreaterThan(3);
  });

  it('no triangle of the mesh joins the upper lip to the lower one outside the opening', () => {
    // such a triangle is stretched across the lips as the mouth opens and streaks the upper lip
    const renderer = new FaceRenderer(image, avatar.face.landmarks);
    const triangles = (renderer as unknown as { triangles: Uint32Array }).triangles;
    const upper = new Set([49, 50, 51, 52, 53, 61, 62, 63]);
    const lower = new Set([55, 56, 57, 58, 59, 65, 66, 67]);
    const inner = (v: number): boolean => v >= 60 && v <= 67;
    let spanning = 0;
    for (let t = 0; t < triangles.length; t += 3) {
      const corners = [triangles[t]!, triangles[t + 1]!, triangles[t + 2]!];
      if (corners.some((v) => upper.has(v)) && corners.some((v) => lower.has(v)) && !corners.every(inner)) spanning++;
    }
    expect(spanning).toBe(0);
  });

  it('lips pressed together (p, b, m) draw no opening', () => {
    const renderer = new FaceRenderer(image, avatar.face.landmarks);
    const closed = renderer.render({ ...OPEN, lipClosure: 1 }, STILL).slice();
    const open = renderer.render(OPEN, STILL);
    const lm = avatar.face.landmarks;
    const cx = Math.round((lm[62]!.x + lm[66]!.x) / 2);
    const darkRun = (frame: Uint8Array): number => {
      let n = 0;
      for (let y = Math.round(lm[62]!.y) - 5; y < Math.round(lm[66]!.y) + 25; y++) {
        const o = (y * image.width + cx) * 4;
        if (frame[o]! < 80 && frame[o + 1]! < 45) n++;
      }
      return n;
    };
    expect(darkRun(closed)).toBe(0);
    expect(darkRun(open)).toBeGreaterThan(3);
  });

  it('a blink moves the eyelids only, and head motion never reaches the frame edges', () => {
    const renderer = new FaceRenderer(image, avatar.face.landmarks);
    const blink = changed(renderer.render(REST, { ...STILL, blink: 1 }), image.data, image.width);
    const lm = avatar.face.landmarks;
    expect(blink.count).toBeGreaterThan(100);
    expect(blink.box[1]).toBeGreaterThanOrEqual(Math.min(...lm.slice(17, 27).map((p) => p.y)) - 2);
    expect(blink.box[3]).toBeLessThanOrEqual(lm[33]!.y);
    const moved = renderer.render(OPEN, { blink: 0, headAngle: 0.04, headX: 3, headY: 2 });
    const { box } = changed(moved, image.data, image.width);
    // the outermost rows and columns stay the photo's
    for (let x = 0; x < image.width; x++) {
      for (const y of [0, image.height - 1]) {
        const o = (y * image.width + x) * 4;
        expect(moved[o]).toBe(image.data[o]);
      }
    }
    expect(box[0]).toBeGreaterThan(0);
  });

  it('renders the same frames for the same inputs and seed, other blinks and motion for another seed', () => {
    const frames = (seed: number): string[] => {
      const renderer = new FaceRenderer(image, avatar.face.landmarks);
      const blinks = blinkSchedule(10, 20, seed);
      const out: string[] = [];
      for (let i = 0; i < 250; i += 10) {
        const t = i / 25;
        const pose = { ...OPEN, jawOpen: 0.5 + 0.4 * Math.sin(i / 7) };
        out.push(hash(renderer.render(pose, { blink: blinkAt(t, blinks), ...headMotionAt(t, 'subtle', seed, 100) })));
      }
      return out;
    };
    expect(frames(7)).toEqual(frames(7));
    expect(frames(7)).not.toEqual(frames(8));
  });

  it('a frame drawn after others, into a reused buffer, is the frame a fresh renderer draws first', () => {
    // each buffer is put back to the photo only where its last frame drew: what is left of earlier frames
    // (a wide open mouth, the head moved the other way, a blink) must not show in a later one
    const { width, height } = { width: image.width & ~1, height: image.height & ~1 };
    const rgba = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) rgba.set(image.data.subarray(y * image.width * 4, y * image.width * 4 + width * 4), y * width * 4);
    const even = { width, height, data: rgba };
    const frames: [MouthPose, FrameState][] = [
      [OPEN, { ...STILL, headX: 2, headAngle: 0.03 }], [{ ...OPEN, jawOpen: 0.3 }, { ...STILL, blink: 1, headY: -2 }],
      [REST, { ...STILL, headX: -1.5 }], [OPEN, { ...STILL, headAngle: -0.04, headY: 1.5 }], [REST, STILL], [{ ...OPEN, lipWidth: 0.4 }, STILL],
    ];
    for (const pixelFormat of ['yuv420p', 'rgba'] as const) {
      for (const ring of [1, 3]) {
        const reused = new FaceRenderer(even, avatar.face.landmarks, { ring, pixelFormat });
        for (const [k, [pose, state]] of frames.entries()) {
          const drawn = hash(reused.render(pose, state));
          const fresh = hash(new FaceRenderer(even, avatar.face.landmarks, { ring: 1, pixelFormat }).render(pose, state));
          expect(drawn, `${pixelFormat}, ring ${ring}, frame ${k}`).toBe(fresh);
        }
      }
    }
  });

  it('converts to I420 as the encoder would (BT.709, limited range), and I420 frames follow the RGBA ones', () => {
    const { width, height } = { width: image.width & ~1, height: image.height & ~1 };
    const rgba = new Uint8Array(width * height * 4);
    for (let y = 0; y < height; y++) rgba.set(image.data.subarray(y * image.width * 4, y * image.width * 4 + width * 4), y * width * 4);
    const ours = new Uint8Array((width * height * 3) / 2);
    rgbaToI420(rgba, width, height, ours, 0, 0, width - 1, height - 1);
    const ffmpeg = spawnSync('ffmpeg', ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgba', '-s', `${width}x${height}`, '-i', 'pipe:0',
      '-vf', 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p', '-f', 'rawvideo', 'pipe:1'], { input: rgba, maxBuffer: 1 << 26 }).stdout as Buffer;
    expect(ffmpeg.length).toBe(ours.length);
    const meanDiff = (from: number, to: number): number => {
      let sum = 0;
      for (let i = from; i < to; i++) sum += Math.abs((ours[i] ?? 0) - (ffmpeg[i] ?? 0));
      return sum / (to - from);
    };
    expect(meanDiff(0, width * height)).toBeLessThan(1);
    expect(meanDiff(width * height, ours.length)).toBeLessThan(1.5);

    // I420 frames are drawn as I420 (chroma warped at its own size), so they match the RGBA frames
    // converted afterwards closely but not bit for bit; where nothing moves they are the photo exactly
    const yuvRenderer = new FaceRenderer({ width, height, data: rgba }, avatar.face.landmarks, { ring: 3, pixelFormat: 'yuv420p' });
    const rgbaRenderer = new FaceRenderer({ width, height, data: rgba }, avatar.face.landmarks, { ring: 3 });
    const luma = width * height;
    for (const [pose, state] of [[OPEN, { ...STILL, headX: 1.5 }], [REST, STILL], [{ ...OPEN, jawOpen: 0.4 }, { ...STILL, blink: 1, headAngle: 0.02 }], [REST, { ...STILL, headY: -1 }], [OPEN, STILL]] as const) {
      const frame = yuvRenderer.render(pose, state);
      const rgbaFrame = rgbaRenderer.render(pose, state);
      const expected = new Uint8Array(ours.length);
      rgbaToI420(rgbaFrame, width, height, expected, 0, 0, width - 1, height - 1);
      let lumaErr = 0, lumaMax = 0, chromaErr = 0, chromaMax = 0, moved = 0;
      for (let i = 0; i < ours.length; i++) {
        const d = Math.abs((frame[i] as number) - (expected[i] as number));
        if (i < luma) {
          lumaErr += d;
          lumaMax = Math.max(lumaMax, d);
          if (frame[i] !== ours[i]) moved++;
        } else {
          chromaErr += d;
          chromaMax = Math.max(chromaMax, d);
        }
      }
      // luma is the same up to rounding; chroma within a few levels where things moved
      expect(lumaMax).toBeLessThanOrEqual(2);
      expect(lumaErr / Math.max(1, moved)).toBeLessThan(0.5);
      expect(chromaErr / Math.max(1, moved / 4)).toBeLessThan(1.5);
      expect(chromaMax).toBeLessThanOrEqual(16);
      // something moved exactly when the RGBA frame changed
      expect(moved > 0).toBe(changed(rgbaFrame, rgba, width).count > 0);
      if (pose === REST && state === STILL) expect(hash(frame)).toBe(hash(ours));
    }
  });

  // the addon is optional, so where it is not built there is nothing to compare (bootstrap builds it)
  it.skipIf(!frameKernels())('the native kernels draw the same bytes as the TypeScript ones, with drawn teeth and with the photo\'s own', () => {
    parity(image, avatar, { photoTeeth: false });
    parity(smileImage, smile, { photoTeeth: true });
  });

  it('asked for a GPU where there is none, draws on the CPU and says why', () => {
    const r = new FaceRenderer({ width: 64, height: 64, data: new Uint8Array(64 * 64 * 4).fill(128) }, avatar.face.landmarks.map((p) => ({ x: (p.x / image.width) * 64, y: (p.y / image.height) * 64 })), { pixelFormat: 'yuv420p', kernel: 'cuda' });
    r.close();
    // (a machine with an NVIDIA GPU and driver draws there: nothing to see here)
    if (r.gpuDevice) return;
    expect(r.kernel).toBe(frameKernels() ? 'native' : 'js');
    // the stand-in drivers of tests/gpu-stand-in.test.ts show the GPU path; here there is no driver
    expect(r.gpuMissing).toMatch(frameKernels() ? /^(libcuda\.so\.1 not found \(no NVIDIA driver\)|this build has no CUDA kernels)/ : /^native addon not built/);
    expect(r.gpuDevice).toBeUndefined();
    r.close();
  });

  it.skipIf(!frameKernels())('and on a photo enlarged to the frame\'s size, whose grain is drawn coarse', async () => {
    // 1.7 times: the grain then measures 2 px coarse, which the kernels draw on a grid (grainAtScale)
    const width = Math.round(image.width * 1.7), height = Math.round(image.height * 1.7);
    const { data } = await sharp(PORTRAIT).resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    const enlarged = { ...avatar, face: { ...avatar.face, landmarks: avatar.face.landmarks.map((p) => ({ x: p.x * 1.7, y: p.y * 1.7 })) } };
    parity({ width, height, data: new Uint8Array(data) }, enlarged, { photoTeeth: false, grainScale: 2 });
  });
});

/** Renders 100 frames with the native kernels, the GPU kernels' thread functions and the TypeScript ones and compares them byte for byte. */
function parity(image: RgbaImage, avatar: Avatar, expected: { photoTeeth: boolean; grainScale?: number }): void {
  // cropped close around the face, as a prepared avatar is: the mesh then reaches past the frame's
  // edges and the kernels' clamped path draws there
  const xs = avatar.face.landmarks.map((p) => p.x);
  const ys = avatar.face.landmarks.map((p) => p.y);
  const x0 = Math.max(0, Math.floor(Math.min(...xs) - 20)), y0 = Math.max(0, Math.floor(Math.min(...ys) - 40));
  const width = Math.min(image.width - x0, Math.ceil(Math.max(...xs) - x0 + 20)) & ~1;
  const height = Math.min(image.height - y0, Math.ceil(Math.max(...ys) - y0 + 20)) & ~1;
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) rgba.set(image.data.subarray(((y + y0) * image.width + x0) * 4, ((y + y0) * image.width + x0 + width) * 4), y * width * 4);
  const landmarks = avatar.face.landmarks.map((p) => ({ x: p.x - x0, y: p.y - y0 }));
  const make = (kernel: 'js' | 'native' | 'threads'): FaceRenderer =>
    new FaceRenderer({ width, height, data: rgba }, landmarks, { pixelFormat: 'yuv420p', kernel });
  const native = make('native');
  const js = make('js');
  // the GPU kernels' thread functions, run on the CPU in reverse order: the GPU's decomposition of a
  // frame draws the same bytes whatever order its threads run in
  const threads = make('threads');
  expect(threads.kernel).toBe('threads');
  expect(native.kernel).toBe('native');
  expect(native.photoTeeth).toBe(expected.photoTeeth);
  if (expected.grainScale !== undefined) expect(native.grainScale).toBe(expected.grainScale);
  // the compiled mouth reads its parameters from a block laid out as mouth.ts lists them
  expect(frameKernels()?.mouthParamFields).toEqual(MOUTH_PARAM_FIELDS);
  expect(js.kernel).toBe('js');
  expect(new FaceRenderer({ width, height, data: rgba }, landmarks, { pixelFormat: 'yuv420p' }).kernel).toBe('native');
  expect(() => new FaceRenderer({ width, height, data: rgba }, landmarks, { kernel: 'native' })).toThrow(/I420 frames only/);
  const blinks = blinkSchedule(12, 30, 5);
  let moved = 0;
  for (let i = 0; i < 300; i += 3) {
    const t = i / 25;
    // wide head motion too, so triangles reach the frame's edge and take the clamped path
    const motion = headMotionAt(t, i < 150 ? 'lively' : 'subtle', 5, i < 150 ? 400 : 100);
    const pose = { ...OPEN, jawOpen: 0.5 + 0.5 * Math.sin(i / 5), lipWidth: Math.cos(i / 9), lipToTeeth: i % 60 < 10 ? 1 : 0, lipClosure: i % 45 < 9 ? (i % 45) / 8 : 0 };
    const state = { blink: blinkAt(t, blinks), ...motion };
    const a = native.render(pose, state);
    const b = js.render(pose, state);
    expect(hash(a)).toBe(hash(b));
    expect(hash(threads.render(pose, state))).toBe(hash(b));
    if (motion.headX !== 0) moved++;
  }
  expect(moved).toBeGreaterThan(50);
}

describe('blink schedule', () => {
  it('blinks come at irregular intervals near the asked rate, none in the first half second', () => {
    const times = blinkSchedule(120, 15, 3);
    expect(times[0]).toBeGreaterThan(0.5);
    expect(times.length).toBeGreaterThan(15);
    expect(times.length).toBeLessThan(45);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(1.2);
    expect(new Set(gaps.map((g) => g.toFixed(2))).size).toBeGreaterThan(5);
    expect(blinkSchedule(60, 0, 3)).toEqual([]);
    expect(blinkAt(times[0]! + 0.075, times)).toBe(1);
    expect(blinkAt(times[0]! - 0.1, times)).toBe(0);
  });
});
