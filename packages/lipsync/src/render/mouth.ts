import { OUTLINE_REACH, OutlineRows, columnSpans } from './outline.js';
import type { FaceFrame } from './geometry.js';
import type { Curve } from './pose.js';
import type { MouthAppearance } from './appearance.js';
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
  // the opening's middle column, its top and bottom there, and its height and width
  'centerX', 'top', 'bottom', 'gapHeight', 'mouthW',
  // how far the drawn upper and lower teeth reach into the opening (0: none drawn, the photo's own show),
  // and half the width of the teeth's arch as seen from the front
  'teethH', 'lowerTeethH', 'archHalf',
  // the mouth's width at rest (corner to corner), and the face's axes (along the eyes, down the face)
  'mouthWidth', 'uxx', 'uxy', 'uyx', 'uyy',
  // colours in the photo's light: teeth, the cavity near the lips, the tongue; how much tongue shows
  'teethR', 'teethG', 'teethB', 'cavityR', 'cavityG', 'cavityB', 'tongueR', 'tongueG', 'tongueB', 'tongue',
  // the photo's edge blur (sigma, pixels) and grain (levels) around the mouth, and the grain's size (pixels)
  'softness', 'grain', 'grainScale',
] as const;

export type MouthParams = Record<(typeof MOUTH_PARAM_FIELDS)[number], number>;

/** Writes the parameters into the block the native kernel reads, in MOUTH_PARAM_FIELDS order. */
export function packMouthParams(params: MouthParams, block: Float64Array = new Float64Array(MOUTH_PARAM_FIELDS.length)): Float64Array {
  MOUTH_PARAM_FIELDS.forEach((field, i) => {
    block[i] = params[field];
  });
  return block;
}

/** This frame's mouth figures, from the posed control points (`moved`) and the opening's outline. */
export function mouthParams(moved: Float64Array, opening: Curve, outline: Float64Array, face: FaceFrame, look: MouthAppearance, mouth: MouthPose, W: number, H: number): MouthParams {
  let minX = Infinity, maxX = -Infinity, minY = Infinity, maxY = -Infinity;
  for (let i = 0; i < outline.length; i += 2) {
    const x = outline[i] as number, y = outline[i + 1] as number;
    minX = Math.min(minX, x);
    maxX = Math.max(maxX, x);
    minY = Math.min(minY, y);
    maxY = Math.max(maxY, y);
  }
  const mouthWidth = face.mouthWidth;
  // the opening's top and bottom at its middle (inner lips, or the bite line's sides), as image rows
  const top = moved[2 * (opening.controls[2] as number) + 1] as number;
  const bottom = moved[2 * (opening.controls[6] as number) + 1] as number;
  const gapHeight = Math.max(1, bottom - top);
  // the photo's own upper teeth, when it shows them, stay where they are: none are drawn over them (the
  // lower teeth, which a smile hides behind the lower lip, are drawn as the opening reveals them)
  const drawTeeth = look.bite === null;
  // the box reaches as far past the outline as its blended edge does
  const pad = Math.ceil(coverageReach(look.softness)) + 1;
  return {
    x0: Math.max(0, Math.floor(minX) - pad),
    x1: Math.min(W - 1, Math.ceil(maxX) + pad),
    y0: Math.max(0, Math.floor(minY) - pad),
    y1: Math.min(H - 1, Math.ceil(maxY) + pad),
    centerX: (minX + maxX) / 2,
    top,
    bottom,
    gapHeight,
    mouthW: Math.max(1, maxX - minX),
    teethH: drawTeeth ? Math.min(gapHeight * 0.6, 0.2 * mouthWidth) * Math.min(1, 0.35 + 1.1 * Math.max(mouth.teethVisible, mouth.lipToTeeth)) : 0,
    lowerTeethH: Math.max(0, Math.min(gapHeight * 0.2, 0.07 * mouthWidth) * Math.min(1, gapHeight / (0.3 * mouthWidth) - 0.6)),
    // the last teeth vanish into the corners
    archHalf: 0.47 * mouthWidth,
    mouthWidth,
    uxx: face.ux.x,
    uxy: face.ux.y,
    uyx: face.uy.x,
    uyy: face.uy.y,
    teethR: look.teeth.r,
    teethG: look.teeth.g,
    teethB: look.teeth.b,
    cavityR: look.cavity.r,
    cavityG: look.cavity.g,
    cavityB: look.cavity.b,
    tongueR: look.tongue.r,
    tongueG: look.tongue.g,
    tongueB: look.tongue.b,
    tongue: Math.max(0, Math.min(1, gapHeight / (0.14 * mouthWidth) - 0.6)),
    softness: look.softness,
    grain: look.grain,
    grainScale: look.grainScale,
  };
}

/**
 * Where each tooth of one side ends, from the middle outward, as a share of the arch from the midline to
 * the last tooth seen: the widths of human upper teeth (central incisor 8.6 mm, lateral 6.6, canine 7.6,
 * premolars 7.0 and 6.6, first molar 10).
 */
const TOOTH_ENDS = [0.185, 0.328, 0.491, 0.642, 0.784, 1];
/** How far each tooth reaches below the gum, as a share of the central incisor's reach. */
const TOOTH_REACH = [1, 0.86, 0.95, 0.8, 0.74, 0.66];

const clamp01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);
const clamp255 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);
/** A smooth bump: 1 at 0, falling to 0 at |t| = 1 and beyond. */
const bump = (t: number): number => {
  const a = t < 0 ? -t : t;
  if (a >= 1) return 0;
  const q = 1 - a * a;
  return q * q;
};

/**
 * Film-like grain: a fixed pseudo-random value in -1..1 per pixel (integer hashing, the same in the native
 * kernel), so the drawn mouth carries the photo's noise instead of looking smoother than the lips.
 */
function grainAt(x: number, y: number): number {
  let h = (Math.imul(x, 374761393) + Math.imul(y, 668265263)) | 0;
  h = Math.imul(h ^ (h >>> 13), 1274126177);
  h ^= h >>> 16;
  return (h & 0xffff) / 32768 - 1;
}

/**
 * The grain at `scale` pixels: at 1 a value per pixel; coarser, the values of a grid `scale` pixels apart
 * blended bilinearly (and raised by 1.5, the spread bilinear blending takes away), as a photo enlarged
 * by that much carries its own grain.
 */
function grainAtScale(x: number, y: number, scale: number): number {
  if (scale <= 1) return grainAt(x, y);
  const gx = x / scale, gy = y / scale;
  const ix = Math.floor(gx), iy = Math.floor(gy);
  const fx = gx - ix, fy = gy - iy;
  const g00 = grainAt(ix, iy), g10 = grainAt(ix + 1, iy), g01 = grainAt(ix, iy + 1), g11 = grainAt(ix + 1, iy + 1);
  const top = g00 + (g10 - g00) * fx;
  const bottom = g01 + (g11 - g01) * fx;
  return 1.5 * (top + (bottom - top) * fy);
}

/**
 * One tooth row (upper or lower) at `along` pixels from the middle and `reach` pixels from the gum, of
 * teeth reaching `length` pixels at the middle: its coverage (0 past the biting edge) and shading.
 */
function toothAt(p: MouthParams, along: number, reach: number, length: number, out: { cover: number; shade: number; edge: number }): void {
  // where on the arch: seen from the front, the teeth narrow toward the corners as the arch turns away
  const a = clamp01((along < 0 ? -along : along) / p.archHalf);
  const a4 = a * a * a * a;
  const s = a * (0.72 + 0.28 * a4);
  let j = 0;
  while (j < 5 && s >= (TOOTH_ENDS[j] as number)) j++;
  const lo = j === 0 ? 0 : (TOOTH_ENDS[j - 1] as number);
  const hi = TOOTH_ENDS[j] as number;
  const u = (s - lo) / (hi - lo);
  // the tooth's width on screen, and this pixel's distance from its nearer side
  const widthPx = ((hi - lo) * p.archHalf) / (0.72 + 1.4 * a4);
  const fromSide = (u < 0.5 ? u : 1 - u) * widthPx;
  // the biting edge, its corners rounded
  const toothLength = length * (TOOTH_REACH[j] as number);
  const radius = Math.min(0.22 * widthPx, 0.25 * toothLength);
  let edge = toothLength;
  if (fromSide < radius) {
    const k = radius - fromSide;
    edge = toothLength - (radius - Math.sqrt(radius * radius - k * k));
  }
  out.edge = edge;
  out.cover = clamp01((edge - reach) / (EDGE_RAMP * p.softness) + 0.5);
  // shading: the gum's shadow, darker toward the back, each tooth rounded, a soft line between teeth,
  // a faint highlight on the front teeth, and a greyer, translucent biting edge
  const g = clamp01(reach / (0.22 * toothLength + 1));
  const gum = 0.62 + 0.38 * g * (2 - g);
  const back = 1 - 0.45 * s * s - 0.15 * s * s * s * s;
  const round = 0.95 + 0.05 * (1 - (2 * u - 1) * (2 * u - 1));
  const between = 1 - 0.12 * bump(fromSide / (0.6 + 0.6 * p.softness));
  const shine = 0.08 * bump((reach - 0.35 * toothLength) / (0.22 * toothLength + 1)) * bump((2 * u - 1) / 0.8) * (1 - s);
  out.shade = gum * back * round * between + shine;
}

/** The mouth's colour at one pixel, set by shadeMouth. */
interface Shade {
  r: number;
  g: number;
  b: number;
}

const upper = { cover: 0, shade: 0, edge: 0 };
const tooth = { cover: 0, shade: 0, edge: 0 };

/**
 * The colour inside the mouth at (x, y), `d` pixels inside the outline, whose column spans `top` to
 * `bottom` there.
 */
function shadeMouth(p: MouthParams, x: number, y: number, d: number, top: number, bottom: number, out: Shade): void {
  // across the mouth in the face's own frame; down from the opening's upper edge in this column
  // (teeth and tongue hang from the middle of the opening along the face's axes, so the lips cover them
  // toward the corners; the cavity's shading follows this column's own edges)
  const along = (x - p.centerX) * p.uxx + (y - p.top) * p.uxy;
  const down = (x - p.centerX) * p.uyx + (y - p.top) * p.uyy;
  const side = Math.min(1, (along < 0 ? -along : along) / (p.mouthW / 2));
  const fromBottom = p.bottom - y;
  // the cavity: the photo's lip colour darkened, darkest in the middle of the opening (the throat) and
  // toward the corners
  const v = clamp01((y - top) / (bottom - top + 1));
  const deep = (1 - side * side) * 4 * v * (1 - v);
  const k = 1 - 0.72 * deep - 0.3 * side * side;
  let cr = p.cavityR * k, cg = p.cavityG * k, cb = p.cavityB * k;
  // the tongue: a mound rising from behind the lower lip, lit at the front, darker toward its sides
  if (p.tongue > 0) {
    const q = along / (0.45 * p.mouthW);
    const rise = 0.4 * p.gapHeight * p.tongue * (1 - q * q);
    if (rise > 0) {
      // its far edge lies deep in the mouth: softer than the photo's edges
      const cover = clamp01((rise - fromBottom) / (2 * p.softness + 0.08 * rise) + 0.5);
      const lit = (0.35 + 0.4 * clamp01(1 - fromBottom / (rise + 1))) * (1 - 0.35 * q * q);
      cr += (p.tongueR * lit - cr) * cover;
      cg += (p.tongueG * lit - cg) * cover;
      cb += (p.tongueB * lit - cb) * cover;
    }
  }
  // the upper teeth (drawn, or the photo's own above the opening) shade what lies just below them
  let edge = 0;
  if (p.teethH > 0) {
    toothAt(p, along, down, p.teethH, upper);
    edge = upper.edge;
  }
  const below = down - edge;
  if (below > 0) {
    const shadow = 1 - 0.45 * bump(below / (0.3 * p.gapHeight + 1));
    cr *= shadow;
    cg *= shadow;
    cb *= shadow;
  }
  // (past a tooth's reach its cover is 0 and it changes nothing: not worked out there)
  const lowerReach = p.lowerTeethH * (1 - side * side);
  if (p.lowerTeethH > 0.5 && fromBottom > -1 && fromBottom < lowerReach + 0.5 * EDGE_RAMP * p.softness + 1) {
    toothAt(p, along * 1.12, fromBottom, lowerReach, tooth);
    const lit = tooth.shade * 0.6;
    cr += (p.teethR * lit - cr) * tooth.cover;
    cg += (p.teethG * lit - cg) * tooth.cover;
    cb += (p.teethB * lit - cb) * tooth.cover;
  }
  if (p.teethH > 0 && upper.cover > 0) {
    // the last sixth of a tooth's length is thinner and lets the dark through: greyer, a little blue
    const clear = clamp01((down - 0.82 * upper.edge) / (0.18 * upper.edge + 0.5));
    const lit = upper.shade * (1 - 0.12 * clear);
    cr += (p.teethR * lit * (1 - 0.06 * clear) - cr) * upper.cover;
    cg += (p.teethG * lit * (1 - 0.03 * clear) - cg) * upper.cover;
    cb += (p.teethB * lit - cb) * upper.cover;
  }
  // a shadow just inside the lips, and the photo's grain
  // (over at most OUTLINE_REACH pixels: distances stop there)
  const rim = 1 - 0.35 * clamp01(1 - d / Math.min(OUTLINE_REACH, 1.2 + p.softness));
  const noise = p.grain * 0.9 * grainAtScale(x, y, p.grainScale);
  out.r = clamp255(cr * rim + noise);
  out.g = clamp255(cg * rim + noise);
  out.b = clamp255(cb * rim + noise);
}

/**
 * How wide, in the photo's edge blur (a Gaussian sigma), a drawn edge's linear ramp is: a ramp 3.2
 * sigmas wide rises from 10 % to 90 % over the same 2.56 sigmas as a Gaussian-blurred edge, so a tooth's
 * biting edge is as soft as the photo's own edges (at 1.2, as before, a photo blurred by 3 px showed
 * teeth edges measuring 1.1 px).
 */
const EDGE_RAMP = 3.2;

/**
 * How far either side of the outline its edge blends into the lips: half an EDGE_RAMP, so the edge of
 * the opening is as soft as the photo's edges (at 0.8 sigmas a side it was half as soft), and at least
 * 0.7 px, so a sharp photo's opening is still smooth. OUTLINE_REACH bounds it (3 sigmas at most: 4.8 px).
 */
const coverageReach = (softness: number): number => (softness * 0.5 * EDGE_RAMP < 0.7 ? 0.7 : softness * 0.5 * EDGE_RAMP);

/** Coverage of a pixel `d` pixels inside the outline. */
const coverage = (d: number, softness: number): number => {
  const w = coverageReach(softness);
  return d >= w ? 1 : d <= -w ? 0 : (d + w) / (2 * w);
};

/** What both drawing loops walk the box with: distances to the outline by row, its extent by column. */
function scan(outline: Float64Array, p: MouthParams): { rows: OutlineRows; tops: Float64Array; bottoms: Float64Array } {
  const tops = new Float64Array(p.x1 - p.x0 + 1);
  const bottoms = new Float64Array(p.x1 - p.x0 + 1);
  columnSpans(outline, p.x0, p.x1, p.top, p.top + p.gapHeight, tops, bottoms);
  return { rows: new OutlineRows(outline), tops, bottoms };
}

/** Draws the mouth into an RGBA frame. */
export function drawMouthRgba(out: Uint8Array, W: number, outline: Float64Array, p: MouthParams): void {
  const { rows, tops, bottoms } = scan(outline, p);
  const c: Shade = { r: 0, g: 0, b: 0 };
  for (let y = p.y0; y <= p.y1; y++) {
    rows.row(y);
    for (let x = p.x0; x <= p.x1; x++) {
      const d = rows.distance(x);
      const alpha = coverage(d, p.softness);
      if (alpha <= 0) continue;
      shadeMouth(p, x, y, d, tops[x - p.x0] as number, bottoms[x - p.x0] as number, c);
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
  const { rows, tops, bottoms } = scan(outline, p);
  const c: Shade = { r: 0, g: 0, b: 0 };
  for (let y = p.y0; y <= p.y1; y++) {
    rows.row(y);
    for (let x = p.x0; x <= p.x1; x++) {
      const d = rows.distance(x);
      const alpha = coverage(d, p.softness);
      if (alpha <= 0) continue;
      shadeMouth(p, x, y, d, tops[x - p.x0] as number, bottoms[x - p.x0] as number, c);
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
