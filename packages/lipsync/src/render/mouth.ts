import { OutlineRows } from './outline.js';
import type { FaceFrame, Vec } from './geometry.js';
import type { MouthPose } from '../track.js';

// The inner mouth: the cavity, teeth and tongue drawn into the lip opening. Its compiled twin is
// native/cpp/mouth.cc, which must draw the same bytes: same arithmetic, same order.

/**
 * The figures one frame's mouth is drawn from, in the order of the block handed to the native kernel
 * (the MOUTH_PARAMS list in native/cpp/mouth.h: a test checks that both lists agree).
 */
export const MOUTH_PARAM_FIELDS = [
  // the box drawn in: whole pixels inside the frame, inclusive
  'x0', 'x1', 'y0', 'y1',
  // the opening's middle column, the inner lips' top and bottom there, and the opening's height and width
  'centerX', 'top', 'bottom', 'gapHeight', 'mouthW',
  // how far the upper and lower teeth reach into the opening, and one tooth's width
  'teethH', 'lowerTeethH', 'toothPitch',
  // the mouth's width at rest (corner to corner), and the face's axes (along the eyes, down the face)
  'mouthWidth', 'uxx', 'uxy', 'uyx', 'uyy',
] as const;

export type MouthParams = Record<(typeof MOUTH_PARAM_FIELDS)[number], number>;

/** Writes the parameters into the block the native kernel reads, in MOUTH_PARAM_FIELDS order. */
export function packMouthParams(params: MouthParams, block: Float64Array = new Float64Array(MOUTH_PARAM_FIELDS.length)): Float64Array {
  MOUTH_PARAM_FIELDS.forEach((field, i) => {
    block[i] = params[field];
  });
  return block;
}

/**
 * The opening's outline: a closed Catmull-Rom spline through the eight inner-lip landmarks (60-67),
 * as x, y pairs. Lips are curves; the landmarks alone make an octagon.
 */
export function mouthOutline(moved: Float64Array): Float64Array {
  const corners: Vec[] = [];
  for (let i = 60; i <= 67; i++) corners.push({ x: moved[2 * i] as number, y: moved[2 * i + 1] as number });
  const out = new Float64Array(8 * 4 * 2);
  let n = 0;
  for (let i = 0; i < 8; i++) {
    const p0 = corners[(i + 7) % 8] as Vec, p1 = corners[i] as Vec, p2 = corners[(i + 1) % 8] as Vec, p3 = corners[(i + 2) % 8] as Vec;
    for (let k = 0; k < 4; k++) {
      const t = k / 4, t2 = t * t, t3 = t2 * t;
      out[n++] = 0.5 * (2 * p1.x + (-p0.x + p2.x) * t + (2 * p0.x - 5 * p1.x + 4 * p2.x - p3.x) * t2 + (-p0.x + 3 * p1.x - 3 * p2.x + p3.x) * t3);
      out[n++] = 0.5 * (2 * p1.y + (-p0.y + p2.y) * t + (2 * p0.y - 5 * p1.y + 4 * p2.y - p3.y) * t2 + (-p0.y + 3 * p1.y - 3 * p2.y + p3.y) * t3);
    }
  }
  return out;
}

/** This frame's mouth figures, from the posed control points (`moved`) and the opening's outline. */
export function mouthParams(moved: Float64Array, outline: Float64Array, face: FaceFrame, mouth: MouthPose, W: number, H: number): MouthParams {
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < outline.length; i += 2) {
    const x = outline[i] as number, y = outline[i + 1] as number;
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const mouthWidth = face.mouthWidth;
  // face-aligned coordinates of the upper and lower inner lip at the mouth's middle
  const top = moved[2 * 62 + 1] as number;
  const bottom = moved[2 * 66 + 1] as number;
  const gapHeight = Math.max(1, bottom - top);
  return {
    x0: Math.max(0, Math.floor(minX) - 1),
    x1: Math.min(W - 1, Math.ceil(maxX) + 1),
    y0: Math.max(0, Math.floor(minY) - 1),
    y1: Math.min(H - 1, Math.ceil(maxY) + 1),
    centerX: (minX + maxX) / 2,
    top,
    bottom,
    gapHeight,
    mouthW: Math.max(1, maxX - minX),
    teethH: Math.min(gapHeight * 0.55, 0.17 * mouthWidth) * Math.min(1, 0.35 + 1.1 * Math.max(mouth.teethVisible, mouth.lipToTeeth)),
    lowerTeethH: Math.max(0, Math.min(gapHeight * 0.18, 0.07 * mouthWidth) * Math.min(1, gapHeight / (0.35 * mouthWidth) - 0.6)),
    toothPitch: mouthWidth / 8.5,
    mouthWidth,
    uxx: face.ux.x,
    uxy: face.ux.y,
    uyx: face.uy.x,
    uyy: face.uy.y,
  };
}

/** The mouth's colour at one pixel, set by shadeMouth. */
interface Shade {
  r: number;
  g: number;
  b: number;
}

/** The colour inside the mouth at (x, y), `d` pixels inside the outline. */
function shadeMouth(p: MouthParams, x: number, y: number, d: number, out: Shade): void {
  const height = p.gapHeight;
  // position inside the mouth, in the face's own frame
  const along = (x - p.centerX) * p.uxx + (y - p.top) * p.uxy;
  const down = (x - p.centerX) * p.uyx + (y - p.top) * p.uyy;
  const side = Math.min(1, Math.abs(along) / (p.mouthW / 2));
  const depth = Math.min(1, Math.max(0, d / 3));
  // the cavity: dark red, darker toward the back and the corners
  let cr = 70 - 35 * depth - 20 * side;
  let cg = 24 - 12 * depth - 8 * side;
  let cb = 28 - 12 * depth - 8 * side;
  const bottomDist = p.bottom - y;
  if (height > 0.22 * p.mouthWidth && bottomDist < height * 0.45) {
    // tongue: a soft reddish mound at the bottom middle
    const tz = 1 - Math.min(1, Math.abs(along) / (p.mouthW * 0.32));
    const tt = Math.min(1, (height * 0.45 - bottomDist) / (height * 0.3)) * tz;
    cr += (150 - cr) * tt * 0.8;
    cg += (62 - cg) * tt * 0.8;
    cb += (70 - cb) * tt * 0.8;
  }
  if (down >= -1 && down < p.teethH) {
    // upper teeth: off-white, shaded toward the corners and the biting edge, faint gaps between teeth
    const edge = 1 - Math.max(0, (down - p.teethH * 0.7) / (p.teethH * 0.3 + 1e-6)) * 0.3;
    const gum = Math.min(1, Math.max(0, down + 1) / (p.teethH * 0.25 + 1));
    const shade = (1 - 0.6 * side * side) * edge * (0.7 + 0.3 * gum);
    const gapLine = Math.abs(((along / p.toothPitch + 100.5) % 1) - 0.5) < 0.07 ? 0.86 : 1;
    const k = shade * gapLine;
    cr = 232 * k;
    cg = 218 * k;
    cb = 192 * k;
  } else if (p.lowerTeethH > 0.5 && bottomDist >= 0 && bottomDist < p.lowerTeethH) {
    const shade = (1 - 0.6 * side * side) * 0.75;
    cr = 222 * shade;
    cg = 212 * shade;
    cb = 194 * shade;
  }
  // a shadow just inside the lips
  const rim = Math.max(0, 1 - d / 1.6) * 0.35;
  out.r = cr * (1 - rim);
  out.g = cg * (1 - rim);
  out.b = cb * (1 - rim);
}

/** Coverage of a pixel `d` pixels inside the outline: its edge blends into the lips over about a pixel. */
const coverage = (d: number): number => (d >= 0.7 ? 1 : d <= -0.7 ? 0 : (d + 0.7) / 1.4);

/** Draws the mouth into an RGBA frame. */
export function drawMouthRgba(out: Uint8Array, W: number, outline: Float64Array, p: MouthParams): void {
  const rows = new OutlineRows(outline);
  const c: Shade = { r: 0, g: 0, b: 0 };
  for (let y = p.y0; y <= p.y1; y++) {
    rows.row(y);
    for (let x = p.x0; x <= p.x1; x++) {
      const d = rows.distance(x);
      const alpha = coverage(d);
      if (alpha <= 0) continue;
      shadeMouth(p, x, y, d, c);
      const o = (y * W + x) * 4;
      out[o] = (out[o] as number) * (1 - alpha) + c.r * alpha + 0.5;
      out[o + 1] = (out[o + 1] as number) * (1 - alpha) + c.g * alpha + 0.5;
      out[o + 2] = (out[o + 2] as number) * (1 - alpha) + c.b * alpha + 0.5;
    }
  }
}

/**
 * Draws the mouth into an I420 frame (the matrix of rgbaToI420): luma blended per pixel, chroma per 2x2
 * block by the share of it the mouth covers.
 */
export function drawMouthI420(out: Uint8Array, W: number, H: number, outline: Float64Array, p: MouthParams): void {
  // per chroma block, the summed coverage and coverage-weighted U and V
  const cx0 = p.x0 >> 1, cx1 = p.x1 >> 1, cy0 = p.y0 >> 1, cy1 = p.y1 >> 1;
  const cw = cx1 - cx0 + 1;
  const chroma = new Float64Array(3 * cw * (cy1 - cy0 + 1));
  const rows = new OutlineRows(outline);
  const c: Shade = { r: 0, g: 0, b: 0 };
  for (let y = p.y0; y <= p.y1; y++) {
    rows.row(y);
    for (let x = p.x0; x <= p.x1; x++) {
      const d = rows.distance(x);
      const alpha = coverage(d);
      if (alpha <= 0) continue;
      shadeMouth(p, x, y, d, c);
      const cr = c.r, cg = c.g, cb = c.b;
      const o = y * W + x;
      out[o] = (out[o] as number) * (1 - alpha) + (16 + (47 * cr + 157 * cg + 16 * cb) / 256) * alpha + 0.5;
      const cell = 3 * (((y >> 1) - cy0) * cw + (x >> 1) - cx0);
      chroma[cell] = (chroma[cell] as number) + alpha;
      chroma[cell + 1] = (chroma[cell + 1] as number) + alpha * (128 + (-26 * cr - 86 * cg + 112 * cb) / 256);
      chroma[cell + 2] = (chroma[cell + 2] as number) + alpha * (128 + (112 * cr - 102 * cg - 10 * cb) / 256);
    }
  }
  // each block's chroma moves toward the mouth's by the share of the block the mouth covers
  const half = W / 2;
  const uPlane = W * H;
  const vPlane = uPlane + (W * H) / 4;
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
