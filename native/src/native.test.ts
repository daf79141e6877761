import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RawNvencReport, RawNvmlReport } from './index.js';
import { NVENC_HEADER, buildFakeDrivers, fakeNvencEncodes } from '../test/fake-driver/build.js';
import { createNvmlMemoryProvider, detectNvenc, frameKernels, loadNative, nativeStatus, snapshotFromNvml, visibleToCuda } from './index.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const binary = join(root, 'build', 'Release', 'avatar_native.node');
const hasCmake = spawnSync('cmake', ['--version']).status === 0;
const hasCc = spawnSync('cc', ['--version']).status === 0 && spawnSync('c++', ['--version']).status === 0;
// the CUDA renderer's tests need its kernels, which only a build with nvcc carries
const hasNvcc = [process.env['CUDACXX'], '/usr/local/cuda/bin/nvcc', 'nvcc'].some((c) => c && spawnSync(c, ['--version']).status === 0);
if (!hasNvcc) console.warn('CUDA renderer tests skipped: nvcc is not installed, so the addon carries no CUDA kernels');
if (!hasCmake) console.warn('native addon tests skipped: cmake is not installed, so the addon cannot be built');
if (!fakeNvencEncodes) console.warn('NVENC encoding tests skipped: the stand-in NVENC needs nvEncodeAPI.h and x264.h (apt-get install libffmpeg-nvenc-dev libx264-dev)');

describe.skipIf(!hasCmake)('native addon', () => {
  let buildLine = '';
  let buildSeconds = 0;
  beforeAll(async () => {
    const started = Date.now();
    const { stdout } = await run(process.execPath, [join(root, 'scripts', 'build-addon.mjs'), '--strict'], { timeout: 240_000 });
    buildSeconds = (Date.now() - started) / 1000;
    buildLine = stdout.trim();
  }, 240_000);

  it('compiles with build:addon and loads from the first candidate', () => {
    expect(buildLine).toMatch(/^native addon: built /);
    expect(buildSeconds).toBeLessThan(240);
    const loaded = loadNative();
    expect(loaded.ok).toBe(true);
    if (!loaded.ok) return;
    expect(loaded.path).toBe(binary);
    expect(loaded.addon.buildInfo.napiVersion).toBe(8);
    // The NVENC header is optional at build time; the addon says which way it was built.
    expect(loaded.addon.buildInfo.nvencHeader).toBe(existsSync('/usr/include/ffnvcodec/nvEncodeAPI.h'));
  });

  it('carries the renderer\'s CUDA kernels as PTX where nvcc is installed (a compile check of the shared kernel source)', async () => {
    const nvcc = [process.env['CUDACXX'], '/usr/local/cuda/bin/nvcc', 'nvcc'].some((c) => c && spawnSync(c, ['--version']).status === 0);
    const status = await nativeStatus();
    if (!nvcc) {
      expect(status.cudaKernels).toEqual({ status: expect.stringMatching(/^not built: nvcc not found/), modules: [] });
      return;
    }
    expect(buildLine).toMatch(/CUDA kernels: PTX \(compute_75\) by nvcc [\d.]+$/);
    expect(status.cudaKernels.modules.map((m) => [m.name, m.entries])).toEqual([
      ['warp', ['avatar_warp_map', 'avatar_warp_claim', 'avatar_warp_draw']],
      ['mouth', ['avatar_mouth']],
    ]);
    // no fused multiply-add anywhere: each rounding must match the CPU's
    const ptx = await readFile(join(root, 'build', 'generated', 'warp.ptx'), 'utf8') + await readFile(join(root, 'build', 'generated', 'mouth.ptx'), 'utf8');
    expect(ptx).not.toMatch(/\bfma\./);
    expect(ptx).toMatch(/atom\.global\.max\.u32/);
  });

  it('answers GPU memory plainly on this machine', async () => {
    const loaded = loadNative();
    if (!loaded.ok) throw new Error(loaded.reason);
    const raw = await loaded.addon.queryNvml();
    const snapshot = await createNvmlMemoryProvider().query();
    if (!raw.libraryFound) {
      expect(snapshot).toEqual({ available: false, reason: 'no GPU: libnvidia-ml.so.1 not found' });
    } else if (snapshot.available) {
      expect(snapshot.devices.length).toBeGreaterThan(0);
      for (const d of snapshot.devices) expect(d.totalMB).toBeGreaterThan(0);
    } else {
      expect(snapshot.reason).toMatch(/^no GPU: /);
    }
  });

  it('runs many queries at once without throwing', async () => {
    const provider = createNvmlMemoryProvider();
    expect(provider.name).toBe('nvml');
    const all = await Promise.all(Array.from({ length: 8 }, () => provider.query()));
    for (const s of all) expect(s).toEqual(all[0]);
  });

  it('says whether NVENC is usable, with a reason', async () => {
    const status = await detectNvenc();
    expect(typeof status.available).toBe('boolean');
    expect(status.reason.length).toBeGreaterThan(10);
    const loaded = loadNative();
    if (!loaded.ok) throw new Error(loaded.reason);
    const raw = await loaded.addon.probeNvenc();
    if (!raw.cudaFound) {
      expect(status).toEqual({ available: false, reason: 'no NVENC: libcuda.so.1 not found (no NVIDIA driver)', sessionTried: false });
    }
    expect(await detectNvenc()).toBe(status);
  });

  it('has the renderer\'s I420 warp: a whole-pixel move copies the photo\'s pixels exactly', () => {
    const kernels = frameKernels();
    if (!kernels) throw new Error('the built addon has no warpI420');
    const W = 64, H = 48;
    const src = new Uint8Array((W * H * 3) / 2);
    for (let i = 0; i < src.length; i++) src[i] = (i * 37 + (i >> 7)) & 255;
    const dst = new Uint8Array(src.length);
    // a square of two triangles, moved 4 px right and 2 px down
    const rest = Float64Array.from([10, 10, 40, 10, 40, 36, 10, 36]);
    const moved = rest.map((v, i) => v + (i % 2 === 0 ? 4 : 2));
    const triangles = Uint32Array.from([0, 1, 2, 0, 2, 3]);
    kernels.warpI420(src, dst, W, H, moved, rest, triangles, Uint32Array.from([0, 3]), 2);
    for (let y = 14; y <= 36; y++) for (let x = 16; x <= 42; x++) expect(dst[y * W + x]).toBe(src[(y - 2) * W + x - 4]);
    // chroma moved by half as much (2, 1) on its half-size grid
    const U = W * H;
    for (let y = 7; y <= 18; y++) for (let x = 8; x <= 21; x++) expect(dst[U + y * (W / 2) + x]).toBe(src[U + (y - 1) * (W / 2) + x - 2]);
    // outside the moved square nothing is written
    expect(dst[0]).toBe(0);
    expect(dst[47 * W + 63]).toBe(0);
  });

  it('refuses warp arguments that do not fit, before touching memory', () => {
    const kernels = frameKernels();
    if (!kernels) throw new Error('the built addon has no warpI420');
    const frame = new Uint8Array(96);
    const pts = new Float64Array(6);
    const tri = Uint32Array.from([0, 1, 2]);
    const active = Uint32Array.from([0]);
    const bad = (fn: () => void, kind: typeof TypeError | typeof RangeError, text: RegExp): void => {
      expect(fn).toThrow(kind);
      expect(fn).toThrow(text);
    };
    bad(() => kernels.warpI420(frame, frame, 7, 8, pts, pts, tri, active, 1), RangeError, /even/);
    bad(() => kernels.warpI420(frame, new Uint8Array(95), 8, 8, pts, pts, tri, active, 1), RangeError, /one I420 frame/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, pts, new Float64Array(4), tri, active, 1), RangeError, /differ in length/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, pts, pts, Uint32Array.from([0, 1, 3]), active, 1), RangeError, /does not exist/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, pts, pts, tri, Uint32Array.from([3]), 1), RangeError, /out of range/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, pts, pts, tri, active, 2), RangeError, /activeCount/);
    bad(() => kernels.warpI420(new Uint8Array(6), new Uint8Array(6), 2, 2, pts, pts, tri, active, 1), RangeError, /4\.\.16384/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, Float64Array.from([0, 0, 4, Number.NaN, 2, 2]), pts, tri, active, 1), RangeError, /finite/);
    bad(() => kernels.warpI420(frame, frame, 8, 8, pts, Float64Array.from([0, 0, 4, 1e7, 2, 2]), tri, active, 1), RangeError, /finite/);
    const wrong = (kernels.warpI420 as unknown as (...args: unknown[]) => void);
    bad(() => wrong(frame, frame, 8, 8, new Float32Array(6), pts, tri, active, 1), TypeError, /Float64Array/);
    bad(() => wrong(frame, frame, 8, 8), TypeError, /warpI420\(/);
  });

  it('refuses inner-mouth arguments that do not fit, before touching memory', () => {
    const kernels = frameKernels();
    if (!kernels) throw new Error('the built addon has no frame kernels');
    const frame = new Uint8Array(96);
    const outline = Float64Array.from([2, 2, 5, 2, 5, 5, 2, 5]);
    // the block by name (its layout is the addon's own list), all but the box the same each time
    const values: Record<string, number> = { centerX: 3.5, top: 2, bottom: 5, gapHeight: 3, mouthW: 3, teethH: 1, archHalf: 1.5, mouthWidth: 8, uxx: 1, uyy: 1, teethR: 220, teethG: 215, teethB: 200, cavityR: 60, cavityG: 20, cavityB: 20, softness: 0.7 };
    const params = (box: number[]): Float64Array => Float64Array.from(kernels.mouthParamFields, (name, i) => (i < 4 ? box[i]! : values[name] ?? 0));
    const bad = (fn: () => void, kind: typeof TypeError | typeof RangeError, text: RegExp): void => {
      expect(fn).toThrow(kind);
      expect(fn).toThrow(text);
    };
    bad(() => kernels.mouthI420(frame, 8, 8, outline, params([0, 8, 0, 7])), RangeError, /inside the frame/);
    bad(() => kernels.mouthI420(frame, 8, 8, outline, params([0, 7, 0.5, 7])), RangeError, /whole pixels/);
    bad(() => kernels.mouthI420(frame, 8, 8, outline, params([3, 2, 0, 7])), RangeError, /inside the frame/);
    bad(() => kernels.mouthI420(frame, 8, 8, Float64Array.from([1, 1, 2, 2]), params([0, 7, 0, 7])), RangeError, /3 to 2048 points/);
    bad(() => kernels.mouthI420(frame, 8, 8, Float64Array.from([1, 1, 2, Number.NaN, 3, 3]), params([0, 7, 0, 7])), RangeError, /finite/);
    bad(() => kernels.mouthI420(frame, 8, 8, outline, Float64Array.from([0, 7, 0, 7])), RangeError, new RegExp(`${kernels.mouthParamFields.length} numbers`));
    expect(kernels.mouthParamFields.slice(0, 4)).toEqual(['x0', 'x1', 'y0', 'y1']);
    bad(() => kernels.mouthI420(new Uint8Array(95), 8, 8, outline, params([0, 7, 0, 7])), RangeError, /one I420 frame/);
    // figures the kernel divides by are checked too
    const soft = params([0, 7, 0, 7]);
    soft[kernels.mouthParamFields.indexOf('softness')] = 0;
    bad(() => kernels.mouthI420(frame, 8, 8, outline, soft), RangeError, /softness above 0/);
    // a box inside the frame draws the mouth there and nowhere else
    kernels.mouthI420(frame, 8, 8, outline, params([1, 6, 1, 6]));
    expect(frame[0]).toBe(0);
    expect(frame[3 * 8 + 3]).toBeGreaterThan(0);
  });

  it('reports its status for doctor', async () => {
    const status = await nativeStatus();
    expect(status.built).toBe(true);
    expect(status.detail).toBe(`loaded ${binary}`);
    expect(status.build?.napiVersion).toBe(8);
    expect(status.frameKernels).toEqual(['warpI420', 'mouthI420']);
    if (!status.nvml.libraryFound) {
      expect(status.nvml).toEqual({
        libraryFound: false,
        ok: false,
        reason: 'no GPU: libnvidia-ml.so.1 not found',
        driverVersion: null,
        nvmlVersion: null,
        deviceCount: 0,
      });
    }
  });
});

describe('without a usable binary', () => {
  const dir = mkdtempSync(join(tmpdir(), 'avatar-native-'));
  const missing = join(dir, 'missing.node');
  const corrupt = join(dir, 'corrupt.node');
  writeFileSync(corrupt, 'not a shared object');
  const options = { candidates: [missing, corrupt] };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('collects why each candidate failed', () => {
    const loaded = loadNative(options.candidates);
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.reason).toContain(`${missing}: not found`);
    expect(loaded.reason).toMatch(/corrupt\.node: .*(invalid ELF header|file too short)/);
    expect(loaded.reason).toContain('npm run build:addon -w native');
  });

  it('degrades every entry point to a plain answer', async () => {
    const snapshot = await createNvmlMemoryProvider(options).query();
    expect(snapshot.available).toBe(false);
    if (!snapshot.available) expect(snapshot.reason).toMatch(/^no GPU: native addon not built \(.*missing\.node: not found/);
    const nvenc = await detectNvenc(options);
    expect(nvenc.available).toBe(false);
    expect(nvenc.reason).toMatch(/^no NVENC: native addon not built \(/);
    const status = await nativeStatus(options);
    expect(status.built).toBe(false);
    expect(status.build).toBeNull();
    expect(status.frameKernels).toEqual([]);
    expect(status.detail).toContain('not found');
    expect(frameKernels(options)).toBeUndefined();
  });
});

// Stand-in driver libraries that follow the NVML, CUDA driver and NVENC C ABIs let the loaded paths
// (device listing, error strings, the encode session and its clean-up) run on a machine without a GPU.
// They replace the driver, not the addon: the addon binary under test is the real one.
describe.skipIf(!hasCmake || !hasCc)('addon against stand-in driver libraries', () => {
  const dir = mkdtempSync(join(tmpdir(), 'avatar-fake-driver-'));
  const cudaOnly = join(dir, 'cuda-only');
  let nvencHeader = false;

  beforeAll(async () => {
    await run(process.execPath, [join(root, 'scripts', 'build-addon.mjs'), '--strict'], { timeout: 240_000 });
    const loaded = loadNative();
    nvencHeader = loaded.ok && loaded.addon.buildInfo.nvencHeader;
    await buildFakeDrivers(dir, { nvenc: nvencHeader });
    mkdirSync(cudaOnly);
    mkdirSync(join(dir, 'empty'));
    copyFileSync(join(dir, 'libcuda.so.1'), join(cudaOnly, 'libcuda.so.1'));
  }, 240_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The loader's search path is fixed at process start, so each case runs in a child process.
  async function inChild<T>(call: string, env: Record<string, string>, libDir = dir, nodeArgs: string[] = []): Promise<{ result: T; stderr: string }> {
    const script = `const a = require(${JSON.stringify(binary)}); ${call}.then((r) => process.stdout.write(JSON.stringify(r)));`;
    const { stdout, stderr } = await run(process.execPath, [...nodeArgs, '-e', script], {
      env: { ...process.env, LD_LIBRARY_PATH: libDir, ...env },
      timeout: 30_000,
    });
    return { result: JSON.parse(stdout) as T, stderr };
  }
  const count = (text: string, needle: string) => text.split(needle).length - 1;

  it('lists readable GPUs in MB and names the unreadable one', async () => {
    const { result, stderr } = await inChild<RawNvmlReport>('a.queryNvml()', { FAKE_NVML: 'two-gpus' });
    expect(result.ok).toBe(true);
    expect(result.driverVersion).toBe('999.1.2');
    expect(result.devices[1]?.error).toBe('nvmlDeviceGetMemoryInfo: Insufficient Permissions (4)');
    expect(count(stderr, 'fake-nvml: shutdown')).toBe(1);
    expect(snapshotFromNvml(result)).toEqual({
      available: true,
      source: 'nvml (driver 999.1.2)',
      devices: [{ index: 0, name: 'Fake GPU 0', uuid: 'GPU-00010203-0405-0607-0809-0a0b0c0d0e0f', totalMB: 81920, usedMB: 1536, freeMB: 80384 }],
    });
  });

  it("passes NVML's own error string through when init fails", async () => {
    const { result, stderr } = await inChild<RawNvmlReport>('a.queryNvml()', { FAKE_NVML: 'no-driver' });
    expect(result).toMatchObject({ ok: false, libraryFound: true, reason: 'no GPU: nvmlInit: Driver Not Loaded (9)' });
    expect(stderr).not.toContain('shutdown');
    expect(snapshotFromNvml(result)).toEqual({ available: false, reason: 'no GPU: nvmlInit: Driver Not Loaded (9)' });
  });

  it('keeps the JS thread free while NVML initialises', async () => {
    const call = `(() => { let ticks = 0; const t = setInterval(() => ticks++, 10);
      return a.queryNvml().then(() => { clearInterval(t); return ticks; }); })()`;
    const { result } = await inChild<number>(call, { FAKE_NVML_INIT_MS: '400' });
    expect(result).toBeGreaterThanOrEqual(5);
  });

  it('finds no NVENC without the encode library, without trying a session', async () => {
    const { result } = await inChild<RawNvencReport>('a.probeNvenc()', {}, cudaOnly);
    expect(result).toMatchObject({ available: false, cudaFound: true, encodeLibraryFound: false, sessionTried: false });
    expect(result.reason).toBe('no NVENC: libnvidia-encode.so.1 not found');
  });

  it.each([
    ['unsupported', false, /could not open an encode session \(nvEncOpenEncodeSessionEx returned NV_ENC_ERR_UNSUPPORTED_DEVICE/],
    ['hevc-only', false, /does not offer H\.264/],
    ['h264', true, /^NVENC H\.264 encode session opened on Fake GPU 0$/],
  ])('decides NVENC by opening a session (%s)', async (mode, available, reason) => {
    if (!nvencHeader) {
      const { result } = await inChild<RawNvencReport>('a.probeNvenc()', { FAKE_NVENC: mode });
      expect(result).toMatchObject({ available: false, sessionTried: false });
      return;
    }
    const { result, stderr } = await inChild<RawNvencReport>('a.probeNvenc()', { FAKE_NVENC: mode });
    expect(result).toMatchObject({ available, sessionTried: true, device: 'Fake GPU 0' });
    expect(result.reason).toMatch(reason);
    expect(count(stderr, 'fake-cuda: retain')).toBe(1);
    expect(count(stderr, 'fake-cuda: release')).toBe(1);
    expect(count(stderr, 'fake-nvenc: open')).toBe(count(stderr, 'fake-nvenc: destroy'));
  });

  // The CUDA renderer: the addon's driver calls against the stand-in, whose launches run the kernels'
  // thread functions on the CPU. A frame must equal the CPU kernels' (the photo, the warp, the mouth).
  const cudaScript = (opts: { uuid?: string; frames?: number; close?: boolean } = {}) => `(async () => {
    const W = 64, H = 48, frame = W * H * 3 / 2;
    const photo = new Uint8Array(frame);
    for (let i = 0; i < frame; i++) photo[i] = (i * 37 + (i >> 7) * 11) & 255;
    // a fan of triangles around the middle, two of them overlapping, corners moved a little
    const rest = new Float64Array([32, 24, 8, 6, 56, 6, 60, 40, 6, 42, 30, 2, 20, 30]);
    const triangles = new Uint32Array([0, 1, 2, 0, 2, 3, 0, 3, 4, 0, 4, 1, 6, 1, 3, 5, 2, 4]);
    const fields = a.mouthParamFields;
    const params = new Float64Array(fields.length);
    const set = { x0: 24, x1: 41, y0: 20, y1: 31, centerX: 32, top: 22, bottom: 30, gapHeight: 8, mouthW: 16, teethH: 3, lowerTeethH: 2, archHalf: 8,
      mouthWidth: 16, uxx: 1, uxy: 0, uyx: 0, uyy: 1, teethR: 230, teethG: 225, teethB: 210, cavityR: 70, cavityG: 20, cavityB: 25,
      tongueR: 180, tongueG: 80, tongueB: 80, tongue: 0.6, softness: 1, grain: 2, grainScale: 1 };
    fields.forEach((f, i) => { params[i] = set[f]; });
    const outline = new Float64Array([24, 26, 28, 22, 36, 22, 41, 26, 36, 31, 28, 31]);
    const opened = a.openCudaRenderer(photo, W, H, triangles, rest, ${JSON.stringify(opts.uuid ?? '')});
    if (!opened.ok) return { opened };
    const same = [];
    try {
      for (let f = 0; f < ${opts.frames ?? 4}; f++) {
        const moved = rest.map((v, i) => v + ((i * 7 + f * 3) % 5) - 2);
        const active = new Uint32Array([0, 3, 6, 9, 12, 15]);
        const count = 6 - (f % 3);
        const mouth = f % 2 === 0;
        const cpu = photo.slice();
        a.warpI420(photo, cpu, W, H, moved, rest, triangles, active, count);
        if (mouth) a.mouthI420(cpu, W, H, outline, params);
        const gpu = new Uint8Array(frame);
        opened.renderer.frame(moved, active, count, mouth ? outline : null, mouth ? params : null, gpu);
        same.push(Buffer.compare(Buffer.from(cpu), Buffer.from(gpu)) === 0 && Buffer.compare(Buffer.from(cpu), Buffer.from(photo)) !== 0);
      }
    } catch (error) {
      return { device: opened.device, same, error: error.message };
    } finally {
      ${opts.close === false ? '' : 'opened.renderer.close();'}
    }
    return { device: opened.device, same };
  })()`;
  const balanced = (stderr: string): void => {
    expect(count(stderr, 'fake-cuda: retain')).toBe(count(stderr, 'fake-cuda: release'));
    expect(count(stderr, 'fake-cuda: alloc')).toBe(count(stderr, 'fake-cuda: free'));
    expect(count(stderr, 'fake-cuda: module load')).toBe(count(stderr, 'fake-cuda: module unload'));
  };

  it.skipIf(!hasNvcc)('draws frames on the (stand-in) GPU that equal the CPU kernels\' byte for byte, and frees everything', async () => {
    const { result, stderr } = await inChild<{ device: string; same: boolean[] }>(cudaScript({ frames: 6 }), {});
    expect(result).toEqual({ device: 'Fake GPU 0', same: [true, true, true, true, true, true] });
    expect(count(stderr, 'fake-cuda: alloc')).toBe(9);
    balanced(stderr);
    // a renderer dropped without close() is freed when collected
    const dropped = await inChild<{ same: boolean[] }>(`${cudaScript({ frames: 1, close: false })}.then(async (r) => { global.gc(); await new Promise((t) => setTimeout(t, 50)); global.gc(); return r; })`, {}, dir, ['--expose-gc']);
    expect(dropped.result.same).toEqual([true]);
    balanced(dropped.stderr);
  });

  it.skipIf(!hasNvcc)('opens the GPU the host named by UUID, and says so when CUDA has none with it', async () => {
    const named = await inChild<{ device: string }>(cudaScript({ uuid: 'GPU-00010203-0405-0607-0809-0a0b0c0d0e0f', frames: 1 }), {});
    expect(named.result.device).toBe('Fake GPU 0');
    const missing = await inChild<{ opened: { ok: boolean; reason: string } }>(cudaScript({ uuid: 'GPU-ffffffff-0405-0607-0809-0a0b0c0d0e0f' }), {});
    expect(missing.result.opened).toEqual({ ok: false, reason: 'no CUDA device has the UUID GPU-ffffffff-0405-0607-0809-0a0b0c0d0e0f (hidden by CUDA_VISIBLE_DEVICES?)' });
    balanced(missing.stderr);
  });

  it.skipIf(!hasNvcc).each([
    ['no-device', 'CUDA reports no device'],
    // a CUDA 12.4 driver (common on H100 machines) cannot compile PTX from nvcc 13
    ['old-driver', /^the NVIDIA driver supports CUDA 12\.4; the renderer's kernels \(PTX by nvcc 1[3-9]\.\d\) need a driver for CUDA 1[3-9]\.\d or newer/],
    ['bad-ptx', 'cuModuleLoadData (warp.cu\'s PTX) failed: CUDA_ERROR_INVALID_PTX'],
    ['oom', /^cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY \(\d+ KiB\)$/],
  ])('answers why it cannot draw on the GPU (%s), leaving nothing allocated', async (mode, reason) => {
    const { result, stderr } = await inChild<{ opened: { ok: boolean; reason: string } }>(cudaScript(), { FAKE_CUDA: mode });
    expect(result.opened.ok).toBe(false);
    expect(result.opened.reason).toMatch(reason);
    balanced(stderr);
  });

  it.skipIf(!hasNvcc)('names the failed call when the GPU fails mid-run, and still frees everything', async () => {
    const { result, stderr } = await inChild<{ same: boolean[]; error: string }>(cudaScript(), { FAKE_CUDA: 'launch-fails' });
    expect(result.same).toEqual([true, true]);
    expect(result.error).toBe('the GPU failed to draw a frame: cuLaunchKernel (avatar_warp_map) failed: CUDA_ERROR_LAUNCH_FAILED');
    balanced(stderr);
  });

  it.skipIf(!hasNvcc)('opens the renderer off the JavaScript thread, which keeps running meanwhile', async () => {
    const script = `(async () => {
      const W = 8, H = 6, photo = new Uint8Array(W * H * 3 / 2).fill(90);
      let ticks = 0;
      const timer = setInterval(() => { ticks++; }, 10);
      const started = Date.now();
      const opened = await a.openCudaRendererAsync(photo, W, H, new Uint32Array([0, 1, 2]), new Float64Array([1, 1, 6, 1, 1, 4]), '');
      clearInterval(timer);
      const took = Date.now() - started;
      // it draws like one opened on this thread
      const out = new Uint8Array(W * H * 3 / 2);
      opened.renderer.frame(new Float64Array([1.5, 1, 6, 2, 1, 4.5]), new Uint32Array([0]), 1, null, null, out);
      const cpu = photo.slice();
      a.warpI420(photo, cpu, W, H, new Float64Array([1.5, 1, 6, 2, 1, 4.5]), new Float64Array([1, 1, 6, 1, 1, 4]), new Uint32Array([0, 1, 2]), new Uint32Array([0]), 1);
      opened.renderer.close();
      const missing = await a.openCudaRendererAsync(photo, W, H, new Uint32Array([0, 1, 2]), new Float64Array([1, 1, 6, 1, 1, 4]), 'GPU-ffffffff-0405-0607-0809-0a0b0c0d0e0f');
      return { ok: opened.ok, device: opened.device, took, ticks, same: Buffer.compare(Buffer.from(cpu), Buffer.from(out)) === 0, missing };
    })()`;
    const { result, stderr } = await inChild<{ ok: boolean; device: string; took: number; ticks: number; same: boolean; missing: { ok: boolean; reason: string } }>(script, { FAKE_CUDA: 'slow-context' });
    expect(result).toMatchObject({ ok: true, device: 'Fake GPU 0', same: true });
    // the context took 0.4 s to retain, and the event loop went on: its timer fired
    expect(result.took).toBeGreaterThanOrEqual(380);
    expect(result.ticks).toBeGreaterThan(10);
    expect(result.missing).toEqual({ ok: false, reason: 'no CUDA device has the UUID GPU-ffffffff-0405-0607-0809-0a0b0c0d0e0f (hidden by CUDA_VISIBLE_DEVICES?)' });
    balanced(stderr);
  });

  // Frames copied into page-locked host memory: equal to the CPU's, and the memory (with the context it
  // was made on) freed when the buffers are collected, even after the renderer is closed.
  const pinnedScript = (release: boolean) => `(async () => {
    const W = 8, H = 6, photo = new Uint8Array(W * H * 3 / 2).map((_, i) => (i * 29) & 255);
    const rest = new Float64Array([1, 1, 6, 1, 1, 4]), triangles = new Uint32Array([0, 1, 2]);
    const opened = a.openCudaRenderer(photo, W, H, triangles, rest, '');
    if (!opened.ok) return { opened };
    let ring;
    try { ring = opened.renderer.hostBuffers(3); } catch (error) { opened.renderer.close(); return { error: error.message }; }
    const moved = new Float64Array([1.5, 1, 6, 2, 1, 4.5]), active = new Uint32Array([0]);
    const cpu = photo.slice();
    a.warpI420(photo, cpu, W, H, moved, rest, triangles, active, 1);
    opened.renderer.frame(moved, active, 1, null, null, ring[1]);
    const same = Buffer.compare(Buffer.from(cpu), Buffer.from(ring[1])) === 0;
    opened.renderer.close();
    // still readable after close: ffmpeg's pipe may be writing it
    const sizes = ring.map((b) => b.length);
    let after;
    if (${release}) {
      // freed at once, though still referenced: detached, zero bytes long
      opened.renderer.releaseHostBuffers();
      after = ring.map((b) => b.length);
    } else {
      ring = undefined;
      global.gc(); await new Promise((t) => setTimeout(t, 50)); global.gc(); await new Promise((t) => setTimeout(t, 50));
    }
    process.stderr.write('script: end\\n');
    return { same, sizes, after };
  })()`;

  it.skipIf(!hasNvcc).each([
    ['when collected', false],
    ['at once when released', true],
  ])('hands out page-locked host buffers that frames are copied into and that are freed %s', async (_how, release) => {
    const { result, stderr } = await inChild<{ same: boolean; sizes: number[]; after?: number[] }>(pinnedScript(release), {}, dir, ['--expose-gc']);
    expect(result).toEqual({ same: true, sizes: [72, 72, 72], ...(release && { after: [0, 0, 0] }) });
    // freed before the script ended (not by the environment's teardown), and the context with the last of them
    const end = stderr.indexOf('script: end');
    expect(count(stderr.slice(0, end), 'fake-cuda: host alloc')).toBe(3);
    expect(count(stderr.slice(0, end), 'fake-cuda: host free')).toBe(3);
    expect(count(stderr.slice(0, end), 'fake-cuda: release')).toBe(1);
    expect(stderr.slice(0, end).lastIndexOf('fake-cuda: release')).toBeGreaterThan(stderr.lastIndexOf('fake-cuda: host free'));
    balanced(stderr);
  });

  it.skipIf(!hasNvcc)('says why when no page-locked memory can be had, keeping none', async () => {
    const { result, stderr } = await inChild<{ error: string }>(pinnedScript(false), { FAKE_CUDA: 'no-pinned' }, dir, ['--expose-gc']);
    expect(result.error).toMatch(/^cuMemHostAlloc failed: CUDA_ERROR_OUT_OF_MEMORY \(0 KiB\)$/);
    expect(count(stderr, 'fake-cuda: host alloc')).toBe(0);
    balanced(stderr);
  });

  // The NVENC encoder against the stand-in NVENC, which encodes what it is given with x264: the bytes
  // that come back must decode (ffmpeg) to the frames that went in, and every acquire must be released.
  const nvencScript = (opts: { width?: number; frames?: number; fromRenderer?: boolean } = {}) => `(async () => {
    const W = ${opts.width ?? 64}, H = 48, size = W * H * 3 / 2;
    const opened = a.openNvencEncoder(W, H, 25, 20, 4, '');
    if (!opened.ok) return { opened };
    const chunks = [], frames = [];
    let renderer;
    try {
      ${opts.fromRenderer ? `
      const photo = new Uint8Array(size).map((_, i) => i < W * H ? 60 + ((i % W) * 2 + (i / W | 0)) % 140 : 128);
      const rest = new Float64Array([4, 4, 60, 4, 4, 44, 60, 44]), triangles = new Uint32Array([0, 1, 2, 1, 3, 2]);
      const r = a.openCudaRenderer(photo, W, H, triangles, rest, '');
      if (!r.ok) return { renderer: r.reason };
      renderer = r.renderer;` : ''}
      for (let f = 0; f < ${opts.frames ?? 8}; f++) {
        const frame = new Uint8Array(size);
        if (renderer) {
          const moved = new Float64Array([4 + f, 4, 60, 4 + f, 4, 44, 60 - f, 44]), active = new Uint32Array([0, 3]);
          // the pose's bytes for the comparison, then another pose copied back (the GPU surely holds that),
          // then the pose again left on the GPU: what is encoded must be the last drawing
          renderer.frame(moved, active, 2, null, null, frame);
          renderer.frame(moved.map((v) => v + 3), active, 2, null, null, new Uint8Array(size));
          renderer.frame(moved, active, 2, null, null, null);
          chunks.push(opened.encoder.encodeFrom(renderer));
        } else {
          for (let i = 0; i < size; i++) frame[i] = i < W * H ? 40 + ((i % W) + f * 3 + (i / W | 0)) % 160 : 128 + ((f * 5) % 20);
          chunks.push(opened.encoder.encode(frame));
        }
        frames.push(Buffer.from(frame).toString('base64'));
      }
      chunks.push(opened.encoder.finish());
    } catch (error) {
      return { device: opened.device, encoded: chunks.length, error: error.message };
    } finally {
      opened.encoder.close();
      renderer?.close();
    }
    return { device: opened.device, sizes: chunks.map((c) => c.length), stream: Buffer.concat(chunks).toString('base64'), frames };
  })()`;
  const nvencBalanced = (stderr: string): void => {
    balanced(stderr);
    for (const [made, undone] of [['open', 'destroy'], ['register', 'unregister'], ['map', 'unmap'], ['lock', 'unlock'], ['bitstream create', 'bitstream destroy']]) {
      expect(count(stderr, `fake-nvenc: ${made}\n`), made).toBe(count(stderr, `fake-nvenc: ${undone}\n`));
    }
  };
  /** Decodes an H.264 elementary stream to I420 frames. */
  const decodeH264 = (stream: Buffer, width: number, height: number): Buffer[] => {
    const file = join(dir, `stream-${Date.now()}.h264`);
    writeFileSync(file, stream);
    const r = spawnSync('ffmpeg', ['-v', 'error', '-f', 'h264', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-'], { maxBuffer: 1 << 26 });
    expect(r.status, r.stderr?.toString()).toBe(0);
    const size = (width * height * 3) / 2;
    return Array.from({ length: r.stdout.length / size }, (_, i) => r.stdout.subarray(i * size, (i + 1) * size));
  };
  const meanDifference = (a: Buffer, b: Buffer): number => {
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] as number) - (b[i] as number));
    return sum / a.length;
  };
  const hasFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0;

  it.skipIf(!fakeNvencEncodes || !hasFfmpeg)('encodes frames from host memory on NVENC into an H.264 stream that decodes to them, and releases everything', async () => {
    const { result, stderr } = await inChild<{ device: string; sizes: number[]; stream: string; frames: string[] }>(nvencScript(), { FAKE_NVENC: 'h264' });
    expect(result.device).toBe('Fake GPU 0');
    // a picture per frame, none held back; the end of stream adds nothing
    expect(result.sizes.slice(0, 8).every((n) => n > 0)).toBe(true);
    expect(result.sizes[8]).toBe(0);
    // the settings the encoder asked for: the size, a key frame every 4 pictures, the quality
    expect(stderr).toContain('fake-nvenc: init 64x48 gop 4 cq 20');
    expect(count(stderr, 'fake-nvenc: eos')).toBe(1);
    const decoded = decodeH264(Buffer.from(result.stream, 'base64'), 64, 48);
    expect(decoded).toHaveLength(8);
    decoded.forEach((frame, i) => expect(meanDifference(frame, Buffer.from(result.frames[i] as string, 'base64'))).toBeLessThan(3));
    nvencBalanced(stderr);
  });

  it.skipIf(!fakeNvencEncodes || !hasFfmpeg || !hasNvcc)('encodes the CUDA renderer\'s frames from GPU memory, the frame last drawn there', async () => {
    const { result, stderr } = await inChild<{ sizes: number[]; stream: string; frames: string[] }>(nvencScript({ fromRenderer: true, frames: 6 }), { FAKE_NVENC: 'h264' });
    const decoded = decodeH264(Buffer.from(result.stream, 'base64'), 64, 48);
    expect(decoded).toHaveLength(6);
    // the frames the renderer drew (also copied back here only to compare) are the ones encoded
    decoded.forEach((frame, i) => expect(meanDifference(frame, Buffer.from(result.frames[i] as string, 'base64'))).toBeLessThan(3));
    expect(new Set(result.frames).size).toBe(6);
    // two copies to the host per frame, both for the comparison: none for the encoder
    expect(count(stderr, 'fake-cuda: to host')).toBe(12);
    nvencBalanced(stderr);
  });

  // (decided when the tests are collected: the header, which the addon is built with where it exists)
  const nvencHeaderFile = existsSync(NVENC_HEADER);

  it.skipIf(!fakeNvencEncodes || !hasFfmpeg)('encodes on the thread pool while the next frame is staged, in order, refusing a third frame before the first is done', async () => {
    const script = `(async () => {
      const W = 64, H = 48, size = W * H * 3 / 2;
      const opened = a.openNvencEncoder(W, H, 25, 20, 4, '');
      const encoder = opened.encoder;
      const frames = [], chunks = [], refusals = [];
      let running;
      for (let f = 0; f < 10; f++) {
        const frame = new Uint8Array(size).map((_, i) => i < W * H ? 30 + ((i % W) * 2 + f * 9 + (i / W | 0)) % 180 : 128);
        frames.push(Buffer.from(frame).toString('base64'));
        // staged while the frame before is encoded on the thread pool
        const slot = encoder.stage(frame);
        if (running) {
          try { encoder.stage(frame); } catch (error) { refusals.push(error.message.split(':')[0]); }
          try { encoder.encodeSlot(slot); } catch (error) { refusals.push(error.message.split(':')[0]); }
          chunks.push(await running);
        }
        running = encoder.encodeSlot(slot);
      }
      chunks.push(await running);
      // out of order: the newer of two staged frames is refused
      const first = encoder.stage(new Uint8Array(size)), second = encoder.stage(new Uint8Array(size));
      let order = '';
      try { encoder.encodeSlot(second); } catch (error) { order = error.message; }
      await encoder.encodeSlot(first);
      await encoder.encodeSlot(second);
      chunks.push(encoder.finish());
      encoder.close();
      // closed while an encode runs: freed once it is done
      const other = a.openNvencEncoder(W, H, 25, 20, 4, '').encoder;
      const late = other.encodeSlot(other.stage(new Uint8Array(size)));
      other.close();
      const lateBytes = (await late).length;
      process.stderr.write('script: closed\\n');
      return { stream: Buffer.concat(chunks.slice(0, 10)).toString('base64'), frames, refusals, order, lateBytes };
    })()`;
    const { result, stderr } = await inChild<{ stream: string; frames: string[]; refusals: string[]; order: string; lateBytes: number }>(script, { FAKE_NVENC: 'h264' });
    // each time: a third frame refused, and an encode while another runs
    expect(result.refusals).toEqual(Array(9).fill(['stage', 'encodeSlot']).flat());
    expect(result.order).toBe('encodeSlot: an older staged frame must be encoded first');
    const decoded = decodeH264(Buffer.from(result.stream, 'base64'), 64, 48);
    expect(decoded).toHaveLength(10);
    decoded.forEach((frame, i) => expect(meanDifference(frame, Buffer.from(result.frames[i] as string, 'base64'))).toBeLessThan(3));
    expect(result.lateBytes).toBeGreaterThan(0);
    // the session closed during its encode went once the picture was out
    const tail = stderr.slice(stderr.lastIndexOf('fake-nvenc: open'));
    expect(tail.indexOf('fake-nvenc: destroy')).toBeGreaterThan(tail.lastIndexOf('fake-nvenc: unlock'));
    expect(tail.indexOf('fake-nvenc: destroy')).toBeLessThan(tail.indexOf('script: closed'));
    nvencBalanced(stderr);
  });

  it.skipIf(!fakeNvencEncodes)('a worker thread stopped while its frame is encoded on the thread pool takes nothing down with it', async () => {
    const script = `(async () => {
      const { Worker } = require('node:worker_threads');
      const code = \`
        const a = require(\${JSON.stringify(${JSON.stringify(binary)})});
        const { encoder } = a.openNvencEncoder(64, 48, 25, 20, 4, '');
        encoder.encodeSlot(encoder.stage(new Uint8Array(4608)));
        require('node:worker_threads').parentPort.postMessage('encoding');
      \`;
      const worker = new Worker(code, { eval: true });
      await new Promise((resolve) => worker.once('message', resolve));
      await worker.terminate();
      return { alive: true };
    })()`;
    const { result } = await inChild<{ alive: boolean }>(script, { FAKE_NVENC: 'h264' });
    expect(result).toEqual({ alive: true });
  });

  it.skipIf(!nvencHeaderFile).each([
    ['unsupported', /^Fake GPU 0 could not open an encode session \(nvEncOpenEncodeSessionEx returned NV_ENC_ERR_UNSUPPORTED_DEVICE/],
    ['hevc-only', /^the encoder on Fake GPU 0 does not offer H\.264$/],
    ['old-api', /^the driver supports NVENC API 9\.0, the addon needs \d+\.\d+$/],
    ['init-fails', /^nvEncInitializeEncoder returned NV_ENC_ERR_OUT_OF_MEMORY \(\d+\)/],
  ])('says why NVENC cannot encode (%s), keeping nothing', async (mode, reason) => {
    const { result, stderr } = await inChild<{ opened: { ok: boolean; reason: string } }>(nvencScript(), { FAKE_NVENC: mode });
    expect(result.opened.ok).toBe(false);
    expect(result.opened.reason).toMatch(reason);
    nvencBalanced(stderr);
  });

  it.skipIf(!nvencHeaderFile)('refuses a width NVENC cannot take before opening anything', async () => {
    const { result, stderr } = await inChild<{ opened: { ok: boolean; reason: string } }>(nvencScript({ width: 66 }), { FAKE_NVENC: 'h264' });
    expect(result.opened.reason).toBe('NVENC needs a frame width that is a multiple of 4 and an even height, at least 16x16; the frames are 66x48');
    nvencBalanced(stderr);
  });

  it.skipIf(!fakeNvencEncodes)('names the failed call when a picture fails, and still releases everything', async () => {
    const { result, stderr } = await inChild<{ encoded: number; error: string }>(nvencScript(), { FAKE_NVENC: 'encode-fails' });
    expect(result.encoded).toBe(4);
    expect(result.error).toMatch(/^NVENC failed to encode a frame: nvEncEncodePicture returned NV_ENC_ERR_ENCODER_BUSY \(\d+\)/);
    nvencBalanced(stderr);
  });

  // The program carried to a machine with a real GPU (test/gpu-check): run here against the stand-ins,
  // it must open everything, find every frame equal to the CPU's, and encode.
  it.skipIf(!hasNvcc)('gpu-check, the program for a real GPU, runs its checks against the stand-ins', async () => {
    const program = join(dir, 'gpu-check');
    await run('bash', [join(root, 'test', 'gpu-check', 'build.sh'), program], { timeout: 120_000 });
    const { stdout } = await run(program, ['--width', '64', '--height', '48', '--frames', '6'], { env: { ...process.env, LD_LIBRARY_PATH: dir, FAKE_NVENC: 'h264' }, timeout: 60_000 });
    const report = JSON.parse(stdout) as { renderer: { opened: boolean }; parity: { frames: number; equal: number; changedFromPhoto: number }; encoder: { opened: boolean; ok?: boolean }; memory: Record<string, number> };
    expect(report.renderer.opened).toBe(true);
    expect(report.parity).toMatchObject({ frames: 6, equal: 6, changedFromPhoto: 6 });
    expect(report.encoder).toMatchObject(fakeNvencEncodes ? { opened: true, ok: true } : { opened: false });
    expect(report.memory['usedMiBAfter']).toBe(report.memory['usedMiBBefore']);
  }, 180_000);

  it('says there is no driver where libcuda.so.1 is missing', async () => {
    const { result } = await inChild<{ opened: { ok: boolean; reason: string } }>(cudaScript(), {}, join(dir, 'empty'));
    expect(result.opened).toEqual({ ok: false, reason: 'libcuda.so.1 not found (no NVIDIA driver)' });
  });
});

describe('visibleToCuda', () => {
  const two = {
    available: true as const, source: 'nvml',
    devices: [
      { index: 0, name: 'A', uuid: 'GPU-aaaa1111-0000-0000-0000-000000000000', totalMB: 80000, usedMB: 0, freeMB: 80000 },
      { index: 1, name: 'B', uuid: 'GPU-bbbb2222-0000-0000-0000-000000000000', totalMB: 80000, usedMB: 0, freeMB: 80000 },
    ],
  };
  it('keeps the GPUs CUDA_VISIBLE_DEVICES names by UUID (or prefix), by index only in PCI order, none for -1', () => {
    const names = (env: NodeJS.ProcessEnv) => { const s = visibleToCuda(two, env); return s.available ? s.devices.map((d) => d.name) : s.reason; };
    expect(names({})).toEqual(['A', 'B']);
    expect(names({ CUDA_VISIBLE_DEVICES: 'GPU-bbbb' })).toEqual(['B']);
    expect(names({ CUDA_VISIBLE_DEVICES: '1' })).toEqual(['A', 'B']);
    expect(names({ CUDA_VISIBLE_DEVICES: '1', CUDA_DEVICE_ORDER: 'PCI_BUS_ID' })).toEqual(['B']);
    expect(names({ CUDA_VISIBLE_DEVICES: '-1' })).toBe('no GPU: CUDA_VISIBLE_DEVICES ("-1") hides every GPU NVML lists');
    expect(names({ CUDA_VISIBLE_DEVICES: '' })).toMatch(/hides every GPU/);
  });
});
