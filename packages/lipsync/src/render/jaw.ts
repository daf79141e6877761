import type { FacePoint } from '@avatar/core';
import type { FaceFrame, Vec } from './geometry.js';
import type { RgbaImage } from './types.js';

/**
 * How strongly each jaw contour point (0..16) follows the chin when the jaw drops: the jaw turns about
 * the axis through its two joints, by the ears, and seen from the front a point's drop is its depth in
 * front of that axis (the chin's the most; the jaw's angles below the ears hardly any; the joints none).
 */
export const JAW_FOLLOW = [0, 0, 0, 0.1, 0.3, 0.55, 0.78, 0.93, 1, 0.93, 0.78, 0.55, 0.3, 0.1, 0, 0, 0];

/** How far the chin drops with the jaw wide open, as a share of the mouth's width. */
export const MAX_JAW_DROP = 0.42;

/** How much what hangs from the chin (a beard) follows its drop: most of it; the rest stretches the beard. */
const BEARD_FOLLOW = 0.85;

/** The jaw contour points a point below the jaw line is placed under. */
const UNDER = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];

/**
 * Points just below the jaw line, one under each jaw contour point that moves, and how much each follows
 * that point when the jaw drops. What is below the jaw decides it: the beard hangs from the chin and moves
 * with it, while the neck, a collar or the background stay where they are and the chin passes over
 * them. Whichever it is, the stretch (or the squeeze) stays between the jaw line and these points, not in
 * everything down to the neck.
 */
export interface UnderJaw {
  readonly points: readonly Vec[];
  /** per point: the jaw contour point above it */
  readonly jaw: readonly number[];
  /** per point: the share of that jaw point's drop it moves by (0 to 1) */
  readonly follow: readonly number[];
  /** per point: the most it moves down in the shape the mesh is triangulated on (short of the ring) */
  readonly reach: readonly number[];
}

/** Mean colour of the pixels within `r` of (x, y), or null when none is in the image. */
function meanAround(image: RgbaImage, x: number, y: number, r: number): [number, number, number] | null {
  const { width: W, height: H, data } = image;
  let n = 0, sr = 0, sg = 0, sb = 0;
  for (let yy = Math.max(0, Math.ceil(y - r)); yy <= Math.min(H - 1, Math.floor(y + r)); yy++) {
    for (let xx = Math.max(0, Math.ceil(x - r)); xx <= Math.min(W - 1, Math.floor(x + r)); xx++) {
      if ((xx - x) ** 2 + (yy - y) ** 2 > r * r) continue;
      const o = 4 * (yy * W + xx);
      sr += data[o] as number;
      sg += data[o + 1] as number;
      sb += data[o + 2] as number;
      n++;
    }
  }
  return n ? [sr / n, sg / n, sb / n] : null;
}

/** A colour's hue on the chroma plane (r - luma, b - luma), and how much chroma it has. */
interface Hue {
  readonly luma: number;
  readonly angle: number;
  readonly chroma: number;
}

function hueOf([r, g, b]: readonly [number, number, number]): Hue {
  const luma = 0.299 * r + 0.587 * g + 0.114 * b;
  return { luma, angle: Math.atan2(b - luma, r - luma), chroma: Math.hypot(r - luma, b - luma) };
}

/** Smallest difference between two angles, in degrees. */
function angleBetween(a: number, b: number): number {
  const d = Math.abs(a - b) % (2 * Math.PI);
  return ((d > Math.PI ? 2 * Math.PI - d : d) * 180) / Math.PI;
}

/**
 * Hair, not skin: grey (little chroma for its brightness, as the skin's would be) or of another hue than
 * the skin. Only in a colour photo, where the skin has a hue to compare with.
 */
function hairAgainst(skin: Hue, c: Hue): boolean {
  const grey = c.chroma < Math.max(4, (0.35 * skin.chroma * c.luma) / Math.max(1, skin.luma));
  return grey || angleBetween(c.angle, skin.angle) > 60;
}

/**
 * A beard on both sides of the jaw line, told by hue where brightness cannot tell it: a grey beard is
 * dark in its roots and shadows and light at its ends, so just inside and just below the jaw line can
 * differ in brightness more than a beard and a collar do, yet both are unlike the skin and alike in hue.
 */
function beardAcross(skin: Hue | null, inside: Hue, below: Hue): boolean {
  if (!skin || skin.chroma < 6) return false; // a grey photo: brightness is all there is
  if (!hairAgainst(skin, inside) || !hairAgainst(skin, below)) return false;
  const greyish = (c: Hue): boolean => c.chroma < 6;
  return greyish(inside) || greyish(below) || angleBetween(inside.angle, below.angle) < 45;
}

/**
 * Places the points below the jaw line and measures how each follows the jaw. `ring` is the ellipse
 * (centre and radii along the face's axes) that follows the head halfway: the points stay inside it.
 */
export function underJaw(image: RgbaImage, landmarks: readonly FacePoint[], face: FaceFrame, ring: { rx: number; ry: number }): UnderJaw {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const { ux, uy, center, mouthWidth: W } = face;
  // the skin's own hue, on the lower nose (bare in a bearded face; the bridge may hold glasses)
  const noseSkin = meanAround(image, (p(29).x + p(30).x) / 2, (p(29).y + p(30).y) / 2, Math.max(1.5, 0.05 * W));
  const skin = noseSkin ? hueOf(noseSkin) : null;
  const rays = UNDER.map((i) => {
    // outward across the jaw line: perpendicular to it, away from the face's centre
    const tx = p(i + 1).x - p(i - 1).x, ty = p(i + 1).y - p(i - 1).y;
    const tl = Math.hypot(tx, ty) || 1;
    let nx = ty / tl, ny = -tx / tl;
    if (nx * (p(i).x - center.x) + ny * (p(i).y - center.y) < 0) {
      nx = -nx;
      ny = -ny;
    }
    const toRing = distanceToEllipse(p(i), { x: nx, y: ny }, center, ux, uy, ring.rx, ring.ry);
    // below the jaw by more than the chin's drop, farther under the chin, which drops the most; no
    // farther than 70 % of the way to the ring
    const wanted = W * (0.2 + 0.3 * (JAW_FOLLOW[i] as number));
    return { i, from: p(i), nx, ny, toRing, d: Math.max(0, Math.min(wanted, 0.7 * toRing)) };
  });
  // what is just inside the jaw line against what is just below it: alike (a beard, or skin that goes
  // on) moves with the chin; unlike (a shadowed neck, a collar, the background) stays
  const r = Math.max(1.5, 0.07 * W);
  // colour differences shrink with the light: a dark photo's are measured as if it were lit as most are
  const exposure = skin ? Math.max(1, 150 / Math.max(1, skin.luma)) : 1;
  const beards: boolean[] = [];
  const measured = rays.map(({ from, nx, ny, d }) => {
    const inside = meanAround(image, from.x - nx * 0.14 * W, from.y - ny * 0.14 * W, r);
    const below = meanAround(image, from.x + nx * 0.5 * d, from.y + ny * 0.5 * d, r);
    const distance = inside && below ? exposure * Math.hypot(inside[0] - below[0], inside[1] - below[1], inside[2] - below[2]) : Infinity;
    const beard = inside && below ? beardAcross(skin, hueOf(inside), hueOf(below)) : false;
    beards.push(beard);
    return beard ? BEARD_FOLLOW : BEARD_FOLLOW * Math.max(0, Math.min(1, 1 - distance / 50));
  });
  // One share for the whole chin: a beard does not end halfway along the jaw, and shares that differ
  // from point to point would bend straight edges below it (a collar's) into steps. The middle's
  // median: the sides of the jaw see past the neck to the background more often.
  const middle = measured.slice(2, -2).sort((a, b) => a - b);
  const share = middle[Math.floor(middle.length / 2)] as number;
  // A beard told by its hue hangs below the jaw line as far as it goes: the row goes to where the skin
  // of the neck begins, so the whole beard moves with the chin and passes over the neck, rather than
  // its lower part being squeezed against a row that stays.
  const bearded = skin !== null && beards.slice(2, -2).filter(Boolean).length * 2 > beards.length - 4;
  if (bearded) {
    for (const ray of rays) ray.d = Math.max(ray.d, beardEnd(image, skin, ray, ray.d, 0.85 * ray.toRing, W));
  }
  const points: Vec[] = rays.map(({ from, nx, ny, d }) => ({ x: from.x + nx * d, y: from.y + ny * d }));
  // Where the ring leaves little room below the jaw, a point moves enough to keep a fifth of its
  // distance when the chin drops all the way: the skin between is squeezed, never folded. (The jaw
  // point comes toward it by the part of its drop along their line: d / cos of the way down.)
  const follow = rays.map(({ i, nx, ny, d }) => {
    const down = nx * uy.x + ny * uy.y;
    const approach = MAX_JAW_DROP * W * (JAW_FOLLOW[i] as number) * down;
    return approach > 0 ? Math.max(share, Math.min(1, 1 - (0.8 * d) / approach)) : share;
  });
  // A beard's row may pass the ring as it drops: what it passes is drawn under it (mesh.ts draws the
  // triangles below the row first). The mesh is triangulated with the row short of the ring, as at rest.
  const reach = points.map((q) => 0.8 * distanceToEllipse(q, uy, center, ux, uy, ring.rx, ring.ry));
  return { points, jaw: UNDER, follow, reach };
}

/**
 * How far along a ray from the jaw line a beard goes: to the first of two samples in a row that show the
 * skin's hue (the neck), between `from` and `to`; `from` when no skin shows (the beard meets hair, a
 * collar or the background, which stay: the row does not drag them along).
 */
function beardEnd(image: RgbaImage, skin: Hue, ray: { from: Vec; nx: number; ny: number }, from: number, to: number, W: number): number {
  const step = 0.04 * W;
  let skinned = 0;
  for (let t = from; t <= to; t += step) {
    const c = meanAround(image, ray.from.x + ray.nx * t, ray.from.y + ray.ny * t, Math.max(1, 0.04 * W));
    if (c && !hairAgainst(skin, hueOf(c))) {
      // the skin begins a step back; a little past it, so the beard's soft edge moves with the beard (none
      // where the skin is there at once: that ray has no beard to carry)
      const begins = t - step;
      if (++skinned === 2) return begins <= from ? from : Math.min(to, begins + 0.08 * W);
    } else {
      skinned = 0;
    }
  }
  return from;
}

/** How far from `from` along the unit direction `dir` the ellipse (radii along ux and uy) is. */
function distanceToEllipse(from: Vec, dir: Vec, center: Vec, ux: Vec, uy: Vec, rx: number, ry: number): number {
  // in the ellipse's own axes, scaled to a unit circle: |q + t d| = 1
  const qx = ((from.x - center.x) * ux.x + (from.y - center.y) * ux.y) / rx;
  const qy = ((from.x - center.x) * uy.x + (from.y - center.y) * uy.y) / ry;
  const dx = (dir.x * ux.x + dir.y * ux.y) / rx;
  const dy = (dir.x * uy.x + dir.y * uy.y) / ry;
  const a = dx * dx + dy * dy, b = 2 * (qx * dx + qy * dy), c = qx * qx + qy * qy - 1;
  const disc = b * b - 4 * a * c;
  if (a === 0 || disc < 0) return 0;
  return Math.max(0, (-b + Math.sqrt(disc)) / (2 * a));
}
