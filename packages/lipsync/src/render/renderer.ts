import type { FacePoint } from '@avatar/core';
import { frameKernels, openCudaRenderer, openCudaRendererAsync, type CudaFrameRenderer, type MouthI420, type WarpI420 } from '@avatar/native';
import type { MouthPose } from '../track.js';
import { rgbaToI420 } from './color.js';
import { faceFrame, union } from './geometry.js';
import type { FaceFrame } from './geometry.js';
import { underJaw } from './jaw.js';
import { buildMesh, headRing } from './mesh.js';
import type { FaceMesh } from './mesh.js';
import { MOUTH_PARAM_FIELDS, drawMouthI420, drawMouthRgba, mouthParams, packMouthParams } from './mouth.js';
import type { MouthParams } from './mouth.js';
import { curveOutline, poseMesh } from './pose.js';
import { measureMouth } from './appearance.js';
import type { MouthAppearance } from './appearance.js';
import { roundCorners } from './outline.js';
import { TriangleMap } from './triangle-map.js';
import type { Box, FrameState, RendererOptions, RgbaImage } from './types.js';
import { warpTriangleI420 } from './warp.js';
import { warpTriangleRgba } from './warp-rgba.js';

/**
 * The opening's drawn outline: the mesh's curve sampled twice as densely (at 1024 px a side of it then
 * strays under 0.1 px from the curve), its sharpest turns (the ends of a narrow opening) rounded so that
 * no corner of it turns by more than 25 degrees. Denser costs the mouth kernel time for nothing seen.
 */
const OPENING_STEPS = 8;
const MAX_TURN = (25 * Math.PI) / 180;

/**
 * Renders frames of a talking face by moving the photo's own pixels: a piecewise-affine warp over a
 * triangulation of the 68 landmarks plus fixed anchors (mesh.ts), posed for each frame (pose.ts), an
 * inner mouth drawn into the lip opening (mouth.ts), and blinks and head motion on the same mesh.
 * Frames are RGBA, or I420 drawn as I420 (then no RGBA frame exists at all).
 */
/** Why a renderer drawing RGBA frames has no GPU. */
const NOT_I420 = { ok: false as const, reason: 'the GPU kernels draw I420 frames only' };

export class FaceRenderer {
  readonly width: number;
  readonly height: number;
  private readonly base: Uint8Array;
  private readonly mesh: FaceMesh;
  private readonly face: FaceFrame;
  /** the photo's own teeth, light, grain and sharpness around the mouth */
  private readonly look: MouthAppearance;
  private readonly moved: Float64Array;
  /** frames are drawn into these in turn, so a consumer may still read the last few while the next is drawn */
  private readonly buffers: Uint8Array[];
  /** per buffer: the region that differs from the photo */
  private readonly dirtyOf: (Box | null)[];
  private current = 0;
  private out: Uint8Array;
  private readonly expressiveness: number;
  /** the photo as I420, when frames are drawn as I420 */
  private readonly baseYuv: Uint8Array | null;
  /** one triangle's affine map, reused for every triangle */
  private readonly map = new TriangleMap();
  /** offsets into the mesh's triangles of this frame's moving triangles (the first activeCount) */
  private readonly active: Uint32Array;
  /** the compiled I420 warp and inner mouth, when the native addon has them and frames are I420 */
  private readonly nativeWarp: WarpI420 | undefined;
  private readonly nativeMouth: MouthI420 | undefined;
  private readonly threads: boolean;
  /** the native mouth kernel's parameter block, reused every frame */
  private readonly mouthBlock = new Float64Array(MOUTH_PARAM_FIELDS.length);

  constructor(image: RgbaImage, landmarks: readonly FacePoint[], options: RendererOptions = {}) {
    if (landmarks.length !== 68) throw new Error(`the renderer needs 68 landmarks, got ${landmarks.length}`);
    if (image.data.length !== image.width * image.height * 4) throw new Error('image data is not width x height RGBA');
    this.width = image.width;
    this.height = image.height;
    this.base = image.data;
    const ring = Math.max(1, options.ring ?? 1);
    if (options.pixelFormat === 'yuv420p') {
      // Drawn as I420 directly: warping one luma and two quarter-size chroma planes moves half the
      // samples of warping RGB, and no frame needs converting afterwards.
      if (image.width % 2 !== 0 || image.height % 2 !== 0) throw new Error('I420 frames need even sizes');
      const yuv = new Uint8Array((image.width * image.height * 3) / 2);
      rgbaToI420(image.data, image.width, image.height, yuv, 0, 0, image.width - 1, image.height - 1);
      this.baseYuv = yuv;
      this.buffers = Array.from({ length: ring }, () => yuv.slice());
    } else {
      this.baseYuv = null;
      this.buffers = Array.from({ length: ring }, () => new Uint8Array(image.data));
    }
    this.dirtyOf = this.buffers.map(() => null);
    this.out = this.buffers[0] as Uint8Array;
    this.expressiveness = options.expressiveness ?? 1;
    this.face = faceFrame(landmarks);
    this.look = measureMouth(image, landmarks, this.face);
    this.mesh = buildMesh(landmarks, this.face, this.expressiveness, {
      bite: this.look.bite,
      corners: this.look.corners,
      underJaw: underJaw(image, landmarks, this.face, headRing(this.face)),
    });
    this.moved = new Float64Array(this.mesh.rest);
    this.active = new Uint32Array(this.mesh.triangles.length / 3);
    const asked = options.kernel ?? 'auto';
    // on a GPU, the CPU's kernels still draw the frames it is checked against, and take over if it fails
    const kernel = asked === 'cuda' ? 'auto' : asked;
    // (a chroma plane needs two samples a side for the compiled kernel's bilinear reads)
    const built = this.baseYuv && kernel !== 'js' && this.width >= 4 && this.height >= 4 ? frameKernels() : undefined;
    // an addon built from other sources reads another parameter block: it is not used
    const matching = built && built.mouthParamFields.join() === MOUTH_PARAM_FIELDS.join() ? built : undefined;
    if (kernel === 'threads' && matching && !matching.threads) throw new Error('the native addon comes from an older build without the GPU kernels\' thread functions: rebuild it (npm run build:addon -w native)');
    const compiled = kernel === 'threads' ? matching?.threads : matching;
    if ((kernel === 'native' || kernel === 'threads') && !compiled) {
      throw new Error(!this.baseYuv ? 'the native warp kernel draws I420 frames only'
        : built ? 'the native addon was built from other renderer sources: rebuild it (npm run build:addon -w native)'
        : 'the native frame kernels are not built, or come from an older build (npm run build:addon -w native)');
    }
    this.threads = kernel === 'threads';
    this.nativeWarp = compiled?.warpI420;
    this.nativeMouth = compiled?.mouthI420;
    if (!compiled) {
      this.nativeMissing = !this.baseYuv ? 'the compiled kernels draw I420 frames only'
        : kernel === 'js' ? 'the TypeScript kernels were asked for'
        : built ? 'the native addon was built from other renderer sources (npm run build:addon -w native)'
        : 'the native addon is not built (npm run build:addon -w native)';
    }
    if (asked === 'cuda') this.adoptGpu(this.baseYuv ? openCudaRenderer(this.baseYuv, ...this.gpuArgs(options.gpu)) : NOT_I420);
  }

  /** What opening the GPU's renderer for this photo and mesh takes, after the photo. */
  private gpuArgs(gpu: { uuid?: string } = {}): [{ width: number; height: number }, { triangles: Uint32Array; rest: Float64Array }, { uuid?: string }] {
    return [{ width: this.width, height: this.height }, { triangles: this.mesh.triangles, rest: this.mesh.rest }, { ...(gpu.uuid && { uuid: gpu.uuid }) }];
  }

  /** Draws on the GPU's renderer from the next frame on, or keeps why there is none. */
  private adoptGpu(opened: { ok: true; renderer: CudaFrameRenderer; device: string } | { ok: false; reason: string }): boolean {
    if (!opened.ok) {
      this.gpuMissing = opened.reason;
      return false;
    }
    // released while it opened (an unload): it goes at once
    if (this.released) {
      opened.renderer.close();
      opened.renderer.releaseHostBuffers?.();
      this.gpuMissing = 'the renderer was released while the GPU opened';
      return false;
    }
    this.cuda = opened.renderer;
    this.gpuDevice = opened.device;
    this.gpuMissing = undefined;
    this.pinBuffers(opened.renderer);
    return true;
  }

  /**
   * Opens the GPU's renderer for this photo and mesh off the JavaScript thread and draws the frames
   * there from the next one on (as kernel 'cuda' does in the constructor, which opens it on this
   * thread). False, with the reason in `gpuMissing`, when it cannot be had; the CPU draws then.
   */
  async useGpu(gpu: { uuid?: string } = {}): Promise<boolean> {
    if (this.cuda) return true;
    return this.adoptGpu(this.baseYuv ? await openCudaRendererAsync(this.baseYuv, ...this.gpuArgs(gpu)) : NOT_I420);
  }

  /** The GPU drawing the frames (kernel 'cuda'), until it fails or draws a checked frame differently. */
  private cuda: CudaFrameRenderer | undefined;
  /** the GPU's name, when frames are drawn on one */
  gpuDevice: string | undefined;
  /** why frames are not (or no longer) drawn on a GPU, when kernel 'cuda' was asked for */
  gpuMissing: string | undefined;
  /** frames the GPU draws that are also drawn by the CPU and compared: without an open mouth, and with one */
  private gpuChecks = { frames: 30, mouths: 3 };
  private scratch: Uint8Array | undefined;

  /** Whether the frame buffers are page-locked host memory (the GPU copies into them by DMA), and why not when not. */
  hostMemory: { pinned: true } | { pinned: false; reason: string } = { pinned: false, reason: 'frames are drawn on the CPU' };

  /**
   * Swaps the frame buffers for page-locked ones: the GPU's copy of each finished frame lands there
   * directly, and the encoder's pipe writes them from there, so a frame crosses host memory once.
   * Without them (an older addon, a system that will lock no more memory) ordinary buffers serve.
   */
  private pinBuffers(cuda: CudaFrameRenderer): void {
    let pinned: Uint8Array[];
    try {
      if (!cuda.hostBuffers) throw new Error('the native addon is an older build without page-locked buffers');
      pinned = cuda.hostBuffers(this.buffers.length);
    } catch (error) {
      this.hostMemory = { pinned: false, reason: (error as Error).message };
      return;
    }
    this.pinnedFrom = cuda;
    pinned.forEach((buffer, i) => {
      buffer.set(this.buffers[i] as Uint8Array);
      this.buffers[i] = buffer;
    });
    this.out = this.buffers[this.current] as Uint8Array;
    this.hostMemory = { pinned: true };
  }

  /** Whether frames drawn on the GPU stay there (for an encoder there) instead of coming back into the buffers. */
  private leaveOnGpu = false;
  /** whether the frame last returned is in GPU memory only (its buffer then holds an earlier frame) */
  private onGpu = false;

  /**
   * Leaves frames drawn on the GPU there, for an encoder on the same GPU that reads them through
   * `gpuHandle`; `lastOnGpu` then says, frame by frame, whether the returned buffer is the frame (the
   * checked frames and any drawn on the CPU come back as usual).
   */
  keepFramesOnGpu(): void {
    this.leaveOnGpu = true;
  }

  /** Whether frames drawn on the GPU stay there (keepFramesOnGpu was called). */
  get keepsFramesOnGpu(): boolean {
    return this.leaveOnGpu;
  }

  /** Whether the frame last rendered is in GPU memory only. */
  get lastOnGpu(): boolean {
    return this.onGpu;
  }

  /** The CUDA renderer drawing the frames, while one does. */
  get gpuHandle(): CudaFrameRenderer | undefined {
    return this.cuda;
  }

  private released = false;
  /** the CUDA renderer the page-locked buffers came from (they outlive its close) */
  private pinnedFrom: CudaFrameRenderer | undefined;

  /**
   * Frees everything on the GPU's side now, the page-locked frame buffers too (and with them the GPU's
   * context): for when no frame is read any more (after the encoder is done), as the renderer cannot
   * draw again. Without it they go when collected.
   */
  release(): void {
    this.released = true;
    this.close();
    this.pinnedFrom?.releaseHostBuffers?.();
    this.pinnedFrom = undefined;
  }

  /** Frees the GPU's memory now (a renderer that is dropped frees it when collected). */
  close(): void {
    this.cuda?.close();
    this.cuda = undefined;
  }

  /** Stops drawing on the GPU: the CPU draws from the next frame on, restoring every buffer whole first. */
  private dropGpu(reason: string): void {
    this.close();
    this.gpuMissing = reason;
    this.dirtyOf.fill([0, 0, this.width - 1, this.height - 1]);
  }

  /** Why the compiled kernels are not drawing the frames, when they are not. */
  readonly nativeMissing: string | undefined;

  /** Which kernels draw the frames: the compiled ones of the native addon (or their GPU twins' thread functions), or the TypeScript ones. */
  get kernel(): 'native' | 'js' | 'threads' | 'cuda' {
    return this.cuda ? 'cuda' : !this.nativeWarp ? 'js' : this.threads ? 'threads' : 'native';
  }

  /** Mouth size in pixels: the scale every mouth shape is measured against. */
  get mouthScale(): number {
    return this.face.mouthWidth;
  }

  /** The mesh's triangles, as corner indices in threes (the first 68 points are the landmarks). */
  get triangles(): Uint32Array {
    return this.mesh.triangles;
  }

  /** Where the 68 landmarks stand in a frame of this mouth and state (what render() draws). */
  landmarksFor(mouth: MouthPose, state: FrameState): FacePoint[] {
    const moved = new Float64Array(this.mesh.rest.length);
    poseMesh(this.mesh, moved, mouth, state, this.expressiveness);
    return Array.from({ length: 68 }, (_, i) => ({ x: moved[2 * i] as number, y: moved[2 * i + 1] as number }));
  }

  /** The outline of the opening drawn into for this mouth and state, as x, y pairs. */
  openingFor(mouth: MouthPose, state: FrameState): Float64Array {
    const moved = new Float64Array(this.mesh.rest.length);
    poseMesh(this.mesh, moved, mouth, state, this.expressiveness);
    return roundCorners(curveOutline(moved, this.mesh.opening, OPENING_STEPS), MAX_TURN);
  }

  /** Whether the photo shows its own teeth, which then stay (the upper ones with the skull, the lower with the jaw). */
  get photoTeeth(): boolean {
    return this.look.bite !== null;
  }

  /** How coarse the photo's grain is, in pixels, as the drawn mouth copies it (1: a photo at its own size). */
  get grainScale(): number {
    return this.look.grainScale;
  }

  /** How many buffers frames are drawn into in turn. */
  get ring(): number {
    return this.buffers.length;
  }

  /**
   * Renders one frame into the next of the renderer's own buffers and returns it. Buffers are reused in
   * turn: the call `ring` calls later overwrites this one, so a consumer that keeps frames must copy them.
   */
  render(mouth: MouthPose, state: FrameState): Uint8Array {
    this.current = (this.current + 1) % this.buffers.length;
    this.out = this.buffers[this.current] as Uint8Array;
    const { gap } = poseMesh(this.mesh, this.moved, mouth, state, this.expressiveness);
    const count = this.collectMoving();
    const now = this.movingBox(count);
    this.onGpu = false;
    // a frame where nothing moves is the photo: the CPU restores it faster than a round trip to the GPU
    if (this.cuda && count > 0 && this.renderOnGpu(count, gap, mouth)) {
      // a frame left on the GPU did not touch the buffer: it still holds its earlier frame
      if (!this.onGpu) this.dirtyOf[this.current] = now;
      return this.out;
    }
    // restore what this buffer's previous frame changed and this one may not
    const restore = union(this.dirtyOf[this.current] ?? null, now);
    if (restore) this.restore(restore);
    this.warp(count);
    const drawn = this.mouthToDraw(gap, mouth);
    if (drawn) this.drawMouth(drawn);
    this.dirtyOf[this.current] = now;
    return this.out;
  }

  /**
   * The frame drawn on the GPU into the current buffer; false when the GPU failed (the CPU then draws
   * it). The first frames are also drawn by the CPU and compared: a GPU that draws one differently is
   * not used again, and the CPU's frame is the one returned.
   */
  private renderOnGpu(count: number, gap: number, mouth: MouthPose): boolean {
    const drawn = this.mouthToDraw(gap, mouth);
    // up to 30 frames without a mouth, and the first three with one however late they come: both kernels are checked
    const check = this.baseYuv !== null && (drawn ? this.gpuChecks.mouths > 0 : this.gpuChecks.frames > 0);
    // a checked frame comes back to be compared; others stay on the GPU when an encoder there takes them
    const keep = this.leaveOnGpu && !check;
    try {
      (this.cuda as CudaFrameRenderer).frame(this.moved, this.active, count, drawn?.outline ?? null, drawn ? packMouthParams(drawn.params, this.mouthBlock) : null, keep ? null : this.out);
    } catch (error) {
      this.dropGpu((error as Error).message);
      return false;
    }
    // (a checked frame came back into the buffer: it is the frame, and its encoder reads it there)
    this.onGpu = keep;
    if (!check) return true;
    if (drawn) this.gpuChecks.mouths--;
    else this.gpuChecks.frames--;
    const gpu = this.out;
    const cpu = (this.scratch ??= new Uint8Array(gpu.length));
    cpu.set(this.baseYuv);
    this.out = cpu;
    this.warp(count);
    if (drawn) this.drawMouth(drawn);
    this.out = gpu;
    if (!Buffer.from(cpu.buffer, cpu.byteOffset, cpu.length).equals(Buffer.from(gpu.buffer, gpu.byteOffset, gpu.length))) {
      this.dropGpu(`the GPU (${this.gpuDevice ?? 'unnamed'}) drew a frame differently from the CPU kernels`);
      gpu.set(cpu);
      this.onGpu = false;
    }
    return true;
  }

  /** Lists the triangles with a moved corner in `active` (only they change pixels) and returns their count. */
  private collectMoving(): number {
    const tri = this.mesh.triangles;
    const m = this.moved;
    const r = this.mesh.rest;
    const active = this.active;
    let count = 0;
    for (let t = 0; t < tri.length; t += 3) {
      for (let k = 0; k < 3; k++) {
        const v = tri[t + k] as number;
        if (Math.abs((m[2 * v] as number) - (r[2 * v] as number)) > 1e-3 || Math.abs((m[2 * v + 1] as number) - (r[2 * v + 1] as number)) > 1e-3) {
          active[count++] = t;
          break;
        }
      }
    }
    return count;
  }

  /** The box around the moving triangles, where they are and where they come from, a pixel wider. */
  private movingBox(count: number): Box | null {
    if (count === 0) return null;
    const tri = this.mesh.triangles;
    const m = this.moved;
    const r = this.mesh.rest;
    let bx0 = Infinity, by0 = Infinity, bx1 = -Infinity, by1 = -Infinity;
    for (let n = 0; n < count; n++) {
      const t = this.active[n] as number;
      for (let k = 0; k < 3; k++) {
        const v = tri[t + k] as number;
        const mx = m[2 * v] as number, my = m[2 * v + 1] as number, rx = r[2 * v] as number, ry = r[2 * v + 1] as number;
        bx0 = Math.min(bx0, mx, rx);
        bx1 = Math.max(bx1, mx, rx);
        by0 = Math.min(by0, my, ry);
        by1 = Math.max(by1, my, ry);
      }
    }
    return [Math.max(0, Math.floor(bx0) - 1), Math.max(0, Math.floor(by0) - 1), Math.min(this.width - 1, Math.ceil(bx1) + 1), Math.min(this.height - 1, Math.ceil(by1) + 1)];
  }

  /** Draws the moving triangles from the photo into the current buffer. */
  private warp(count: number): void {
    const tri = this.mesh.triangles;
    const m = this.moved;
    const r = this.mesh.rest;
    const W = this.width;
    const H = this.height;
    if (this.baseYuv && this.nativeWarp) {
      this.nativeWarp(this.baseYuv, this.out, W, H, m, r, tri, this.active, count);
      return;
    }
    for (let n = 0; n < count; n++) {
      const t = this.active[n] as number;
      const a = tri[t] as number, b = tri[t + 1] as number, c = tri[t + 2] as number;
      if (this.baseYuv) warpTriangleI420(this.map, m, r, a, b, c, this.baseYuv, this.out, W, H);
      else if (this.map.set(m, r, a, b, c, 1, 0, W, H)) warpTriangleRgba(this.map, this.base, this.out, W, H);
    }
  }

  /** Copies the photo back over a region (inclusive corners) of the current buffer. */
  private restore([x0, y0, x1, y1]: Box): void {
    // One copy per plane, from the box's first row to its last, whole rows between: outside a buffer's
    // dirty box it already holds the photo, so the extra bytes are the photo's over the photo. A copy per
    // row made a view per row: some 2,000 a frame, which at 25 fps made half of the run's garbage and grew
    // V8's young generation by 17 MB over a long clip.
    const W = this.width;
    const base = this.baseYuv;
    if (!base) {
      this.out.set(this.base.subarray((y0 * W + x0) * 4, (y1 * W + x1 + 1) * 4), (y0 * W + x0) * 4);
      return;
    }
    this.out.set(base.subarray(y0 * W + x0, y1 * W + x1 + 1), y0 * W + x0);
    const half = W / 2;
    const cx0 = x0 >> 1, cx1 = x1 >> 1;
    for (const plane of [W * this.height, (W * this.height * 5) / 4]) {
      const from = plane + (y0 >> 1) * half + cx0;
      const to = plane + (y1 >> 1) * half + cx1 + 1;
      this.out.set(base.subarray(from, to), from);
    }
  }

  /**
   * The opening's height at its middle as posed, along the face: a tucked lower lip (f, v) under pressed
   * lips can pass the upper one even while the pose's gap is not 0, and then there is nothing to draw.
   */
  private openingHeight(): number {
    const { controls } = this.mesh.opening;
    const top = controls[2] as number, bottom = controls[6] as number;
    const m = this.moved;
    const { uy } = this.face;
    return ((m[2 * bottom] as number) - (m[2 * top] as number)) * uy.x + ((m[2 * bottom + 1] as number) - (m[2 * top + 1] as number)) * uy.y;
  }

  /** The open mouth's outline (the inner lips) and figures as posed, or null when there is nothing to draw. */
  private mouthToDraw(gap: number, mouth: MouthPose): { outline: Float64Array; params: MouthParams } | null {
    if (!(gap > 0.25 && this.openingHeight() > 0.25)) return null;
    const outline = roundCorners(curveOutline(this.moved, this.mesh.opening, OPENING_STEPS), MAX_TURN);
    const params = mouthParams(this.moved, this.mesh.opening, outline, this.face, this.look, mouth, this.width, this.height);
    // an opening outside the frame has nothing to draw
    return params.x1 < params.x0 || params.y1 < params.y0 ? null : { outline, params };
  }

  /** Draws the inside of the open mouth into the opening between the inner lips. */
  private drawMouth({ outline, params }: { outline: Float64Array; params: MouthParams }): void {
    if (this.baseYuv && this.nativeMouth) this.nativeMouth(this.out, this.width, this.height, outline, packMouthParams(params, this.mouthBlock));
    else if (this.baseYuv) drawMouthI420(this.out, this.width, this.height, outline, params);
    else drawMouthRgba(this.out, this.width, outline, params);
  }
}
