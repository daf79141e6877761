// The NVENC path's choices and its clean-up, with the native encoder replaced by one that records its
// calls (the stand-in driver libraries test the native side, tests/gpu-stand-in.test.ts the whole run).
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryLogger, QUALITY_PRESETS, isAvatarError, type EncodeSettings, type FrameStream, type GpuFrames } from '@avatar/core';

const calls: string[] = [];
let failAt = -1;
let encoded = 0;
let running = false;
let nextSlot = 0;
const staged: number[] = [];
vi.mock('@avatar/native', async (original) => ({
  ...(await original<typeof import('@avatar/native')>()),
  openNvencEncoder: () => ({
    ok: true,
    device: 'Mock GPU',
    encoder: {
      encode: () => Buffer.alloc(0),
      encodeFrom: () => Buffer.alloc(0),
      // the two steps the encoder uses: the frame taken now (from GPU memory, or its bytes), encoded later
      // (with the native encoder's rules: two slots in turn, one encode at a time, the oldest first)
      stage: (source: unknown) => {
        calls.push(source instanceof Uint8Array ? 'encode' : 'encodeFrom');
        if (staged.length >= 2) throw new Error('stage: both input slots hold frames not yet encoded; await an encode first');
        const slot = nextSlot;
        staged.push(slot);
        nextSlot = (slot + 1) % 2;
        return slot;
      },
      encodeSlot: async (slot: number) => {
        if (running) throw new Error('encodeSlot: an encode is running on another thread; await it first');
        if (staged[0] !== slot) throw new Error('encodeSlot: an older staged frame must be encoded first');
        running = true;
        await new Promise((t) => setTimeout(t, 2));
        running = false;
        staged.shift();
        encoded++;
        if (encoded === failAt) throw new Error('NVENC failed to encode a frame: nvEncEncodePicture returned NV_ENC_ERR_ENCODER_BUSY (4)');
        return Buffer.alloc(0);
      },
      finish: () => Buffer.alloc(0),
      close: () => calls.push('close'),
    },
  }),
}));

const { atLeast, chooseGpuEncoder } = await import('./nvenc.js');
const { encodeFrames } = await import('./encode.js');

const run = promisify(execFile);
let dir: string;
let audio: string;
const settings: EncodeSettings = { ...QUALITY_PRESETS.low, format: 'mp4', size: 64, fps: 25 };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-nvenc-'));
  audio = join(dir, 'a.wav');
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'sine=frequency=220:sample_rate=16000:duration=4', audio]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));
beforeEach(() => {
  calls.length = 0;
  failAt = -1;
  encoded = 0;
  running = false;
  nextSlot = 0;
  staged.length = 0;
});

/** 64x48 I420 frames said to be drawn on a GPU, every other one left there. */
function gpuStream(count: number, onFrame: (i: number) => void = () => {}): FrameStream & { gpu: GpuFrames } {
  let last = 0;
  let kept = false;
  async function* frames(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < count; i++) {
      onFrame(i);
      last = i;
      yield new Uint8Array(64 * 48 * 1.5).fill(i % 200);
      await new Promise((t) => setTimeout(t, 5));
    }
  }
  return {
    width: 64, height: 48, fps: 25, frameCount: count, pixelFormat: 'yuv420p', frames: frames(),
    gpu: { device: 'Mock GPU', handle: {}, leaveOnGpu: () => { kept = true; }, lastOnGpu: () => kept && last % 2 === 1 },
  };
}

describe('the choice of NVENC', () => {
  const options = { burn: false, resized: false, live: false, ffmpegVersion: '5.1.9-0+deb12u1' };
  it('is taken for MP4 from frames on a GPU, and refused with the reason otherwise', () => {
    expect(chooseGpuEncoder(gpuStream(1), settings, options)).toMatchObject({ ok: true, gpu: { device: 'Mock GPU' } });
    const { gpu: _gpu, ...onCpu } = gpuStream(1);
    expect(chooseGpuEncoder(onCpu, settings, options)).toEqual({ ok: false, reason: 'the frames are drawn on the CPU' });
    expect(chooseGpuEncoder(gpuStream(1), { ...settings, format: 'webm' }, options)).toEqual({ ok: false, reason: 'NVENC has no VP9 encoder' });
    expect(chooseGpuEncoder(gpuStream(1), settings, { ...options, burn: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/burned-in captions/) });
    expect(chooseGpuEncoder(gpuStream(1), settings, { ...options, resized: true })).toMatchObject({ ok: false, reason: expect.stringMatching(/scaled/) });
    expect(chooseGpuEncoder(gpuStream(1), settings, { ...options, ffmpegVersion: '4.3.1' })).toMatchObject({ ok: false, reason: expect.stringMatching(/older than 4\.4/) });
    vi.stubEnv('AVATAR_NVENC', '0');
    try {
      expect(chooseGpuEncoder(gpuStream(1), settings, options)).toEqual({ ok: false, reason: 'turned off (AVATAR_NVENC=0)' });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('reads ffmpeg\'s version strings', () => {
    expect(atLeast('5.1.9-0+deb12u1', 4, 4)).toBe(true);
    expect(atLeast('4.4', 4, 4)).toBe(true);
    expect(atLeast('4.3.2', 4, 4)).toBe(false);
    expect(atLeast('n6.1', 4, 4)).toBe(true);
    expect(atLeast('N-113406-g1a2b3c', 4, 4)).toBe(true);
  });
});

describe('an encode on NVENC', () => {
  const leftovers = async (): Promise<string[]> => (await readdir(dir)).filter((f) => f.includes('out'));

  it('takes each frame where it is (GPU memory or its bytes), and closes the session when cancelled', async () => {
    const controller = new AbortController();
    const stream = gpuStream(200, (i) => { if (i === 6) controller.abort(); });
    const log = new MemoryLogger();
    const error = await encodeFrames({ frames: stream, audioPath: audio, outputPath: join(dir, 'out-cancelled.mp4'), settings }, { signal: controller.signal, log }).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_CANCELLED')).toBe(true);
    expect(calls.slice(0, 4)).toEqual(['encode', 'encodeFrom', 'encode', 'encodeFrom']);
    expect(calls.filter((c) => c === 'close')).toHaveLength(1);
    expect(calls.at(-1)).toBe('close');
    expect(await leftovers()).toEqual([]);
  });

  it('closes the session when anything fails between its opening and the first frame', async () => {
    const stream = gpuStream(5);
    stream.gpu.leaveOnGpu = () => { throw new Error('the renderer went away'); };
    const error = await encodeFrames({ frames: stream, audioPath: audio, outputPath: join(dir, 'out-early.mp4'), settings }, { log: new MemoryLogger() }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('the renderer went away');
    expect(calls).toEqual(['close']);
    expect(await leftovers()).toEqual([]);
  });

  it('fails the encode naming NVENC\'s call when a picture fails, closing the session and leaving nothing', async () => {
    failAt = 3;
    const error = await encodeFrames({ frames: gpuStream(50), audioPath: audio, outputPath: join(dir, 'out-failed.mp4'), settings }, { log: new MemoryLogger() }).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_ENCODE_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/nvEncEncodePicture returned NV_ENC_ERR_ENCODER_BUSY/);
    expect(calls.filter((c) => c === 'close')).toHaveLength(1);
    expect(await leftovers()).toEqual([]);
  });
});
