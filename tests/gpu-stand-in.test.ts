// The whole pipeline through the GPU render path, on stand-in NVIDIA libraries (native/test/fake-driver):
// NVML lists a GPU, the resource manager places the lip-sync engine on it, the engine opens the CUDA
// renderer, and the stand-in libcuda runs the kernels' thread functions on the CPU. The video must show
// exactly the frames the CPU path draws. These are stand-ins: what a real driver and GPU do is checked
// only where one is lent (docs/benchmarks.md says what ran where).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { frameKernels, nativeStatus } from '@avatar/native';
import { NVENC_HEADER, buildFakeDrivers, fakeNvencEncodes } from '../native/test/fake-driver/build.js';
import { PORTRAIT, avatar, tempDir } from './helpers/cli.js';

const hasCompilers = spawnSync('cc', ['--version']).status === 0 && spawnSync('c++', ['--version']).status === 0;
// the GPU path needs the addon's CUDA kernels, which only a build with nvcc carries
const hasPtx = (await nativeStatus()).cudaKernels.modules.length === 2;
if (!hasPtx) console.warn('GPU render path tests skipped: the native addon carries no CUDA kernels (nvcc not installed, or the addon not built)');
const TEXT = 'Hello there. My frames are drawn on a graphics card.';

interface RunResult {
  success: boolean;
  paths: { render: { path: string; notUsed?: string }; encode: { path: string; notUsed?: string } };
}

/** The decoded frames of a video, as I420. */
function decodedFrames(path: string): Buffer {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:v', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-'], { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`ffmpeg: ${r.stderr.toString()}`);
  return r.stdout;
}

/** The video's picture size and frame count. */
function videoInfo(path: string): { width: number; height: number; frames: number } {
  const r = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height,nb_frames', '-of', 'csv=p=0', path], { encoding: 'utf8' });
  const [width = 0, height = 0, frames = 0] = r.stdout.trim().split(',').map(Number);
  return { width, height, frames };
}

/**
 * How far apart two videos of the same size are at worst: the largest mean luma difference of any
 * 16x16 block of any frame. Two H.264 encoders of the same pictures stay within a few levels; a frame
 * showing another picture (a stale mouth) differs by tens in the blocks it covers.
 */
function worstBlock(a: Buffer, b: Buffer, width: number, height: number): number {
  const frame = (width * height * 3) / 2;
  let worst = 0;
  for (let f = 0; f + frame <= a.length; f += frame) {
    for (let by = 0; by + 16 <= height; by += 16) {
      for (let bx = 0; bx + 16 <= width; bx += 16) {
        let sum = 0;
        for (let y = by; y < by + 16; y++) {
          for (let x = bx; x < bx + 16; x++) sum += Math.abs((a[f + y * width + x] as number) - (b[f + y * width + x] as number));
        }
        worst = Math.max(worst, sum / 256);
      }
    }
  }
  return worst;
}

/** The decoded frames of a video, hashed: two videos show the same pictures when these agree. */
function framesHash(path: string): string {
  return createHash('sha256').update(decodedFrames(path)).digest('hex');
}

describe.skipIf(!hasCompilers)('the GPU render path on stand-in driver libraries', () => {
  let dir: string;
  let drivers: string;
  let cpuFrames: string;
  let cpuVideo: string;

  const run = async (name: string, env: Record<string, string>, extra: string[] = []): Promise<{ result: RunResult; stderr: string; frames: string; out: string }> => {
    const out = join(dir, `${name}.mp4`);
    const r = await avatar(['--json', '--verbose', '--storage', join(dir, 'storage'), 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', out, '--quality', 'low', ...extra], {
      env,
      timeoutMs: 120_000,
    });
    expect(r.code, r.stderr).toBe(0);
    return { result: JSON.parse(r.stdout) as RunResult, stderr: r.stderr, frames: framesHash(out), out };
  };

  beforeAll(async () => {
    dir = await tempDir('avatar-gpu-stand-in-');
    drivers = join(dir, 'drivers');
    mkdirSync(drivers);
    await buildFakeDrivers(drivers);
    const cpu = await run('cpu', {});
    expect(cpu.result.paths.render.path).toBe('native');
    expect(cpu.result.paths.render.notUsed).toMatch(/^cuda: no GPU: /);
    expect(cpu.result.paths.encode).toEqual({ path: 'libx264', notUsed: 'nvenc: the frames are drawn on the CPU' });
    cpuFrames = cpu.frames;
    cpuVideo = cpu.out;
  }, 240_000);

  it.skipIf(!frameKernels() || !hasPtx)('draws every frame on the GPU the host placed the engine on, the same pictures as the CPU', async () => {
    const gpu = await run('gpu', { LD_LIBRARY_PATH: drivers });
    expect(gpu.result.paths.render).toEqual({ path: 'cuda (Fake GPU 0)' });
    expect(gpu.frames).toBe(cpuFrames);
    // one line says how frames reach the CPU's encoder, one why NVENC is not used (a GPU without it, as an H100)
    expect(gpu.stderr.match(/frames are drawn on the GPU \(Fake GPU 0\) and each copied once into page-locked host memory/g)).toHaveLength(1);
    expect(gpu.result.paths.encode).toEqual({
      path: 'libx264',
      notUsed: expect.stringMatching(existsSync(NVENC_HEADER) ? /^nvenc: Fake GPU 0 could not open an encode session \(nvEncOpenEncodeSessionEx returned NV_ENC_ERR_UNSUPPORTED_DEVICE/ : /^nvenc: the addon was built without nvEncodeAPI\.h/),
    });
  }, 180_000);

  // Without head motion most frames between words move nothing and are drawn on the CPU into a buffer
  // that a frame left on the GPU did not update: the video must show the right picture in each.
  it.skipIf(!frameKernels() || !hasPtx || !fakeNvencEncodes)('a GPU with NVENC encodes the frames where they are drawn: they never come back to the host but to be checked', async () => {
    const still = ['--head-motion', 'none'];
    const cpuRun = await run('cpu-still', {}, still);
    const nvenc = await run('nvenc', { LD_LIBRARY_PATH: drivers, FAKE_NVENC: 'h264' }, still);
    expect(nvenc.result.paths).toEqual({ render: { path: 'cuda (Fake GPU 0)' }, encode: { path: 'nvenc (Fake GPU 0)' } });
    expect(nvenc.stderr).toMatch(/the video is encoded on the GPU \(Fake GPU 0\) by NVENC/);
    expect(nvenc.stderr).toMatch(/frames are drawn on the GPU \(Fake GPU 0\) and stay there for its encoder/);
    // the same pictures as the CPU's video, through another H.264 encoder (the stand-in's x264), frame by frame:
    // about 10 levels at worst in a block from the two encoders; a frame showing a stale picture, 50
    const info = videoInfo(nvenc.out);
    expect(info.frames).toBeGreaterThan(40);
    expect(videoInfo(cpuRun.out)).toEqual(info);
    expect(worstBlock(decodedFrames(cpuRun.out), decodedFrames(nvenc.out), info.width, info.height)).toBeLessThan(20);
    // frames come back only to be compared with the CPU's (at most 30 + 3), never to be encoded
    expect(nvenc.stderr.split('fake-cuda: to host').length - 1).toBeLessThanOrEqual(33);
    expect(nvenc.stderr.split('fake-nvenc: map\n').length - 1).toBe(info.frames);
    expect(nvenc.stderr.split('fake-nvenc: map\n').length).toBe(nvenc.stderr.split('fake-nvenc: unmap\n').length);
  }, 240_000);

  // A kernel's fault leaves a real CUDA context unusable until the process ends (the stand-in's too):
  // the CPU takes over the drawing, but NVENC shares that context, so the run fails, saying why, with
  // nothing left behind.
  it.skipIf(!frameKernels() || !hasPtx || !fakeNvencEncodes)('a GPU fault on a frame left there fails an NVENC run with the reason, leaving no video', async () => {
    const out = join(dir, 'nvenc-fault.mp4');
    const r = await avatar(['--json', '--verbose', '--storage', join(dir, 'storage'), 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', out, '--quality', 'low', '--head-motion', 'none'], {
      env: { LD_LIBRARY_PATH: drivers, FAKE_NVENC: 'h264', FAKE_CUDA: 'sync-fails' },
      timeoutMs: 120_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/the GPU stopped drawing frames mid-run: the GPU failed to draw a frame: cuCtxSynchronize failed: CUDA_ERROR_LAUNCH_FAILED/);
    expect(r.stdout + r.stderr).toMatch(/AVATAR_ERR_ENCODE_FAILED/);
    expect(r.stdout + r.stderr).toMatch(/NVENC failed to encode a frame: cuMemcpyHtoD failed: CUDA_ERROR_LAUNCH_FAILED/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('nvenc-fault') || f.includes('.nvenc-fault'))).toEqual([]);
  }, 240_000);

  it.skipIf(!frameKernels() || !hasPtx || !fakeNvencEncodes)('NVENC refusing to start leaves the encode to the CPU, with the reason', async () => {
    const refused = await run('nvenc-refused', { LD_LIBRARY_PATH: drivers, FAKE_NVENC: 'init-fails' });
    expect(refused.result.paths.encode).toEqual({ path: 'libx264', notUsed: expect.stringMatching(/^nvenc: nvEncInitializeEncoder returned NV_ENC_ERR_OUT_OF_MEMORY/) });
    expect(refused.frames).toBe(cpuFrames);
  }, 180_000);

  it.skipIf(!frameKernels() || !hasPtx || !fakeNvencEncodes)('NVENC failing mid-run fails the run with the call named, and leaves no video', async () => {
    const out = join(dir, 'nvenc-fails.mp4');
    const r = await avatar(['--json', '--storage', join(dir, 'storage'), 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', out, '--quality', 'low'], {
      env: { LD_LIBRARY_PATH: drivers, FAKE_NVENC: 'encode-fails' },
      timeoutMs: 120_000,
    });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/AVATAR_ERR_ENCODE_FAILED/);
    expect(r.stdout + r.stderr).toMatch(/nvEncEncodePicture returned NV_ENC_ERR_ENCODER_BUSY/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('nvenc-fails'))).toEqual([]);
  }, 180_000);

  it.skipIf(!frameKernels() || !hasPtx)('without page-locked memory the GPU still draws, into ordinary memory, and says why', async () => {
    const plain = await run('unpinned', { LD_LIBRARY_PATH: drivers, FAKE_CUDA: 'no-pinned' });
    expect(plain.result.paths.render).toEqual({ path: 'cuda (Fake GPU 0)', notUsed: expect.stringMatching(/^page-locked host memory: cuMemHostAlloc failed: CUDA_ERROR_OUT_OF_MEMORY/) });
    expect(plain.stderr).toMatch(/into ordinary \(not page-locked: cuMemHostAlloc failed/);
    expect(plain.frames).toBe(cpuFrames);
  }, 180_000);

  it.skipIf(!frameKernels() || !hasPtx)('a GPU that draws a checked frame differently is left for the CPU, and the video is the CPU\'s', async () => {
    const wrong = await run('wrong', { LD_LIBRARY_PATH: drivers, FAKE_CUDA: 'wrong-pixel' });
    expect(wrong.result.paths.render).toEqual({ path: 'native', notUsed: 'cuda: the GPU (Fake GPU 0) drew a frame differently from the CPU kernels' });
    expect(wrong.stderr).toMatch(/the GPU stopped drawing frames mid-run: the GPU \(Fake GPU 0\) drew a frame differently/);
    expect(wrong.frames).toBe(cpuFrames);
  }, 180_000);

  it.skipIf(!frameKernels() || !hasPtx)('a GPU that fails mid-run hands over to the CPU, naming the failed call, and the video is whole', async () => {
    const failed = await run('failed', { LD_LIBRARY_PATH: drivers, FAKE_CUDA: 'launch-fails' });
    expect(failed.result.paths.render).toEqual({ path: 'native', notUsed: 'cuda: the GPU failed to draw a frame: cuLaunchKernel (avatar_warp_map) failed: CUDA_ERROR_LAUNCH_FAILED' });
    expect(failed.frames).toBe(cpuFrames);
  }, 180_000);

  it('the doctor sees the GPU and says whether frames can be drawn on it', async () => {
    const r = await avatar(['--json', '--storage', join(dir, 'storage'), 'doctor'], { env: { LD_LIBRARY_PATH: drivers } });
    const report = JSON.parse(r.stdout) as { gpu: { available: boolean; devices?: { name: string; uuid?: string }[] }; native: { cudaRenderer: unknown } };
    expect(report.gpu).toMatchObject({ available: true, devices: [{ name: 'Fake GPU 0', uuid: 'GPU-00010203-0405-0607-0809-0a0b0c0d0e0f' }] });
    expect(report.native.cudaRenderer).toEqual(hasPtx ? { available: true, device: 'Fake GPU 0' } : { available: false, reason: expect.stringMatching(/^this build has no CUDA kernels/) });
    const plain = await avatar(['--storage', join(dir, 'storage'), 'doctor'], { env: { LD_LIBRARY_PATH: drivers } });
    expect(plain.stdout).toMatch(hasPtx ? /renderer on a GPU: yes \(Fake GPU 0;/ : /renderer on a GPU: no \(this build has no CUDA kernels/);
  }, 60_000);

  it('a GPU that cannot be opened leaves the engine on the CPU with the reason', async () => {
    const none = await run('none', { LD_LIBRARY_PATH: drivers, FAKE_CUDA: 'old-driver' });
    expect(none.result.paths.render.path).toBe(frameKernels() ? 'native' : 'ts');
    expect(none.result.paths.render.notUsed).toMatch(hasPtx ? /^cuda: the NVIDIA driver supports CUDA 12\.4; the renderer's kernels \(PTX by nvcc [\d.]+\) need a driver for CUDA [\d.]+ or newer/ : /^cuda: this build has no CUDA kernels/);
    expect(none.frames).toBe(cpuFrames);
  }, 180_000);
});
