// The renderer's bookkeeping when its frames are drawn on a GPU and left there for an encoder, with the
// CUDA renderer replaced by one that draws with the CPU kernels into its own "device" frame: whatever
// the mix of frames left on the GPU, checked ones copied back and still ones drawn on the CPU, the frame
// an encoder takes (the device frame when `lastOnGpu`, else the returned bytes) must be the CPU's.
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '@avatar/core';
import type { Avatar, RunContext, StagePlugin } from '@avatar/core';
import { plugins as facePlugins } from '@avatar/face';
import type { CudaFrameRenderer } from '@avatar/native';
import type { FrameState, RgbaImage } from './index.js';
import type { MouthPose } from '../track.js';

/** the stand-in GPU's frame, as the encoder would read it */
let device: Uint8Array | undefined;
let released = 0;
let closed = 0;
vi.mock('@avatar/native', async (original) => {
  const native = await original<typeof import('@avatar/native')>();
  const open = (photo: Uint8Array, size: { width: number; height: number }, mesh: { triangles: Uint32Array; rest: Float64Array }) => {
      const kernels = native.frameKernels();
      if (!kernels) return { ok: false, reason: 'native addon not built' };
      const { width, height } = size;
      const base = photo.slice();
      const renderer: CudaFrameRenderer = {
        frame(moved, active, count, outline, params, out) {
          const drawn = base.slice();
          kernels.warpI420(base, drawn, width, height, moved, mesh.rest, mesh.triangles, active, count);
          if (outline && params) kernels.mouthI420(drawn, width, height, outline, params);
          device = drawn;
          out?.set(drawn);
        },
        hostBuffers: (n) => Array.from({ length: n }, () => new Uint8Array(base.length)),
        releaseHostBuffers: () => { released++; },
        close: () => { closed++; },
      };
      return { ok: true as const, renderer, device: 'Mock GPU' };
  };
  return {
    ...native,
    openCudaRenderer: open,
    // as slow as a GPU's first start may be
    openCudaRendererAsync: async (...args: Parameters<typeof open>) => {
      await new Promise((t) => setTimeout(t, 30));
      return open(...args);
    },
  };
});

const { FaceRenderer, headMotionAt } = await import('./index.js');
const { frameKernels } = await import('@avatar/native');

const PORTRAIT = new URL('../../../../tests/fixtures/grace_hopper.jpg', import.meta.url).pathname;
const hash = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
let avatar: Avatar;
let image: RgbaImage;

beforeAll(async () => {
  const face = facePlugins.find((p) => p.stage === 'face') as StagePlugin<'face'>;
  const loaded = await face.load({ log: silentLogger, storageDir: '/tmp', options: {}, device: { kind: 'cpu' } });
  const ctx: RunContext = { signal: new AbortController().signal, progress() {}, log: silentLogger, workDir: '/tmp' };
  avatar = await loaded.run({ imagePath: PORTRAIT }, ctx);
  await loaded.unload();
  const { data, info } = await sharp(PORTRAIT).resize(256).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  image = { width: info.width & ~1, height: info.height & ~1, data: new Uint8Array(data) };
  const scale = info.width / avatar.width;
  avatar = { ...avatar, face: { ...avatar.face, landmarks: avatar.face.landmarks.map((p) => ({ x: p.x * scale, y: p.y * scale })) } };
  if (image.width !== info.width || image.height !== info.height) throw new Error('the test wants an even-sized image');
});

describe.skipIf(!frameKernels())('frames left on the GPU', () => {
  it('an encoder taking each frame where the renderer says it is gets the CPU\'s frame every time', () => {
    const gpu = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p', ring: 4, kernel: 'cuda' });
    const cpu = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p', ring: 4, kernel: 'native' });
    expect(gpu.kernel).toBe('cuda');
    gpu.keepFramesOnGpu();
    const speaking: MouthPose = { jawOpen: 0.7, lipWidth: 0.2, lipClosure: 0, teethVisible: 0.5, lipToTeeth: 0 };
    const rest: MouthPose = { jawOpen: 0, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 };
    let onGpu = 0, fromBytes = 0;
    // speech with head motion (the first frames come back to be checked: whole buffers drawn), speech
    // without (frames left on the GPU, changing only the mouth), stillness (nothing moves: drawn on the
    // CPU into buffers the GPU's frames did not update), and again, past the checked frames
    for (let i = 0; i < 120; i++) {
      const phase = Math.floor(i / 10) % 3;
      const still = phase === 2;
      const state: FrameState = phase === 0 ? { blink: 0, ...headMotionAt(i / 25, 'lively', 3, 40) } : { blink: 0, headAngle: 0, headX: 0, headY: 0 };
      const pose = still ? rest : { ...speaking, jawOpen: 0.4 + 0.4 * Math.sin(i / 3) };
      const bytes = gpu.render(pose, state);
      const taken = gpu.lastOnGpu ? (device as Uint8Array) : bytes;
      if (gpu.lastOnGpu) onGpu++;
      else fromBytes++;
      expect(hash(taken), `frame ${i} (${gpu.lastOnGpu ? 'on the GPU' : 'bytes'})`).toBe(hash(cpu.render(pose, state)));
    }
    expect(gpu.kernel).toBe('cuda');
    expect(onGpu).toBeGreaterThan(30);
    expect(fromBytes).toBeGreaterThan(30);
    gpu.release();
    expect(released).toBe(1);
  });

  it('a renderer released while its GPU opens lets the GPU go at once', async () => {
    const renderer = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p', ring: 4 });
    const [closedBefore, releasedBefore] = [closed, released];
    const opening = renderer.useGpu();
    renderer.release();
    expect(await opening).toBe(false);
    expect(renderer.kernel).not.toBe('cuda');
    expect([closed - closedBefore, released - releasedBefore]).toEqual([1, 1]);
    // opened before the release, it draws there
    const other = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p', ring: 4 });
    expect(await other.useGpu()).toBe(true);
    expect(other.kernel).toBe('cuda');
  });
});
