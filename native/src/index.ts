// GPU facts for the pipeline: VRAM per device through NVML, and whether NVENC can encode here.
// Everything degrades to a plain "no GPU" / "no NVENC" answer; nothing here throws for a missing
// driver, GPU or addon.
import type { GpuDeviceMemory, GpuMemoryProvider, GpuSnapshot } from '@avatar/core';
import { loadNative } from './binding.js';
import type { CudaFrameRenderer, CudaKernelsInfo, LoadResult, MouthI420, NativeBuildInfo, NvencFrameEncoder, RawNvmlReport, WarpI420 } from './binding.js';

export { defaultCandidates, loadNative } from './binding.js';
export type {
  CudaFrameRenderer,
  NvencFrameEncoder,
  CudaKernelsInfo,
  LoadResult,
  NativeAddon,
  NativeBuildInfo,
  RawNvencReport,
  RawNvmlDevice,
  MouthI420,
  RawNvmlReport,
  WarpI420,
} from './binding.js';

export interface NativeOptions {
  /** Binary paths to try instead of the defaults (build/Release, build/Debug, prebuilds/). */
  candidates?: readonly string[];
}

const MiB = 1024 * 1024;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function load(options: NativeOptions | undefined): LoadResult {
  return options?.candidates ? loadNative(options.candidates) : loadNative();
}

/** Turns NVML's raw report into the snapshot the resource manager budgets with. */
export function snapshotFromNvml(raw: RawNvmlReport): GpuSnapshot {
  if (!raw.ok) return { available: false, reason: raw.reason || 'no GPU: NVML gave no reason' };
  const devices: GpuDeviceMemory[] = [];
  const problems: string[] = [];
  for (const d of raw.devices) {
    if (d.error) {
      problems.push(`GPU ${d.index}${d.name ? ` (${d.name})` : ''}: ${d.error}`);
      continue;
    }
    devices.push({
      index: d.index,
      name: d.name || `GPU ${d.index}`,
      ...(d.uuid && { uuid: d.uuid }),
      totalMB: Math.floor(d.totalBytes / MiB),
      usedMB: Math.floor(d.usedBytes / MiB),
      freeMB: Math.floor(d.freeBytes / MiB),
    });
  }
  if (devices.length === 0) {
    return {
      available: false,
      reason: problems.length > 0 ? `no GPU: ${problems.join('; ')}` : 'no GPU: NVML reports no devices',
    };
  }
  const driver = raw.driverVersion ? `driver ${raw.driverVersion}` : 'driver unknown';
  return { available: true, source: `nvml (${driver})`, devices };
}

/**
 * The GPUs CUDA may use, as CUDA_VISIBLE_DEVICES says: by UUID ("GPU-..."; a prefix is enough), or by
 * index where CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA's order NVML's. Indices in CUDA's default order
 * (fastest first) cannot be matched to NVML's: then every GPU is kept.
 */
export function visibleToCuda(snapshot: GpuSnapshot, env: NodeJS.ProcessEnv = process.env): GpuSnapshot {
  const visible = env['CUDA_VISIBLE_DEVICES'];
  if (!snapshot.available || visible === undefined) return snapshot;
  const entries = visible.split(',').map((e) => e.trim()).filter(Boolean);
  // CUDA stops at the first entry it cannot use, so "-1" (or nothing) hides every GPU
  const usable: string[] = [];
  for (const e of entries) {
    if (!/^(GPU-[0-9a-f-]+|\d+)$/i.test(e)) break;
    usable.push(e);
  }
  let devices = snapshot.devices;
  if (usable.every((e) => /^GPU-/i.test(e))) {
    devices = snapshot.devices.filter((d) => d.uuid && usable.some((e) => d.uuid!.toLowerCase().startsWith(e.toLowerCase())));
  } else if (env['CUDA_DEVICE_ORDER'] === 'PCI_BUS_ID' && usable.every((e) => /^\d+$/.test(e))) {
    devices = snapshot.devices.filter((d) => usable.includes(String(d.index)));
  }
  return devices.length > 0 ? { ...snapshot, devices } : { available: false, reason: `no GPU: CUDA_VISIBLE_DEVICES (${JSON.stringify(visible)}) hides every GPU NVML lists` };
}

/** The GPU memory provider backed by NVML through the addon: the GPUs CUDA may use (visibleToCuda). */
export function createNvmlMemoryProvider(options?: NativeOptions): GpuMemoryProvider {
  return {
    name: 'nvml',
    async query(): Promise<GpuSnapshot> {
      const loaded = load(options);
      if (!loaded.ok) return { available: false, reason: `no GPU: native addon not built (${loaded.reason})` };
      try {
        return visibleToCuda(snapshotFromNvml(await loaded.addon.queryNvml()));
      } catch (error) {
        return { available: false, reason: `no GPU: NVML query failed: ${errorText(error)}` };
      }
    },
  };
}

export interface NvencStatus {
  available: boolean;
  reason: string;
  /** Whether an encode session was actually attempted (false: the answer comes from missing pieces). */
  sessionTried: boolean;
}

const nvencCache = new Map<string, Promise<NvencStatus>>();

/**
 * Whether NVENC can encode H.264 on CUDA device 0, found by opening an encode session.
 * The answer cannot change while the process runs, and finding it may create a CUDA context,
 * so it is computed once per binary.
 */
export function detectNvenc(options?: NativeOptions): Promise<NvencStatus> {
  const loaded = load(options);
  if (!loaded.ok) {
    return Promise.resolve({ available: false, reason: `no NVENC: native addon not built (${loaded.reason})`, sessionTried: false });
  }
  let pending = nvencCache.get(loaded.path);
  if (!pending) {
    pending = loaded.addon.probeNvenc().then(
      (r) => ({ available: r.available, reason: r.reason, sessionTried: r.sessionTried }),
      (error: unknown) => ({ available: false, reason: `no NVENC: probe failed: ${errorText(error)}`, sessionTried: false }),
    );
    nvencCache.set(loaded.path, pending);
  }
  return pending;
}

export interface NativeStatus {
  /** The addon binary loaded. */
  built: boolean;
  /** Where it was loaded from, or why no candidate loaded. */
  detail: string;
  build: NativeBuildInfo | null;
  /** the renderer's compiled kernels this build has (the renderer uses its TypeScript ones otherwise) */
  frameKernels: string[];
  /** the renderer's CUDA kernels built in as PTX (none where nvcc was missing, with the reason) */
  cudaKernels: CudaKernelsInfo;
  /** whether a CUDA renderer opens here (on CUDA device 0), found by opening one for a tiny frame */
  cudaRenderer: { available: true; device: string } | { available: false; reason: string };
  nvml: {
    libraryFound: boolean;
    /** NVML initialised. */
    ok: boolean;
    /** Why not ok; '' when ok. */
    reason: string;
    driverVersion: string | null;
    nvmlVersion: string | null;
    deviceCount: number;
  };
}

/** Everything `avatar doctor` shows about the native side, in one call that never throws. */
export async function nativeStatus(options?: NativeOptions): Promise<NativeStatus> {
  const loaded = load(options);
  if (!loaded.ok) {
    return {
      built: false,
      detail: loaded.reason,
      build: null,
      frameKernels: [],
      cudaKernels: { status: 'native addon not built', modules: [] },
      cudaRenderer: { available: false, reason: 'native addon not built' },
      nvml: { libraryFound: false, ok: false, reason: 'native addon not built', driverVersion: null, nvmlVersion: null, deviceCount: 0 },
    };
  }
  let nvml: NativeStatus['nvml'];
  try {
    const raw = await loaded.addon.queryNvml();
    nvml = {
      libraryFound: raw.libraryFound,
      ok: raw.ok,
      reason: raw.reason,
      driverVersion: raw.driverVersion || null,
      nvmlVersion: raw.nvmlVersion || null,
      deviceCount: raw.devices.length,
    };
  } catch (error) {
    nvml = { libraryFound: false, ok: false, reason: `NVML query failed: ${errorText(error)}`, driverVersion: null, nvmlVersion: null, deviceCount: 0 };
  }
  const frameKernels = (['warpI420', 'mouthI420'] as const).filter((k) => typeof loaded.addon[k] === 'function');
  const cudaKernels = loaded.addon.cudaKernels ?? { status: 'not in this build (an older one): rebuild it (npm run build:addon -w native)', modules: [] };
  const opened = openCudaRenderer(new Uint8Array(24), { width: 4, height: 4 }, { triangles: new Uint32Array([0, 1, 2]), rest: new Float64Array([0, 0, 3, 0, 0, 3]) }, options);
  if (opened.ok) opened.renderer.close();
  const cudaRenderer = opened.ok ? { available: true as const, device: opened.device } : { available: false as const, reason: opened.reason };
  return { built: true, detail: `loaded ${loaded.path}`, build: { ...loaded.addon.buildInfo }, frameKernels, cudaKernels, cudaRenderer, nvml };
}

/** The renderer's compiled kernels (see cpp/warp.cc and cpp/mouth.cc). */
export interface FrameKernels {
  warpI420: WarpI420;
  mouthI420: MouthI420;
  /** the mouth kernel's parameter names in block order: a caller checks them against its own list */
  mouthParamFields: readonly string[];
  /** the CUDA kernels' thread functions run on the CPU (see NativeAddon.warpI420Threads): a check, not a fast path */
  threads?: { warpI420: WarpI420; mouthI420: MouthI420 };
}

/**
 * The compiled frame kernels, or undefined when the addon is not built (or is a build without them):
 * callers keep a TypeScript version of each and use it then. Never throws.
 */
export function frameKernels(options?: NativeOptions): FrameKernels | undefined {
  const loaded = load(options);
  const { warpI420, mouthI420, mouthParamFields, warpI420Threads, mouthI420Threads } = loaded.ok ? loaded.addon : {};
  if (typeof warpI420 !== 'function' || typeof mouthI420 !== 'function' || !Array.isArray(mouthParamFields)) return undefined;
  const threads = typeof warpI420Threads === 'function' && typeof mouthI420Threads === 'function' ? { warpI420: warpI420Threads, mouthI420: mouthI420Threads } : undefined;
  return { warpI420, mouthI420, mouthParamFields, ...(threads && { threads }) };
}

/**
 * The renderer's frames on an NVIDIA GPU, for one photo (an I420 frame) and mesh: the renderer, or the
 * reason there is none here (addon not built, no driver, no device, no PTX in this build, too little
 * memory...). Never throws for a missing GPU; wrong arguments throw.
 */
export function openCudaRenderer(
  photo: Uint8Array,
  size: { width: number; height: number },
  mesh: { triangles: Uint32Array; rest: Float64Array },
  options: NativeOptions & { uuid?: string } = {},
): { ok: true; renderer: CudaFrameRenderer; device: string } | { ok: false; reason: string } {
  const loaded = load(options);
  if (!loaded.ok) return { ok: false, reason: `native addon not built (${loaded.reason})` };
  const open = loaded.addon.openCudaRenderer;
  if (typeof open !== 'function') return { ok: false, reason: 'the native addon is an older build without the CUDA renderer (npm run build:addon -w native)' };
  return open(photo, size.width, size.height, mesh.triangles, mesh.rest, options.uuid ?? '');
}

/**
 * openCudaRenderer, with the opening (retaining the GPU's context, the driver compiling the PTX: a
 * second or more the first time on a machine; the uploads) done on the thread pool, so a server's event
 * loop is not held meanwhile. Never rejects for a missing GPU; wrong arguments throw.
 */
export async function openCudaRendererAsync(
  photo: Uint8Array,
  size: { width: number; height: number },
  mesh: { triangles: Uint32Array; rest: Float64Array },
  options: NativeOptions & { uuid?: string } = {},
): Promise<{ ok: true; renderer: CudaFrameRenderer; device: string } | { ok: false; reason: string }> {
  const loaded = load(options);
  if (!loaded.ok) return { ok: false, reason: `native addon not built (${loaded.reason})` };
  const open = loaded.addon.openCudaRendererAsync;
  if (typeof open !== 'function') return openCudaRenderer(photo, size, mesh, options);
  return open(photo, size.width, size.height, mesh.triangles, mesh.rest, options.uuid ?? '');
}

/**
 * An NVENC H.264 encoder on a GPU (by NVML UUID; CUDA device 0 when none), or the reason there is none
 * (addon not built, no driver, a GPU without NVENC such as an H100, an old driver, a width that is not a
 * multiple of 4...). `quality` is constant quality on the crf's scale (1-51); a key frame every `gop`
 * frames. Never throws for a missing GPU; wrong arguments throw.
 */
export function openNvencEncoder(
  size: { width: number; height: number },
  settings: { fps: number; quality: number; gop: number },
  options: NativeOptions & { uuid?: string } = {},
): { ok: true; encoder: NvencFrameEncoder; device: string } | { ok: false; reason: string } {
  const loaded = load(options);
  if (!loaded.ok) return { ok: false, reason: `native addon not built (${loaded.reason})` };
  const open = loaded.addon.openNvencEncoder;
  if (typeof open !== 'function') return { ok: false, reason: 'the native addon is an older build without the NVENC encoder (npm run build:addon -w native)' };
  return open(size.width, size.height, settings.fps, settings.quality, settings.gop, options.uuid ?? '');
}
