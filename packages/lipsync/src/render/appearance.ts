import type { FacePoint } from '@avatar/core';
import type { FaceFrame } from './geometry.js';
import type { RgbaImage } from './types.js';

/** An RGB colour, 0..255 per channel. */
export interface Rgb {
  r: number;
  g: number;
  b: number;
}

/**
 * What the photo says about how its mouth must look, measured once per photo at the size frames are
 * drawn: its own teeth (when the opening between the inner lips shows them) and where the upper teeth
 * end, the colours of its light, and its grain and sharpness around the mouth.
 */
export interface MouthAppearance {
  /**
   * The bite line when the photo shows teeth: per inner-lip column (61/67, 62/66, 63/65), the point
   * between the upper teeth (which stay with the skull) and whatever is below them (lower teeth or lip,
   * which move with the jaw); null when the photo shows no teeth.
   */
  bite: [FacePoint, FacePoint, FacePoint] | null;
  /**
   * Where the opening's edge really lies between each corner and the inner lips' middle, when the photo
   * shows teeth and its opening reaches past the landmarks' curve there (a smile's dark corners, which
   * the detector's inner-lip landmarks cut across): pressed lips then close over those corners too.
   */
  corners: OpeningCorners | null;
  /** teeth as they would look in this photo's light and exposure */
  teeth: Rgb;
  /** the cavity at the front (darker toward the back), and the tongue: from the lips' own colour */
  cavity: Rgb;
  tongue: Rgb;
  /** the photo's grain around the mouth: the spread of luma left by a smoothing at `grainScale`, in levels */
  grain: number;
  /**
   * the grain's size in pixels: 1 for a photo at its own size; more for one enlarged to the frame's size,
   * whose grain was enlarged with it (the drawn grain is made as coarse)
   */
  grainScale: number;
  /** the blur of the photo's edges around the mouth (Gaussian sigma, pixels) */
  softness: number;
}

/** Points on the opening's edge near each inner corner (60, 64), from the corner toward the middle (CORNER_ALONG). */
export interface OpeningCorners {
  upperLeft: FacePoint[];
  upperRight: FacePoint[];
  lowerLeft: FacePoint[];
  lowerRight: FacePoint[];
}

const luma = (r: number, g: number, b: number): number => 0.2126 * r + 0.7152 * g + 0.0722 * b;

/** Pixels inside a closed polygon (x, y pairs), as offsets into the image, in raster order. */
export function pixelsInside(polygon: readonly FacePoint[], width: number, height: number): number[] {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const p of polygon) {
    x0 = Math.min(x0, p.x);
    x1 = Math.max(x1, p.x);
    y0 = Math.min(y0, p.y);
    y1 = Math.max(y1, p.y);
  }
  const out: number[] = [];
  for (let y = Math.max(0, Math.ceil(y0)); y <= Math.min(height - 1, Math.floor(y1)); y++) {
    const crossings: number[] = [];
    for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
      const a = polygon[i] as FacePoint, b = polygon[j] as FacePoint;
      if (a.y > y !== b.y > y) crossings.push(a.x + ((b.x - a.x) * (y - a.y)) / (b.y - a.y));
    }
    crossings.sort((p, q) => p - q);
    for (let k = 0; k + 1 < crossings.length; k += 2) {
      for (let x = Math.max(0, Math.ceil(crossings[k] as number)); x <= Math.min(width - 1, Math.floor(crossings[k + 1] as number)); x++) out.push(y * width + x);
    }
  }
  return out;
}

function meanColour(image: RgbaImage, pixels: readonly number[]): Rgb {
  let r = 0, g = 0, b = 0;
  for (const i of pixels) {
    r += image.data[4 * i] as number;
    g += image.data[4 * i + 1] as number;
    b += image.data[4 * i + 2] as number;
  }
  const n = Math.max(1, pixels.length);
  return { r: r / n, g: g / n, b: b / n };
}

/** Chroma relative to brightness: 0 for grey, toward 1 for a pure colour. */
const saturation = (r: number, g: number, b: number): number => (Math.max(r, g, b) - Math.min(r, g, b)) / Math.max(1, Math.max(r, g, b));

export function measureMouth(image: RgbaImage, landmarks: readonly FacePoint[], face: FaceFrame): MouthAppearance {
  const { width: W, height: H, data } = image;
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const at = (x: number, y: number): number => {
    const xi = Math.max(0, Math.min(W - 1, Math.round(x))), yi = Math.max(0, Math.min(H - 1, Math.round(y)));
    const o = 4 * (yi * W + xi);
    return luma(data[o] as number, data[o + 1] as number, data[o + 2] as number);
  };
  const inner = pixelsInside(landmarks.slice(60, 68), W, H);
  const outer = new Set(pixelsInside(landmarks.slice(48, 60), W, H));
  for (const i of inner) outer.delete(i);
  const lipPixels = [...outer];
  const lips = meanColour(image, lipPixels);
  const lipLuma = luma(lips.r, lips.g, lips.b);
  const lipSat = saturation(lips.r, lips.g, lips.b);

  // The light's colour and the photo's exposure from the brightest skin of the nose and cheeks (never
  // the beard, lips or teeth); grain and sharpness from the skin and edges around the mouth.
  const lightArea = [
    ...pixelsInside([p(27), p(31), p(33), p(35)], W, H),
    ...pixelsInside([p(1), p(40), p(31), p(3)], W, H),
    ...pixelsInside([p(15), p(47), p(35), p(13)], W, H),
  ];
  const opening = new Set(inner);
  const around = pixelsInside([p(31), p(35), p(12), p(10), p(8), p(6), p(4)], W, H).filter((i) => !opening.has(i));
  const skin = lightArea.length >= 16 ? lightArea : around;
  const skinLuma = skin.map((i) => luma(data[4 * i] as number, data[4 * i + 1] as number, data[4 * i + 2] as number));
  const sorted = Float64Array.from(skinLuma).sort();
  const highCut = sorted[Math.floor(sorted.length * 0.9)] ?? 200;
  const highlight = meanColour(image, skin.filter((_, k) => (skinLuma[k] as number) >= highCut));
  const highLuma = Math.max(1, luma(highlight.r, highlight.g, highlight.b));
  // Skin lit by a neutral light has about these ratios to its luma; what the photo's highlight has beyond
  // them is the light's colour. Some of it is applied: skin tones vary, and teeth are never tinted hard.
  // A grey photo has no colour to apply at all.
  const grey = saturation(highlight.r, highlight.g, highlight.b) < 0.04 && lipSat < 0.04;
  const light = (channel: number, neutral: number): number => (grey ? 1 : 1 + 0.4 * (channel / highLuma / neutral - 1));
  const gain = { r: light(highlight.r, 1.12), g: light(highlight.g, 0.97), b: light(highlight.b, 0.86) };
  // teeth about as bright as the skin's highlights (inside the mouth they are in the lips' shade), never
  // brighter than the photo allows
  const teethLuma = Math.min(235, highLuma * 0.96);
  const teethBase = { r: 0.97, g: 0.95, b: 0.88 };
  const teethScale = teethLuma / luma(teethBase.r, teethBase.g, teethBase.b);
  const clamp = (v: number): number => Math.max(0, Math.min(255, v));
  const teeth = { r: clamp(teethBase.r * gain.r * teethScale), g: clamp(teethBase.g * gain.g * teethScale), b: clamp(teethBase.b * gain.b * teethScale) };
  // the cavity and tongue take the lips' hue: darker, and redder where the photo has colour
  const cavity = { r: lips.r * 0.34, g: lips.g * 0.2, b: lips.b * 0.22 };
  const tongue = { r: clamp(lips.r * 0.85), g: clamp(lips.g * 0.55), b: clamp(lips.b * 0.6) };
  if (grey) {
    const c = luma(cavity.r, cavity.g, cavity.b), t = luma(tongue.r, tongue.g, tongue.b);
    Object.assign(teeth, { r: teethLuma, g: teethLuma, b: teethLuma });
    Object.assign(cavity, { r: c, g: c, b: c });
    Object.assign(tongue, { r: t, g: t, b: t });
  }

  const { grain, grainScale, softness } = measureTexture(image, around);
  const bite = findBite(image, landmarks, inner, lipLuma, lipSat, at, face);
  const corners = bite ? findOpeningCorners(landmarks, lipLuma, at, face) : null;
  // A photo that shows its teeth gives their colour itself (the lower teeth an opening reveals are drawn
  // in it): the brightest quarter of the opening, which the teeth fill but for gaps and shadows.
  if (bite) {
    const ranked = inner.map((i) => ({ i, l: luma(data[4 * i] as number, data[4 * i + 1] as number, data[4 * i + 2] as number) })).sort((a, b) => b.l - a.l);
    const own = meanColour(image, ranked.slice(0, Math.max(1, Math.floor(ranked.length / 4))).map(({ i }) => i));
    const ownLuma = luma(own.r, own.g, own.b);
    Object.assign(teeth, grey ? { r: ownLuma, g: ownLuma, b: ownLuma } : own);
  }
  return { bite, corners, teeth, cavity, tongue, grain, grainScale, softness };
}

/** How far along the way from a corner (60, 64) toward the inner lips' middle landmarks the corner points sit. */
const CORNER_ALONG = [0.15, 0.4] as const;

/**
 * The opening's edge near each corner: from the point a third of the way along the landmarks' straight
 * line toward 61 (upper) or 67 (lower), outward across the lip for as long as the photo there is darker
 * than the lips (the cavity at a smile's corners) or brighter (teeth), up to a sixth of the mouth's width.
 * Null when every edge lies within a pixel of the landmarks' line: the curve through them already fits.
 */
function findOpeningCorners(landmarks: readonly FacePoint[], lipLuma: number, at: (x: number, y: number) => number, face: FaceFrame): OpeningCorners | null {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const { uy, mouthWidth } = face;
  const smooth = (x: number, y: number): number => (at(x, y) * 4 + at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1)) / 8;
  const opening = (x: number, y: number): boolean => {
    const v = smooth(x, y);
    return v < 0.78 * lipLuma || v > 1.15 * lipLuma + 6;
  };
  let moved = 0;
  const edge = (corner: number, toward: number, outward: 1 | -1): FacePoint[] => CORNER_ALONG.map((along) => {
    const c = p(corner), t = p(toward);
    const q = { x: c.x + (t.x - c.x) * along, y: c.y + (t.y - c.y) * along };
    let reach = 0;
    for (let s = 0.5; s <= mouthWidth / 6 && opening(q.x + uy.x * s * outward, q.y + uy.y * s * outward); s += 0.5) reach = s;
    moved = Math.max(moved, reach);
    return { x: q.x + uy.x * reach * outward, y: q.y + uy.y * reach * outward };
  });
  const corners = { upperLeft: edge(60, 61, -1), upperRight: edge(64, 63, -1), lowerLeft: edge(60, 67, 1), lowerRight: edge(64, 65, 1) };
  return moved >= 1 ? corners : null;
}

/**
 * Grain: the median absolute difference between luma and its 3x3 mean (x 1.25, as for a normal spread).
 * Softness: the edges' blur as a Gaussian sigma. The gradient energy across an edge blurred by sigma s
 * goes as 1 / s; blurring again by 1 px makes it sqrt(s^2 + 1), so the ratio R of the two energies is
 * s / sqrt(s^2 + 1), and s = R / sqrt(1 - R^2). (Central differences add a little blur of their own.)
 */
export function measureTexture(image: RgbaImage, pixels: readonly number[]): { grain: number; grainScale: number; softness: number } {
  const { width: W, height: H, data } = image;
  // This runs once per run, before the first frame, on code not yet compiled: each pixel's luma and
  // smoothing is worked out once (the loops below read most of them several times) and the numbers are
  // sorted natively. At 1024 px this took 50-60 ms a renderer, a third of it in sort comparators.
  const { values: L, stride: w, x0, y0 } = lumaWindow(data, W, H, pixels, 3);
  // 1-4-6-4-1 binomial smoothing: close to a Gaussian of sigma 1 (each pixel's summed once, in this order)
  const smoothed = new Float64Array(L.length).fill(Number.NaN);
  const smooth = (k: number): number => {
    let s = smoothed[k] as number;
    if (Number.isNaN(s)) {
      s = 0;
      for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) s += (L[k + dy * w + dx] as number) * (BINOMIAL[dx + 2] as number) * (BINOMIAL[dy + 2] as number);
      s /= 256;
      smoothed[k] = s;
    }
    return s;
  };
  const sharp: number[] = [], blurred: number[] = [];
  // every other pixel is enough for both figures, at half the cost
  for (let n = 0; n < pixels.length; n += 2) {
    const i = pixels[n] as number;
    const x = i % W, y = (i - x) / W;
    if (x < 3 || y < 3 || x >= W - 4 || y >= H - 4) continue;
    const k = (y - y0) * w + x - x0;
    const gx = ((L[k + 1] as number) - (L[k - 1] as number)) / 2, gy = ((L[k + w] as number) - (L[k - w] as number)) / 2;
    const bx = (smooth(k + 1) - smooth(k - 1)) / 2, by = (smooth(k + w) - smooth(k - w)) / 2;
    sharp.push(gx * gx + gy * gy);
    blurred.push(bx * bx + by * by);
  }
  // only the strongest edges (by their blurred gradient, which noise hardly reaches): on them the ratio
  // is the edges' own, not the grain's; summed strongest first (ties in the order met)
  let energy = 0, blurredEnergy = 0;
  for (const k of strongest(blurred, Math.max(1, Math.floor(blurred.length / 10)))) {
    energy += sharp[k] as number;
    blurredEnergy += blurred[k] as number;
  }
  const ratio = energy > 0 ? Math.min(0.95, blurredEnergy / energy) : 0.5;
  // Faces are not ideal steps, and the differences blur too: on photos blurred by a known sigma (1, 2 and
  // 3 px on grace_hopper.jpg) the formula read 0.7 of the true blur, so it is scaled back.
  const softness = Math.max(0.5, Math.min(3, (1.4 * ratio) / Math.sqrt(1 - ratio * ratio)));
  // A photo enlarged to the frame's size carries its grain enlarged too: coarser than a pixel. Where the
  // luma's spread against its neighbours 2 px away is over 2.3 times its spread against the next pixels,
  // the grain is measured, and drawn, 2 px coarse. (Measured around the mouth of the fixture photos:
  // 1.55-1.90 at or below their own size, 2.37-2.86 enlarged 1.14 to 2 times, 2.09 at 1.2 times.)
  const spread = (s: number): number => {
    const residuals: number[] = [];
    for (let n = 0; n < pixels.length; n += 2) {
      const i = pixels[n] as number;
      const x = i % W, y = (i - x) / W;
      if (x < 3 * s || y < 3 * s || x >= W - 3 * s - 1 || y >= H - 3 * s - 1) continue;
      const k = (y - y0) * w + x - x0;
      let m = 0;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) m += L[k + dy * s * w + dx * s] as number;
      residuals.push(Math.abs((L[k] as number) - m / 9));
    }
    return Float64Array.from(residuals).sort()[Math.floor(residuals.length / 2)] ?? 0;
  };
  const fine = spread(1);
  const coarse = spread(2);
  const grainScale = fine > 0 && coarse > COARSE_GRAIN_RATIO * fine ? 2 : 1;
  const grain = Math.min(8, 1.25 * (grainScale === 2 ? coarse : fine));
  return { grain, grainScale, softness };
}

/**
 * The luma of the box around some pixels (offsets into the image), widened by `margin` and kept inside
 * the image, row by row from its corner (x0, y0).
 */
function lumaWindow(data: Uint8Array, width: number, height: number, pixels: readonly number[], margin: number): { values: Float64Array; stride: number; x0: number; y0: number } {
  let x0 = width, x1 = -1, y0 = height, y1 = -1;
  for (const i of pixels) {
    const x = i % width, y = (i - x) / width;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  x0 = Math.max(0, x0 - margin);
  y0 = Math.max(0, y0 - margin);
  x1 = Math.min(width - 1, x1 + margin);
  y1 = Math.min(height - 1, y1 + margin);
  const stride = Math.max(0, x1 - x0 + 1), rows = Math.max(0, y1 - y0 + 1);
  const values = new Float64Array(stride * rows);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < stride; x++) {
      const o = 4 * ((y0 + y) * width + x0 + x);
      values[y * stride + x] = luma(data[o] as number, data[o + 1] as number, data[o + 2] as number);
    }
  }
  return { values, stride, x0, y0 };
}

/**
 * The offsets of the `count` largest values, largest first, equal values in their order in the list: what
 * a stable sort of the whole list would put first, without comparing the rest.
 */
export function strongest(values: readonly number[], count: number): number[] {
  if (values.length === 0) return [];
  const ascending = Float64Array.from(values).sort();
  const cut = ascending[Math.max(0, ascending.length - count)] as number;
  const chosen: number[] = [];
  for (let k = 0; k < values.length; k++) if ((values[k] as number) > cut) chosen.push(k);
  for (let k = 0; k < values.length && chosen.length < count; k++) if (values[k] === cut) chosen.push(k);
  return chosen.sort((a, b) => (values[b] as number) - (values[a] as number) || a - b);
}

const BINOMIAL = [1, 4, 6, 4, 1];
/** The spread 2 px away over the spread 1 px away above which a photo's grain is taken as 2 px coarse. */
const COARSE_GRAIN_RATIO = 2.3;

/**
 * Whether the opening between the inner lips shows teeth, and where the upper teeth end. Teeth are
 * brighter (by an eighth or more, whatever the exposure) and greyer than the lips: the photo shows teeth
 * when at least 30 % of the opening (between landmarks that are never exact) is.
 */
function findBite(image: RgbaImage, landmarks: readonly FacePoint[], inner: readonly number[], lipLuma: number, lipSat: number,
  at: (x: number, y: number) => number, face: FaceFrame): [FacePoint, FacePoint, FacePoint] | null {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const opening = ((p(66).x - p(62).x) * face.uy.x + (p(66).y - p(62).y) * face.uy.y);
  if (opening < 0.06 * face.mouthWidth || inner.length < 12) return null;
  const { data } = image;
  let bright = 0;
  const teethLumas: number[] = [];
  for (const i of inner) {
    const r = data[4 * i] as number, g = data[4 * i + 1] as number, b = data[4 * i + 2] as number;
    const y = luma(r, g, b);
    if (y > 1.12 * lipLuma + 4 && saturation(r, g, b) < Math.max(0.12, lipSat * 0.7)) {
      bright++;
      teethLumas.push(y);
    }
  }
  if (bright < inner.length * 0.3) return null;
  teethLumas.sort((a, b) => a - b);
  const teethLuma = teethLumas[Math.floor(teethLumas.length / 2)] as number;
  // per column 61/67, 62/66, 63/65: the darkest point on the way down (from a third of the way: just
  // under the upper lip lies the gums' shadow, not a gap)
  const columns = ([[61, 67], [62, 66], [63, 65]] as const).map(([up, low]) => {
    const a = p(up), b = p(low);
    let best = 1, bestLuma = Infinity;
    for (let k = 6; k <= 18; k++) {
      const t = k / 20;
      const x = a.x + (b.x - a.x) * t, y = a.y + (b.y - a.y) * t;
      let s = 0;
      for (let d = -1; d <= 1; d++) s += at(x + d, y) + at(x, y + d);
      if (s / 6 < bestLuma) {
        bestLuma = s / 6;
        best = t;
      }
    }
    return { a, b, best, bestLuma };
  });
  // a dark gap across the teeth (upper and lower teeth both show) is the bite line; without one the upper
  // teeth reach down to the lower lip
  const gap = columns.reduce((sum, c) => sum + c.bestLuma, 0) / 3 < 0.7 * teethLuma;
  const [c0, c1, c2] = columns.map(({ a, b, best }) => {
    const t = gap ? best : 1;
    return { x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t };
  }) as [FacePoint, FacePoint, FacePoint];
  return [c0, c1, c2];
}
