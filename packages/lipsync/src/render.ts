import Delaunator from 'delaunator';
import type { FacePoint } from '@avatar/core';
import { frameKernels, type MouthI420, type WarpI420 } from '@avatar/native';
import type { MouthPose } from './track.js';

/** Tightly packed RGBA, 4 bytes per pixel, row by row. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type HeadMotion = 'none' | 'subtle' | 'lively';

export interface AnimationOptions {
  /** slight head motion that fades to nothing before the frame's edges */
  headMotion: HeadMotion;
  /** blinks per minute; 0 = never */
  blinkRate: number;
  /** scales how far the mouth and jaw move; 1 = natural */
  expressiveness: number;
  /** the same seed gives the same blinks and head motion */
  seed: number;
}

export const DEFAULT_ANIMATION: Readonly<AnimationOptions> = { headMotion: 'subtle', blinkRate: 15, expressiveness: 1, seed: 1 };

export interface RendererOptions {
  /** scales how far the mouth and jaw move; 1 = natural */
  expressiveness?: number;
  /** how many buffers frames are drawn into in turn (see FaceRenderer.render) */
  ring?: number;
  pixelFormat?: 'rgba' | 'yuv420p';
  /**
   * what draws I420 frames (the warp and the inner mouth): 'auto' (default) the native addon's compiled
   * kernels when it is built, else the TypeScript ones; 'js' always the TypeScript ones; 'native' the
   * compiled ones or an error. Both give the same bytes.
   */
  kernel?: 'auto' | 'js' | 'native';
}

/** What one frame shows besides the mouth. */
export interface FrameState {
  /** 0 open .. 1 closed */
  blink: number;
  /** head rotation in radians and translation in pixels */
  headAngle: number;
  headX: number;
  headY: number;
}

// ---- deterministic randomness -------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Blink times (seconds) over `duration`: irregular gaps around the mean rate, none in the first half second. */
export function blinkSchedule(duration: number, blinksPerMinute: number, seed: number): number[] {
  if (blinksPerMinute <= 0) return [];
  const random = mulberry32(seed ^ 0x5eed);
  const mean = 60 / blinksPerMinute;
  const times: number[] = [];
  let t = 0.5 + random() * mean;
  while (t < duration - 0.2) {
    times.push(t);
    // gaps between 0.4x and 1.6x the mean, never closer than 1.2 s: people do not blink in bursts
    t += Math.max(1.2, mean * (0.4 + 1.2 * random()));
  }
  return times;
}

/** Eyelid closure 0..1 at time t: 60 ms to close, 30 ms shut, 100 ms to open. */
export function blinkAt(t: number, times: readonly number[]): number {
  for (const start of times) {
    const d = t - start;
    if (d < 0) break;
    if (d < 0.06) return smooth(d / 0.06);
    if (d < 0.09) return 1;
    if (d < 0.19) return 1 - smooth((d - 0.09) / 0.1);
  }
  return 0;
}

const smooth = (x: number): number => x * x * (3 - 2 * x);

/** Smooth head motion: a few slow sines with seeded phases; zero at t = 0 is not needed, it fades in. */
export function headMotionAt(t: number, motion: HeadMotion, seed: number, faceScale: number): Pick<FrameState, 'headAngle' | 'headX' | 'headY'> {
  if (motion === 'none') return { headAngle: 0, headX: 0, headY: 0 };
  const random = mulberry32(seed ^ 0xbead);
  const amp = motion === 'lively' ? 1 : 0.4;
  const wave = (): number => {
    let v = 0;
    for (let i = 0; i < 3; i++) {
      const freq = 0.07 + random() * 0.3;
      const phase = random() * Math.PI * 2;
      v += Math.sin(2 * Math.PI * freq * t + phase) / 3;
    }
    return v;
  };
  // ease in over the first second so the first frame is the photo itself
  const ease = Math.min(1, t);
  return {
    headAngle: ease * amp * wave() * (2.2 * Math.PI / 180),
    headX: ease * amp * wave() * 0.035 * faceScale,
    headY: ease * amp * wave() * 0.025 * faceScale,
  };
}

// ---- face geometry ------------------------------------------------------------------------------

interface Vec {
  x: number;
  y: number;
}

const mean = (points: readonly FacePoint[], from: number, to: number): Vec => {
  let x = 0;
  let y = 0;
  for (let i = from; i <= to; i++) {
    x += (points[i] as FacePoint).x;
    y += (points[i] as FacePoint).y;
  }
  const n = to - from + 1;
  return { x: x / n, y: y / n };
};

/** How strongly each jaw contour point (0..16) follows the chin when the jaw drops. */
const JAW_FOLLOW = [0, 0, 0, 0.1, 0.3, 0.55, 0.78, 0.93, 1, 0.93, 0.78, 0.55, 0.3, 0.1, 0, 0, 0];

/**
 * Renders frames of a talking face by moving the photo's own pixels: a piecewise-affine warp over a
 * triangulation of the 68 landmarks plus fixed anchors, an inner mouth drawn into the lip opening, and
 * blinks and head motion on the same mesh. Anchors on a rectangle around the head never move, so every
 * pixel outside it is the photo's, frame after frame.
 */
export class FaceRenderer {
  readonly width: number;
  readonly height: number;
  private readonly base: Uint8Array;
  private readonly rest: Float64Array;
  /** per control point: how much it follows the head (1 face, 0.45 mid ring, 0 anchors) */
  private readonly headWeight: Float32Array;
  private readonly triangles: Uint32Array;
  private readonly moved: Float64Array;
  /**
   * frames are drawn into these in turn, so a consumer may still read the last few while the next is drawn:
   * RGBA frames, or I420 frames drawn as I420 (then no RGBA frame exists at all)
   */
  private readonly buffers: Uint8Array[];
  /** per buffer: the region that differs from the photo */
  private readonly dirtyOf: ([number, number, number, number] | null)[];
  private current = 0;
  private out: Uint8Array;
  private readonly ux: Vec;
  private readonly uy: Vec;
  private readonly mouthWidth: number;
  private readonly pivot: Vec;
  private readonly expressiveness: number;

  /** the photo as I420, when frames are drawn as I420 */
  private readonly baseYuv: Uint8Array | null;
  /** one triangle's affine map, reused for every triangle */
  private readonly map = new TriangleMap();
  /** offsets into `triangles` of this frame's moving triangles (the first activeCount) */
  private readonly active: Uint32Array;
  /** the compiled I420 warp and inner mouth, when the native addon has them and frames are I420 */
  private readonly nativeWarp: WarpI420 | undefined;
  private readonly nativeMouth: MouthI420 | undefined;

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

    const eyeL = mean(landmarks, 36, 41);
    const eyeR = mean(landmarks, 42, 47);
    const ex = eyeR.x - eyeL.x;
    const ey = eyeR.y - eyeL.y;
    const iod = Math.hypot(ex, ey);
    this.ux = { x: ex / iod, y: ey / iod };
    this.uy = { x: -this.ux.y, y: this.ux.x };
    const p = (i: number): FacePoint => landmarks[i] as FacePoint;
    this.mouthWidth = Math.hypot(p(54).x - p(48).x, p(54).y - p(48).y);
    const center = mean(landmarks, 0, 67);
    let radius = 0;
    for (const q of landmarks) radius = Math.max(radius, Math.hypot(q.x - center.x, q.y - center.y));
    // pivot for head motion: below the chin, where the neck turns
    this.pivot = { x: p(8).x + this.uy.x * radius * 0.4, y: p(8).y + this.uy.y * radius * 0.4 };

    const pts: Vec[] = landmarks.map((q) => ({ x: q.x, y: q.y }));
    const weights: number[] = landmarks.map(() => 1);
    // the forehead moves with the head: points above the brows
    for (const i of [17, 19, 21, 22, 24, 26]) {
      pts.push({ x: p(i).x - this.uy.x * iod * 0.7, y: p(i).y - this.uy.y * iod * 0.7 });
      weights.push(1);
    }
    // around each eye, points that stay put during a blink: the lid closes without bending the brow,
    // the glasses or the cheek
    for (const [corner0, corner1, up0, up1, low0, low1] of [[36, 39, 37, 38, 41, 40], [42, 45, 43, 44, 47, 46]] as const) {
      const eyeWidth = Math.hypot(p(corner1).x - p(corner0).x, p(corner1).y - p(corner0).y);
      for (const i of [up0, up1]) {
        pts.push({ x: p(i).x - this.uy.x * eyeWidth * 0.3, y: p(i).y - this.uy.y * eyeWidth * 0.3 });
        weights.push(1);
      }
      for (const i of [low0, low1]) {
        pts.push({ x: p(i).x + this.uy.x * eyeWidth * 0.22, y: p(i).y + this.uy.y * eyeWidth * 0.22 });
        weights.push(1);
      }
      for (const [i, dir] of [[corner0, -1], [corner1, 1]] as const) {
        pts.push({ x: p(i).x + this.ux.x * eyeWidth * 0.18 * dir, y: p(i).y + this.ux.y * eyeWidth * 0.18 * dir });
        weights.push(1);
      }
    }
    // a ring around the head that follows it halfway, so motion fades out smoothly
    const rx = radius * 1.3;
    const ry = radius * 1.4;
    for (let k = 0; k < 16; k++) {
      const a = (k / 16) * Math.PI * 2;
      const lx = Math.cos(a) * rx;
      const ly = Math.sin(a) * ry;
      pts.push({ x: center.x + this.ux.x * lx + this.uy.x * ly, y: center.y + this.ux.y * lx + this.uy.y * ly });
      weights.push(0.45);
    }
    // fixed anchors on a rectangle well outside the ring: the warp ends there
    const x0 = Math.floor(center.x - rx * 1.18);
    const x1 = Math.ceil(center.x + rx * 1.18);
    const y0 = Math.floor(center.y - ry * 1.18);
    const y1 = Math.ceil(center.y + ry * 1.18);
    for (let k = 0; k < 5; k++) {
      const fx = x0 + ((x1 - x0) * k) / 4;
      const fy = y0 + ((y1 - y0) * k) / 4;
      pts.push({ x: fx, y: y0 }, { x: fx, y: y1 });
      weights.push(0, 0);
      if (k > 0 && k < 4) {
        pts.push({ x: x0, y: fy }, { x: x1, y: fy });
        weights.push(0, 0);
      }
    }
    this.rest = new Float64Array(pts.length * 2);
    pts.forEach((q, i) => {
      this.rest[2 * i] = q.x;
      this.rest[2 * i + 1] = q.y;
    });
    this.moved = new Float64Array(this.rest);
    this.headWeight = Float32Array.from(weights);
    // Triangulated with the mouth wide open: in the photo the lips touch, and a mesh made there joins the
    // upper lip to the lower one with thin triangles that an opening mouth stretches into streaks across
    // the lips. Made on the open shape, no triangle spans the opening except inside it, where the inner
    // mouth is drawn over them.
    this.pose({ jawOpen: 1, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 }, { blink: 0, headAngle: 0, headX: 0, headY: 0 });
    // and the lower lip pushed further down, so that near the corners, too, the mesh goes around the
    // opening rather than across it; never so far that it passes the chin
    {
      const m = this.moved;
      const chinRoom = ((m[2 * 8] as number) - (m[2 * 57] as number)) * this.uy.x + ((m[2 * 8 + 1] as number) - (m[2 * 57 + 1] as number)) * this.uy.y;
      const push = Math.max(0, Math.min(0.25 * this.mouthWidth, chinRoom - 0.15 * this.mouthWidth));
      for (const i of [55, 56, 57, 58, 59, 65, 66, 67]) {
        m[2 * i] = (m[2 * i] as number) + this.uy.x * push;
        m[2 * i + 1] = (m[2 * i + 1] as number) + this.uy.y * push;
      }
    }
    this.triangles = Uint32Array.from(new Delaunator(this.moved).triangles);
    this.moved.set(this.rest);
    this.active = new Uint32Array(this.triangles.length / 3);
    const kernel = options.kernel ?? 'auto';
    // (a chroma plane needs two samples a side for the compiled kernel's bilinear reads)
    const compiled = this.baseYuv && kernel !== 'js' && this.width >= 4 && this.height >= 4 ? frameKernels() : undefined;
    if (kernel === 'native' && !compiled) {
      throw new Error(this.baseYuv ? 'the native warp kernel is not built (npm run build:addon -w native)' : 'the native warp kernel draws I420 frames only');
    }
    this.nativeWarp = compiled?.warpI420;
    this.nativeMouth = compiled?.mouthI420;
  }

  /** Which warp draws the frames: the compiled kernel of the native addon, or the TypeScript one. */
  get kernel(): 'native' | 'js' {
    return this.nativeWarp ? 'native' : 'js';
  }

  /** Mouth size in pixels: the scale every mouth shape is measured against. */
  get mouthScale(): number {
    return this.mouthWidth;
  }

  /** Moves the control points for one frame: mouth, jaw and eyelids, then the whole head. */
  private pose(mouth: MouthPose, state: FrameState): { gap: number } {
    const m = this.moved;
    m.set(this.rest);
    const e = this.expressiveness;
    const W = this.mouthWidth;
    const jaw = Math.max(0, Math.min(1, mouth.jawOpen * e));
    const closure = Math.max(0, Math.min(1, mouth.lipClosure));
    const tuck = Math.max(0, Math.min(1, mouth.lipToTeeth));
    const width = Math.max(-1, Math.min(1, mouth.lipWidth * e));
    // f/v: the lower lip tucks under the upper teeth, leaving a sliver where the teeth show
    const gap = 0.5 * W * jaw * (1 - closure) * (1 - 0.75 * tuck) + 0.05 * W * tuck * (1 - closure);
    const jawDrop = 0.42 * W * jaw;
    const { ux, uy } = this;
    const move = (i: number, along: number, down: number): void => {
      m[2 * i] = (m[2 * i] as number) + ux.x * along + uy.x * down;
      m[2 * i + 1] = (m[2 * i + 1] as number) + ux.y * along + uy.y * down;
    };
    // jaw and chin follow the jaw drop, fading toward the ears
    for (let i = 0; i <= 16; i++) move(i, 0, (JAW_FOLLOW[i] as number) * jawDrop);
    // upper lip lifts a little; the lower lip carries most of the opening
    const pout = Math.max(0, -width) * 0.035 * W;
    for (const i of [50, 51, 52]) move(i, 0, -0.1 * gap - pout);
    for (const i of [49, 53]) move(i, 0, -0.06 * gap - pout * 0.6);
    for (const i of [61, 62, 63]) move(i, 0, -0.12 * gap);
    const lower = 0.88 * gap + 0.12 * jawDrop - tuck * 0.03 * W;
    for (const i of [56, 57, 58]) move(i, 0, lower + pout);
    for (const i of [55, 59]) move(i, 0, 0.7 * lower + pout * 0.6);
    for (const i of [65, 66, 67]) move(i, 0, lower);
    // corners: spread or round, and drop a little as the mouth opens
    const spread = width >= 0 ? width * 0.07 * W : width * 0.11 * W;
    const pinch = 0.05 * gap;
    move(48, -spread + pinch, 0.3 * gap);
    move(60, -spread + pinch, 0.3 * gap);
    move(54, spread - pinch, 0.3 * gap);
    move(64, spread - pinch, 0.3 * gap);
    // eyelids: the upper lid comes down onto the lower one
    if (state.blink > 0) {
      for (const [upper, lower2] of [[37, 41], [38, 40], [43, 47], [44, 46]] as const) {
        const dx = (this.rest[2 * lower2] as number) - (this.rest[2 * upper] as number);
        const dy = (this.rest[2 * lower2 + 1] as number) - (this.rest[2 * upper + 1] as number);
        m[2 * upper] = (m[2 * upper] as number) + dx * 0.97 * state.blink;
        m[2 * upper + 1] = (m[2 * upper + 1] as number) + dy * 0.97 * state.blink;
      }
    }
    // the head turns about the neck; each point follows by its weight
    if (state.headAngle !== 0 || state.headX !== 0 || state.headY !== 0) {
      const n = m.length / 2;
      for (let i = 0; i < n; i++) {
        const w = this.headWeight[i] as number;
        if (w === 0) continue;
        const a = state.headAngle * w;
        const cos = Math.cos(a);
        const sin = Math.sin(a);
        const x = (m[2 * i] as number) - this.pivot.x;
        const y = (m[2 * i + 1] as number) - this.pivot.y;
        m[2 * i] = this.pivot.x + x * cos - y * sin + state.headX * w;
        m[2 * i + 1] = this.pivot.y + x * sin + y * cos + state.headY * w;
      }
    }
    return { gap };
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
    const { gap } = this.pose(mouth, state);
    const tri = this.triangles;
    const m = this.moved;
    const r = this.rest;
    // only triangles with a moved corner change pixels; the rest of the frame stays the photo's
    let bx0 = Infinity;
    let by0 = Infinity;
    let bx1 = -Infinity;
    let by1 = -Infinity;
    const active = this.active;
    let count = 0;
    for (let t = 0; t < tri.length; t += 3) {
      let moving = false;
      for (let k = 0; k < 3; k++) {
        const v = tri[t + k] as number;
        if (Math.abs((m[2 * v] as number) - (r[2 * v] as number)) > 1e-3 || Math.abs((m[2 * v + 1] as number) - (r[2 * v + 1] as number)) > 1e-3) moving = true;
      }
      if (!moving) continue;
      active[count++] = t;
      for (let k = 0; k < 3; k++) {
        const v = tri[t + k] as number;
        const mx = m[2 * v] as number, my = m[2 * v + 1] as number, rx = r[2 * v] as number, ry = r[2 * v + 1] as number;
        bx0 = Math.min(bx0, mx, rx);
        bx1 = Math.max(bx1, mx, rx);
        by0 = Math.min(by0, my, ry);
        by1 = Math.max(by1, my, ry);
      }
    }
    const now: [number, number, number, number] | null = count > 0
      ? [Math.max(0, Math.floor(bx0) - 1), Math.max(0, Math.floor(by0) - 1), Math.min(this.width - 1, Math.ceil(bx1) + 1), Math.min(this.height - 1, Math.ceil(by1) + 1)]
      : null;
    // restore what this buffer's previous frame changed and this one may not
    const restore = union(this.dirtyOf[this.current] ?? null, now);
    if (restore) this.restore(restore);
    if (this.nativeWarp && this.baseYuv) {
      this.nativeWarp(this.baseYuv, this.out, this.width, this.height, m, r, tri, active, count);
    } else {
      for (let n = 0; n < count; n++) {
        const t = active[n] as number;
        const a = tri[t] as number, b = tri[t + 1] as number, c = tri[t + 2] as number;
        if (this.baseYuv) this.warpTriangleYuv(a, b, c);
        else this.warpTriangle(a, b, c);
      }
    }
    if (gap > 0.25) this.drawMouth(mouth);
    this.dirtyOf[this.current] = now;
    return this.out;
  }

  /** Copies the photo back over a region (inclusive corners) of the current buffer. */
  private restore([x0, y0, x1, y1]: [number, number, number, number]): void {
    const W = this.width;
    const base = this.baseYuv;
    if (!base) {
      for (let y = y0; y <= y1; y++) {
        const start = (y * W + x0) * 4;
        this.out.set(this.base.subarray(start, start + (x1 - x0 + 1) * 4), start);
      }
      return;
    }
    for (let y = y0; y <= y1; y++) this.out.set(base.subarray(y * W + x0, y * W + x1 + 1), y * W + x0);
    const half = W / 2;
    const cx0 = x0 >> 1, cx1 = x1 >> 1;
    for (const plane of [W * this.height, (W * this.height * 5) / 4]) {
      for (let y = y0 >> 1; y <= y1 >> 1; y++) {
        const start = plane + y * half;
        this.out.set(base.subarray(start + cx0, start + cx1 + 1), start + cx0);
      }
    }
  }

  /** Fills the moved triangle with the photo's pixels from the rest triangle (bilinear). */
  private warpTriangle(a: number, b: number, c: number): void {
    const W = this.width;
    const H = this.height;
    const map = this.map;
    if (!map.set(this.moved, this.rest, a, b, c, 1, 0, W, H)) return;
    const { xx, xy, x0, yx, yy, y0, inside } = map;
    const base = this.base;
    const out = this.out;
    const row = W * 4;
    for (let y = map.minY; y <= map.maxY; y++) {
      if (!map.span(y)) continue;
      const lo = map.lo;
      const hi = map.hi;
      let sx = xx * lo + xy * y + x0;
      let sy = yx * lo + yy * y + y0;
      let o = (y * W + lo) * 4;
      if (inside) {
        // the source triangle lies inside the image: no clamping needed
        // 8-bit fixed-point weights: integer arithmetic, about twice as fast as floating point here
        for (let x = lo; x <= hi; x++, sx += xx, sy += yx, o += 4) {
          const ix = sx | 0;
          const iy = sy | 0;
          const fx = ((sx - ix) * 256) | 0;
          const fy = ((sy - iy) * 256) | 0;
          const i00 = iy * row + ix * 4;
          const i01 = i00 + row;
          const w11 = fx * fy;
          const w10 = (fx << 8) - w11;
          const w01 = (fy << 8) - w11;
          const w00 = 65536 - (fx << 8) - (fy << 8) + w11;
          out[o] = ((base[i00] as number) * w00 + (base[i00 + 4] as number) * w10 + (base[i01] as number) * w01 + (base[i01 + 4] as number) * w11 + 32768) >>> 16;
          out[o + 1] = ((base[i00 + 1] as number) * w00 + (base[i00 + 5] as number) * w10 + (base[i01 + 1] as number) * w01 + (base[i01 + 5] as number) * w11 + 32768) >>> 16;
          out[o + 2] = ((base[i00 + 2] as number) * w00 + (base[i00 + 6] as number) * w10 + (base[i01 + 2] as number) * w01 + (base[i01 + 6] as number) * w11 + 32768) >>> 16;
          out[o + 3] = 255;
        }
        continue;
      }
      for (let x = lo; x <= hi; x++, sx += xx, sy += yx, o += 4) {
        // bilinear sample, clamped to the image
        const fx = sx < 0 ? 0 : sx > W - 1.001 ? W - 1.001 : sx;
        const fy = sy < 0 ? 0 : sy > H - 1.001 ? H - 1.001 : sy;
        const ix = fx | 0;
        const iy = fy | 0;
        const tx = fx - ix;
        const ty = fy - iy;
        const i00 = iy * row + ix * 4;
        const i01 = i00 + row;
        const w11 = tx * ty;
        const w10 = tx - w11;
        const w01 = ty - w11;
        const w00 = 1 - tx - w01;
        out[o] = (base[i00] as number) * w00 + (base[i00 + 4] as number) * w10 + (base[i01] as number) * w01 + (base[i01 + 4] as number) * w11 + 0.5;
        out[o + 1] = (base[i00 + 1] as number) * w00 + (base[i00 + 5] as number) * w10 + (base[i01 + 1] as number) * w01 + (base[i01 + 5] as number) * w11 + 0.5;
        out[o + 2] = (base[i00 + 2] as number) * w00 + (base[i00 + 6] as number) * w10 + (base[i01 + 2] as number) * w01 + (base[i01 + 6] as number) * w11 + 0.5;
        out[o + 3] = 255;
      }
    }
  }

  /** The same warp drawn straight into the I420 planes: luma at full size, both chroma planes at half. */
  private warpTriangleYuv(a: number, b: number, c: number): void {
    const W = this.width;
    const H = this.height;
    const src = this.baseYuv as Uint8Array;
    const map = this.map;
    if (map.set(this.moved, this.rest, a, b, c, 1, 0, W, H)) warpPlanes(map, src, this.out, 0, -1, W, H);
    if (map.set(this.moved, this.rest, a, b, c, 0.5, 0.5, W / 2, H / 2)) warpPlanes(map, src, this.out, W * H, (W * H * 5) / 4, W / 2, H / 2);
  }

  /**
   * Draws the inside of the open mouth into the inner-lip polygon: a dark cavity, upper teeth under the
   * upper lip with soft shading, lower teeth and a hint of tongue when it opens wide; edges blend into the
   * lips over about a pixel.
   */
  private drawMouth(mouth: MouthPose): void {
    const m = this.moved;
    const corners: Vec[] = [];
    for (let i = 60; i <= 67; i++) corners.push({ x: m[2 * i] as number, y: m[2 * i + 1] as number });
    // eight landmarks make an octagon; lips are curves, so draw a closed Catmull-Rom spline through them
    const poly: Vec[] = [];
    for (let i = 0; i < 8; i++) {
      const p0 = corners[(i + 7) % 8] as Vec, p1 = corners[i] as Vec, p2 = corners[(i + 1) % 8] as Vec, p3 = corners[(i + 2) % 8] as Vec;
      for (let k = 0; k < 4; k++) {
        const t = k / 4, t2 = t * t, t3 = t2 * t;
        poly.push({
          x: 0.5 * (2 * p1.x + (-p0.x + p2.x) * t + (2 * p0.x - 5 * p1.x + 4 * p2.x - p3.x) * t2 + (-p0.x + 3 * p1.x - 3 * p2.x + p3.x) * t3),
          y: 0.5 * (2 * p1.y + (-p0.y + p2.y) * t + (2 * p0.y - 5 * p1.y + 4 * p2.y - p3.y) * t2 + (-p0.y + 3 * p1.y - 3 * p2.y + p3.y) * t3),
        });
      }
    }
    let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
    for (const q of poly) {
      minX = Math.min(minX, q.x);
      maxX = Math.max(maxX, q.x);
      minY = Math.min(minY, q.y);
      maxY = Math.max(maxY, q.y);
    }
    const W = this.width;
    const x0 = Math.max(0, Math.floor(minX) - 1);
    const x1 = Math.min(W - 1, Math.ceil(maxX) + 1);
    const y0 = Math.max(0, Math.floor(minY) - 1);
    const y1 = Math.min(this.height - 1, Math.ceil(maxY) + 1);
    const mouthW = Math.max(1, maxX - minX);
    const centerX = (minX + maxX) / 2;
    const { ux, uy } = this;
    // face-aligned coordinates of the upper and lower inner lip at the mouth's middle
    const top = (m[2 * 62 + 1] as number);
    const bottom = (m[2 * 66 + 1] as number);
    const height = Math.max(1, bottom - top);
    const teethH = Math.min(height * 0.55, 0.17 * this.mouthWidth) * Math.min(1, 0.35 + 1.1 * Math.max(mouth.teethVisible, mouth.lipToTeeth));
    const lowerTeethH = Math.max(0, Math.min(height * 0.18, 0.07 * this.mouthWidth) * Math.min(1, height / (0.35 * this.mouthWidth) - 0.6));
    const toothPitch = this.mouthWidth / 8.5;
    const out = this.out;
    if (this.nativeMouth && this.baseYuv) {
      const outline = new Float64Array(poly.length * 2);
      poly.forEach((q, i) => {
        outline[2 * i] = q.x;
        outline[2 * i + 1] = q.y;
      });
      this.nativeMouth(out, W, this.height, outline, Float64Array.of(x0, x1, y0, y1, centerX, top, bottom, height, mouthW, teethH, lowerTeethH, toothPitch, this.mouthWidth, ux.x, ux.y, uy.x, uy.y));
      return;
    }
    // for I420 frames: per chroma block, the summed coverage and coverage-weighted U and V
    const cx0 = x0 >> 1, cx1 = x1 >> 1, cy0 = y0 >> 1, cy1 = y1 >> 1;
    const cw = cx1 - cx0 + 1;
    const chroma = this.baseYuv ? new Float64Array(3 * cw * (cy1 - cy0 + 1)) : null;
    const outline = new OutlineRows(poly);
    for (let y = y0; y <= y1; y++) {
      outline.row(y);
      for (let x = x0; x <= x1; x++) {
        const d = outline.distance(x);
        const alpha = d >= 0.7 ? 1 : d <= -0.7 ? 0 : (d + 0.7) / 1.4;
        if (alpha <= 0) continue;
        // position inside the mouth, in the face's own frame
        const along = (x - centerX) * ux.x + (y - top) * ux.y;
        const down = (x - centerX) * uy.x + (y - top) * uy.y;
        const side = Math.min(1, Math.abs(along) / (mouthW / 2));
        const depth = Math.min(1, Math.max(0, d / 3));
        // the cavity: dark red, darker toward the back and the corners
        let cr = 70 - 35 * depth - 20 * side;
        let cg = 24 - 12 * depth - 8 * side;
        let cb = 28 - 12 * depth - 8 * side;
        const bottomDist = bottom - y;
        if (height > 0.22 * this.mouthWidth && bottomDist < height * 0.45) {
          // tongue: a soft reddish mound at the bottom middle
          const tz = 1 - Math.min(1, Math.abs(along) / (mouthW * 0.32));
          const tt = Math.min(1, (height * 0.45 - bottomDist) / (height * 0.3)) * tz;
          cr += (150 - cr) * tt * 0.8;
          cg += (62 - cg) * tt * 0.8;
          cb += (70 - cb) * tt * 0.8;
        }
        if (down >= -1 && down < teethH) {
          // upper teeth: off-white, shaded toward the corners and the biting edge, faint gaps between teeth
          const edge = 1 - Math.max(0, (down - teethH * 0.7) / (teethH * 0.3 + 1e-6)) * 0.3;
          const gum = Math.min(1, Math.max(0, down + 1) / (teethH * 0.25 + 1));
          const shade = (1 - 0.6 * side * side) * edge * (0.7 + 0.3 * gum);
          const gapLine = Math.abs(((along / toothPitch + 100.5) % 1) - 0.5) < 0.07 ? 0.86 : 1;
          const k = shade * gapLine;
          cr = 232 * k;
          cg = 218 * k;
          cb = 192 * k;
        } else if (lowerTeethH > 0.5 && bottomDist >= 0 && bottomDist < lowerTeethH) {
          const shade = (1 - 0.6 * side * side) * 0.75;
          cr = 222 * shade;
          cg = 212 * shade;
          cb = 194 * shade;
        }
        // a shadow just inside the lips
        const rim = Math.max(0, 1 - d / 1.6) * 0.35;
        cr *= 1 - rim;
        cg *= 1 - rim;
        cb *= 1 - rim;
        if (chroma) {
          // I420: luma blended per pixel, chroma gathered per 2x2 block (the matrix of rgbaToI420)
          const o = y * W + x;
          out[o] = (out[o] as number) * (1 - alpha) + (16 + (47 * cr + 157 * cg + 16 * cb) / 256) * alpha + 0.5;
          const cell = 3 * (((y >> 1) - cy0) * cw + (x >> 1) - cx0);
          chroma[cell] = (chroma[cell] as number) + alpha;
          chroma[cell + 1] = (chroma[cell + 1] as number) + alpha * (128 + (-26 * cr - 86 * cg + 112 * cb) / 256);
          chroma[cell + 2] = (chroma[cell + 2] as number) + alpha * (128 + (112 * cr - 102 * cg - 10 * cb) / 256);
          continue;
        }
        const o = (y * W + x) * 4;
        out[o] = (out[o] as number) * (1 - alpha) + cr * alpha + 0.5;
        out[o + 1] = (out[o + 1] as number) * (1 - alpha) + cg * alpha + 0.5;
        out[o + 2] = (out[o + 2] as number) * (1 - alpha) + cb * alpha + 0.5;
      }
    }
    if (!chroma) return;
    // each block's chroma moves toward the mouth's by the share of the block the mouth covers
    const half = W / 2;
    const uPlane = W * this.height;
    const vPlane = uPlane + (W * this.height) / 4;
    for (let cy = cy0; cy <= cy1; cy++) {
      for (let cx = cx0; cx <= cx1; cx++) {
        const cell = 3 * ((cy - cy0) * cw + cx - cx0);
        const cover = (chroma[cell] as number) / 4;
        if (cover <= 0) continue;
        const u = uPlane + cy * half + cx;
        const v = vPlane + cy * half + cx;
        out[u] = (out[u] as number) * (1 - cover) + (chroma[cell + 1] as number) / 4 + 0.5;
        out[v] = (out[v] as number) * (1 - cover) + (chroma[cell + 2] as number) / 4 + 0.5;
      }
    }
  }
}

/**
 * Converts a rectangle (inclusive corners, widened to even coordinates) of an RGBA image into planar
 * I420 with the BT.709 matrix in limited range, the encoder's own choice, in 8.8 fixed point.
 * Chroma is the 2x2 average of the pixels it covers.
 */
export function rgbaToI420(rgba: Uint8Array, width: number, height: number, yuv: Uint8Array, x0: number, y0: number, x1: number, y1: number): void {
  const ax = x0 & ~1;
  const ay = y0 & ~1;
  const bx = Math.min(width - 1, x1 | 1);
  const by = Math.min(height - 1, y1 | 1);
  const uOffset = width * height;
  const vOffset = uOffset + (width * height) / 4;
  const half = width / 2;
  for (let y = ay; y <= by; y += 2) {
    for (let x = ax; x <= bx; x += 2) {
      let rs = 0, gs = 0, bs = 0;
      for (let dy = 0; dy < 2; dy++) {
        const row = (y + dy) * width;
        for (let dx = 0; dx < 2; dx++) {
          const i = (row + x + dx) * 4;
          const r = rgba[i] as number, g = rgba[i + 1] as number, b = rgba[i + 2] as number;
          yuv[row + x + dx] = 16 + ((47 * r + 157 * g + 16 * b + 128) >> 8);
          rs += r;
          gs += g;
          bs += b;
        }
      }
      const c = (y >> 1) * half + (x >> 1);
      // sums of four: divide by 4 inside the shift
      yuv[uOffset + c] = 128 + ((-26 * rs - 86 * gs + 112 * bs + 512) >> 10);
      yuv[vOffset + c] = 128 + ((112 * rs - 102 * gs - 10 * bs + 512) >> 10);
    }
  }
}

/**
 * The affine map of one triangle from destination pixels to source pixels (both given as control point
 * indices into the moved and rest point arrays), and the span of pixels each row has inside it. Points
 * are taken to a plane's own grid as (p - shift) * scale: chroma samples of I420 sit at the centre of
 * each 2x2 block, so a chroma plane uses scale 1/2 and shift 1/2.
 */
class TriangleMap {
  // destination (x, y) -> source (xx * x + xy * y + x0, yx * x + yy * y + y0)
  xx = 0; xy = 0; x0 = 0; yx = 0; yy = 0; y0 = 0;
  // barycentric weights of the second and third corner as linear functions of (x, y)
  private ux = 0; private uy = 0; private u0 = 0; private vx = 0; private vy = 0; private v0 = 0;
  minX = 0; maxX = 0; minY = 0; maxY = 0;
  /** the source triangle lies at least a pixel inside the plane: samples need no clamping */
  inside = false;
  /** the row's span after span() */
  lo = 0; hi = 0;

  /** false when the triangle is degenerate (nothing to draw) */
  set(moved: Float64Array, rest: Float64Array, a: number, b: number, c: number, scale: number, shift: number, W: number, H: number): boolean {
    const ax = ((moved[2 * a] as number) - shift) * scale, ay = ((moved[2 * a + 1] as number) - shift) * scale;
    const bx = ((moved[2 * b] as number) - shift) * scale, by = ((moved[2 * b + 1] as number) - shift) * scale;
    const cx = ((moved[2 * c] as number) - shift) * scale, cy = ((moved[2 * c + 1] as number) - shift) * scale;
    const det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay);
    if (Math.abs(det) < 1e-9) return false;
    const sax = ((rest[2 * a] as number) - shift) * scale, say = ((rest[2 * a + 1] as number) - shift) * scale;
    const sbx = ((rest[2 * b] as number) - shift) * scale, sby = ((rest[2 * b + 1] as number) - shift) * scale;
    const scx = ((rest[2 * c] as number) - shift) * scale, scy = ((rest[2 * c + 1] as number) - shift) * scale;
    const inv = 1 / det;
    const ux = (cy - ay) * inv, uy = -(cx - ax) * inv, u0 = -(ux * ax + uy * ay);
    const vx = -(by - ay) * inv, vy = (bx - ax) * inv, v0 = -(vx * ax + vy * ay);
    this.ux = ux; this.uy = uy; this.u0 = u0; this.vx = vx; this.vy = vy; this.v0 = v0;
    this.xx = (sbx - sax) * ux + (scx - sax) * vx;
    this.xy = (sbx - sax) * uy + (scx - sax) * vy;
    this.x0 = sax + (sbx - sax) * u0 + (scx - sax) * v0;
    this.yx = (sby - say) * ux + (scy - say) * vx;
    this.yy = (sby - say) * uy + (scy - say) * vy;
    this.y0 = say + (sby - say) * u0 + (scy - say) * v0;
    this.minX = Math.max(0, Math.floor(Math.min(ax, bx, cx)));
    this.maxX = Math.min(W - 1, Math.ceil(Math.max(ax, bx, cx)));
    this.minY = Math.max(0, Math.floor(Math.min(ay, by, cy)));
    this.maxY = Math.min(H - 1, Math.ceil(Math.max(ay, by, cy)));
    // affine maps keep a point inside its triangle, so a source triangle with a one-pixel margin inside
    // the plane never samples outside it (the span test allows a hair past the edges: hence the margin)
    this.inside = Math.min(sax, sbx, scx) >= 1 && Math.min(say, sby, scy) >= 1 && Math.max(sax, sbx, scx) <= W - 3 && Math.max(say, sby, scy) <= H - 3;
    this.setUpSpans();
    return true;
  }

  /**
   * The span of x on row y where u >= 0, v >= 0 and u + v <= 1; false when empty. On a row each of the
   * three holds on one side of an x that moves linearly with y, so the bounds are set up once per
   * triangle (setUpSpans) and a row costs three multiply-adds. The native kernel does the same sums.
   */
  span(y: number): boolean {
    let lo = this.minX;
    let hi = this.maxX;
    const b = this.bounds;
    for (let k = 0; k < 9; k += 3) {
      const kind = b[k] as number;
      // clamped near the triangle's box: the same span, and the native kernel rounds it through int64
      const x = Math.min(this.maxX + 1, Math.max(this.minX - 1, (b[k + 1] as number) * y + (b[k + 2] as number)));
      if (kind > 0) lo = Math.max(lo, Math.ceil(x));
      else if (kind < 0) hi = Math.min(hi, Math.floor(x));
      else if (x < -1e-7) return false;
    }
    this.lo = lo;
    this.hi = hi;
    return lo <= hi;
  }

  /** per bound (u, v, 1 - u - v): kind (+1 lower bound on x, -1 upper, 0 none: all in or all out), slope, intercept */
  private readonly bounds = new Float64Array(9);

  private setUpSpans(): void {
    const { ux, uy, u0, vx, vy, v0 } = this;
    setBound(this.bounds, 0, ux, uy, u0);
    setBound(this.bounds, 3, vx, vy, v0);
    setBound(this.bounds, 6, -(ux + vx), -(uy + vy), 1 - (u0 + v0));
  }
}

/** k(x, y) = kx * x + ky * y + k0 >= 0 (a hair below, so shared edges belong to both triangles) as a bound on x. */
function setBound(out: Float64Array, at: number, kx: number, ky: number, k0: number): void {
  if (kx > 1e-12 || kx < -1e-12) {
    out[at] = kx > 0 ? 1 : -1;
    out[at + 1] = -ky / kx;
    out[at + 2] = -(k0 + 1e-7) / kx;
  } else {
    out[at] = 0;
    out[at + 1] = ky;
    out[at + 2] = k0;
  }
}

/**
 * Warps one triangle (set up in `map` on this plane's grid) of one plane, or of two planes with the same
 * geometry (U and V), from `src` into `dst`; planes start at offsets o1 and o2 (-1: none) and are W wide.
 */
function warpPlanes(map: TriangleMap, src: Uint8Array, dst: Uint8Array, o1: number, o2: number, W: number, H: number): void {
  const { xx, xy, x0, yx, yy, y0, inside } = map;
  // Inside the plane, source positions step in 16.16 fixed point and the bilinear blend is separable
  // integer arithmetic with 7-bit weights (1/128 of a pixel): no float-to-int conversion per sample,
  // and every product fits a signed 16-bit lane pair, which the native kernel's SIMD loop relies on. Over
  // a span of a few hundred pixels the stepping drifts by under 1/100 of a pixel.
  const stepX = Math.floor(xx * 65536 + 0.5);
  const stepY = Math.floor(yx * 65536 + 0.5);
  const limitX = (W - 1) * 65536;
  const limitY = (H - 1) * 65536;
  for (let y = map.minY; y <= map.maxY; y++) {
    if (!map.span(y)) continue;
    const lo = map.lo;
    const hi = map.hi;
    const sx = xx * lo + xy * y + x0;
    const sy = yx * lo + yy * y + y0;
    const fx0 = Math.floor(sx * 65536 + 0.5);
    const fy0 = Math.floor(sy * 65536 + 0.5);
    const fx1 = fx0 + (hi - lo) * stepX;
    const fy1 = fy0 + (hi - lo) * stepY;
    // Every read of the fixed-point path must stay inside the plane. The triangle test says so, and the
    // row's two ends (positions move linearly along it) confirm it even for a sliver of a triangle.
    if (inside && fx0 >= 0 && fx1 >= 0 && fx0 < limitX && fx1 < limitX && fy0 >= 0 && fy1 >= 0 && fy0 < limitY && fy1 < limitY) {
      const end = y * W + hi;
      let fxp = fx0;
      let fyp = fy0;
      if (o2 < 0) {
        for (let o = y * W + lo; o <= end; o++, fxp += stepX, fyp += stepY) {
          const fx = (fxp >> 9) & 127;
          const fy = (fyp >> 9) & 127;
          const k = o1 + (fyp >> 16) * W + (fxp >> 16);
          const top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          const bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o1 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
        }
      } else {
        for (let o = y * W + lo; o <= end; o++, fxp += stepX, fyp += stepY) {
          const fx = (fxp >> 9) & 127;
          const fy = (fyp >> 9) & 127;
          const i = (fyp >> 16) * W + (fxp >> 16);
          let k = o1 + i;
          let top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          let bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o1 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
          k = o2 + i;
          top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o2 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
        }
      }
      continue;
    }
    warpRowClamped(src, dst, o1, o2, W, H, y * W + lo, hi - lo + 1, sx, sy, xx, yx);
  }
}

/** One row of a triangle whose source reaches the plane's edge: floating point, clamped to the plane. */
function warpRowClamped(src: Uint8Array, dst: Uint8Array, o1: number, o2: number, W: number, H: number, start: number, count: number, sx0: number, sy0: number, xx: number, yx: number): void {
  let sx = sx0;
  let sy = sy0;
  for (let o = start; o < start + count; o++, sx += xx, sy += yx) {
    const fx = sx < 0 ? 0 : sx > W - 1.001 ? W - 1.001 : sx;
    const fy = sy < 0 ? 0 : sy > H - 1.001 ? H - 1.001 : sy;
    const ix = fx | 0;
    const iy = fy | 0;
    const tx = fx - ix;
    const ty = fy - iy;
    const i = iy * W + ix;
    const w11 = tx * ty;
    const w10 = tx - w11;
    const w01 = ty - w11;
    const w00 = 1 - tx - w01;
    let k = o1 + i;
    dst[o1 + o] = (src[k] as number) * w00 + (src[k + 1] as number) * w10 + (src[k + W] as number) * w01 + (src[k + W + 1] as number) * w11 + 0.5;
    if (o2 >= 0) {
      k = o2 + i;
      dst[o2 + o] = (src[k] as number) * w00 + (src[k + 1] as number) * w10 + (src[k + W] as number) * w01 + (src[k + W + 1] as number) * w11 + 0.5;
    }
  }
}

function union(a: [number, number, number, number] | null, b: [number, number, number, number] | null): [number, number, number, number] | null {
  if (!a) return b;
  if (!b) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

/** Distances beyond this are reported as this: the mouth's shading is the same from there on. */
const OUTLINE_REACH = 3;

/**
 * Signed distance to a closed polygon's outline (positive inside), row by row and capped at
 * OUTLINE_REACH: each row keeps only the edges that can come within reach of it and the x where edges
 * cross it, so a pixel tests a handful of edges instead of all of them.
 */
class OutlineRows {
  private readonly ax: Float64Array;
  private readonly ay: Float64Array;
  private readonly ex: Float64Array;
  private readonly ey: Float64Array;
  /** per edge: its x extent widened by the reach, its squared length */
  private readonly reachX0: Float64Array;
  private readonly reachX1: Float64Array;
  private readonly len: Float64Array;
  private readonly bx: Float64Array;
  private readonly by: Float64Array;
  /** this row's edges within reach, and the x where edges cross it (the first nearCount / crossCount) */
  private readonly near: Int32Array;
  private readonly crossings: Float64Array;
  private nearCount = 0;
  private crossCount = 0;
  private y = 0;

  constructor(poly: readonly Vec[]) {
    const n = poly.length;
    this.ax = new Float64Array(n);
    this.ay = new Float64Array(n);
    this.bx = new Float64Array(n);
    this.by = new Float64Array(n);
    this.ex = new Float64Array(n);
    this.ey = new Float64Array(n);
    this.reachX0 = new Float64Array(n);
    this.reachX1 = new Float64Array(n);
    this.len = new Float64Array(n);
    this.near = new Int32Array(n);
    this.crossings = new Float64Array(n);
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const ax = (poly[i] as Vec).x, ay = (poly[i] as Vec).y, bx = (poly[j] as Vec).x, by = (poly[j] as Vec).y;
      this.ax[i] = ax;
      this.ay[i] = ay;
      this.bx[i] = bx;
      this.by[i] = by;
      const ex = bx - ax, ey = by - ay;
      this.ex[i] = ex;
      this.ey[i] = ey;
      this.reachX0[i] = Math.min(ax, ax + ex) - OUTLINE_REACH;
      this.reachX1[i] = Math.max(ax, ax + ex) + OUTLINE_REACH;
      this.len[i] = ex * ex + ey * ey;
    }
  }

  row(y: number): void {
    this.y = y;
    let near = 0;
    let cross = 0;
    for (let i = 0; i < this.ax.length; i++) {
      const ay = this.ay[i] as number, by = this.by[i] as number;
      const ax = this.ax[i] as number, bx = this.bx[i] as number;
      if (ay > y !== by > y) this.crossings[cross++] = ((bx - ax) * (y - ay)) / (by - ay) + ax;
      if (Math.min(ay, by) - OUTLINE_REACH <= y && y <= Math.max(ay, by) + OUTLINE_REACH) this.near[near++] = i;
    }
    this.nearCount = near;
    this.crossCount = cross;
  }

  /** at (x, row y): positive inside, negative outside, magnitude at most OUTLINE_REACH */
  distance(x: number): number {
    // even-odd rule: inside when an odd number of edges cross the row to the right of x
    let inside = false;
    for (let k = 0; k < this.crossCount; k++) if (x < (this.crossings[k] as number)) inside = !inside;
    let best = OUTLINE_REACH * OUTLINE_REACH;
    const y = this.y;
    for (let k = 0; k < this.nearCount; k++) {
      const i = this.near[k] as number;
      if ((this.reachX0[i] as number) > x || (this.reachX1[i] as number) < x) continue;
      const ax = this.ax[i] as number, ay = this.ay[i] as number;
      const ex = this.ex[i] as number, ey = this.ey[i] as number;
      const len = this.len[i] as number;
      const t = len > 0 ? Math.max(0, Math.min(1, ((x - ax) * ex + (y - ay) * ey) / len)) : 0;
      const dx = ax + t * ex - x;
      const dy = ay + t * ey - y;
      best = Math.min(best, dx * dx + dy * dy);
    }
    const d = Math.sqrt(best);
    return inside ? d : -d;
  }
}
