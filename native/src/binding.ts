// The raw addon, typed apart from the idiomatic wrapper in index.ts, and the loader that finds it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface RawNvmlDevice {
  index: number;
  name: string;
  /** NVML's UUID ("GPU-..."); '' when the driver could not say */
  uuid: string;
  totalBytes: number;
  usedBytes: number;
  freeBytes: number;
  /** Non-empty when NVML could not read this device. */
  error: string;
}

export interface RawNvmlReport {
  /** NVML initialised and the device count was read. */
  ok: boolean;
  libraryFound: boolean;
  /** Why not ok; empty when ok. */
  reason: string;
  driverVersion: string;
  nvmlVersion: string;
  devices: RawNvmlDevice[];
}

export interface RawNvencReport {
  available: boolean;
  reason: string;
  cudaFound: boolean;
  encodeLibraryFound: boolean;
  /** An encode session was actually attempted (needs the NVENC header at build time and a driver). */
  sessionTried: boolean;
  /** Name of CUDA device 0 when one was reached. */
  device: string;
}

export interface NativeBuildInfo {
  /** Built with nvEncodeAPI.h, so NVENC detection opens a real session. */
  nvencHeader: boolean;
  /** NVENC API version the addon was built for ('' without the header). */
  nvencApiVersion: string;
  napiVersion: number;
}

/**
 * The renderer's piecewise-affine warp of one I420 frame (see cpp/warp.cc): every triangle whose offset
 * into `triangles` is among the first `activeCount` of `active`, drawn moved <- rest from `src` into `dst`.
 */
export type WarpI420 = (
  src: Uint8Array,
  dst: Uint8Array,
  width: number,
  height: number,
  moved: Float64Array,
  rest: Float64Array,
  triangles: Uint32Array,
  active: Uint32Array,
  activeCount: number,
) => void;

/**
 * The renderer's inner mouth drawn into one I420 frame (see cpp/mouth.cc). `params`: the block of
 * cpp/mouth.h, one number per name in `mouthParamFields`, in that order.
 */
export type MouthI420 = (dst: Uint8Array, width: number, height: number, outline: Float64Array, params: Float64Array) => void;

/** The renderer's frames drawn on an NVIDIA GPU (see cpp/cuda_render.h). */
export interface CudaFrameRenderer {
  /**
   * One frame into `out` (an I420 frame): the photo, the first `activeCount` triangles of `active` drawn
   * moved <- rest, and the inner mouth when `outline` and `params` are given; with `out` null the frame
   * stays in GPU memory, for NvencFrameEncoder.encodeFrom (until the next call). Throws when the GPU fails.
   */
  frame(moved: Float64Array, active: Uint32Array, activeCount: number, outline: Float64Array | null, params: Float64Array | null, out: Uint8Array | null): void;
  /**
   * `count` frames of page-locked host memory for `frame` to copy into (the GPU's DMA reaches it
   * directly; ffmpeg's pipe reads it with no copy). Each is freed when collected, so it may outlive
   * close(). Throws with the reason when the memory cannot be had. Absent from older builds.
   */
  hostBuffers?(count: number): Uint8Array[];
  /**
   * Frees the page-locked buffers now (they are detached: zero bytes long from then on), for when
   * nothing reads them any more; else they go when collected. Works after close(). Absent from older builds.
   */
  releaseHostBuffers?(): void;
  /** frees its GPU memory at once (also done when it is collected) */
  close(): void;
}

/** Opens a CUDA renderer for one photo and mesh on the GPU with `uuid` ('' for CUDA device 0); never throws for a missing GPU. */
export type OpenCudaRenderer = (
  photo: Uint8Array,
  width: number,
  height: number,
  triangles: Uint32Array,
  rest: Float64Array,
  uuid: string,
) => { ok: true; renderer: CudaFrameRenderer; device: string } | { ok: false; reason: string };

/**
 * H.264 on the GPU's NVENC (see cpp/nvenc_encode.h): each call encodes one I420 frame and returns its
 * bytes (Annex B, SPS/PPS before every key frame), none held back. Throws with the failed call's name.
 */
export interface NvencFrameEncoder {
  /** a frame in host memory */
  encode(frame: Uint8Array): Buffer;
  /** the frame the CUDA renderer last drew with `out` null, copied on the GPU (same GPU only) */
  encodeFrom(renderer: CudaFrameRenderer): Buffer;
  /**
   * The same in two steps, so encoding overlaps drawing the next frame: `stage` copies a frame into the
   * next of two input slots now (from host memory, or the renderer's frame on the GPU) and returns the
   * slot; `encodeSlot` encodes it on the thread pool. One encodeSlot at a time, in the order staged;
   * staging a third frame before the first is encoded throws. Absent from older builds.
   */
  stage?(source: Uint8Array | CudaFrameRenderer): number;
  encodeSlot?(slot: number): Promise<Buffer>;
  /** the end of the stream (nothing staged, nothing running) */
  finish(): Buffer;
  /** frees the session and its GPU memory at once, or once a running encode ends (also done when collected) */
  close(): void;
}

/** Opens an NVENC H.264 encoder on the GPU with `uuid` ('' for CUDA device 0); never throws for a missing GPU or NVENC. */
export type OpenNvencEncoder = (
  width: number,
  height: number,
  fps: number,
  quality: number,
  gop: number,
  uuid: string,
) => { ok: true; encoder: NvencFrameEncoder; device: string } | { ok: false; reason: string };

export interface CudaKernelsInfo {
  /** how the PTX was built ('PTX (compute_75) by nvcc 13.0'), or why it was not */
  status: string;
  modules: readonly { name: string; bytes: number; entries: readonly string[] }[];
}

export interface NativeAddon {
  queryNvml(): Promise<RawNvmlReport>;
  probeNvenc(): Promise<RawNvencReport>;
  /** absent from builds older than the kernel: callers fall back to their own code */
  warpI420?: WarpI420;
  mouthI420?: MouthI420;
  /** the names of the mouth kernel's parameters, in block order */
  mouthParamFields?: readonly string[];
  /**
   * The same two kernels drawn by their CUDA twins' thread functions, run on the CPU in reverse thread
   * order (cpp/threads.cc): a check of the GPU's decomposition of a frame, not a fast path.
   */
  warpI420Threads?: WarpI420;
  mouthI420Threads?: MouthI420;
  /** the CUDA kernels built into this binary as PTX, or none with the reason */
  cudaKernels?: CudaKernelsInfo;
  openCudaRenderer?: OpenCudaRenderer;
  /** the same, opened on the thread pool (context, PTX compilation, uploads off the JavaScript thread) */
  openCudaRendererAsync?: (...args: Parameters<OpenCudaRenderer>) => Promise<ReturnType<OpenCudaRenderer>>;
  openNvencEncoder?: OpenNvencEncoder;
  readonly buildInfo: NativeBuildInfo;
}

export type LoadResult = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string };

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const BINARY = 'avatar_native.node';

/** Where the binary may be, in order: an explicit override, the cmake-js outputs, a prebuild. */
export function defaultCandidates(): string[] {
  const list: string[] = [];
  const override = process.env['AVATAR_NATIVE_BINARY'];
  if (override) list.push(override);
  list.push(
    join(packageRoot, 'build', 'Release', BINARY),
    join(packageRoot, 'build', 'Debug', BINARY),
    join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, BINARY),
  );
  return list;
}

function isAddon(value: unknown): value is NativeAddon {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v['queryNvml'] === 'function' && typeof v['probeNvenc'] === 'function' && typeof v['buildInfo'] === 'object';
}

function shortPath(path: string): string {
  const rel = relative(packageRoot, path);
  return rel.startsWith('..') ? path : rel;
}

const require = createRequire(import.meta.url);
const cache = new Map<string, LoadResult>();

/**
 * Tries each candidate in order and returns the first that loads and has the expected exports.
 * Never throws: when none loads, `reason` lists what went wrong with each one.
 */
export function loadNative(candidates: readonly string[] = defaultCandidates()): LoadResult {
  const key = candidates.join('\n');
  const cached = cache.get(key);
  if (cached) return cached;

  const failures: string[] = [];
  let result: LoadResult | undefined;
  for (const path of candidates) {
    if (!existsSync(path)) {
      failures.push(`${shortPath(path)}: not found`);
      continue;
    }
    try {
      const loaded: unknown = require(path);
      if (isAddon(loaded)) {
        result = { ok: true, addon: loaded, path };
        break;
      }
      failures.push(`${shortPath(path)}: loaded but lacks the expected exports (stale build?)`);
    } catch (error) {
      const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
      failures.push(`${shortPath(path)}: ${message}`);
    }
  }
  result ??= {
    ok: false,
    reason: `${failures.join('; ')}; build it with \`npm run build:addon -w native\``,
  };
  cache.set(key, result);
  return result;
}
