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
  /** per point: the share of that jaw point's drop it moves by (0 to 0.85) */
  readonly follow: readonly number[];
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

/**
 * Places the points below the jaw line and measures how each follows the jaw. `ring` is the ellipse
 * (centre and radii along the face's axes) that follows the head halfway: the points stay well inside it.
 */
export function underJaw(image: RgbaImage, landmarks: readonly FacePoint[], face: FaceFrame, ring: { rx: number; ry: number }): UnderJaw {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const { ux, uy, center, mouthWidth: W } = face;
  const points: Vec[] = [];
  const measured: number[] = [];
  for (const i of UNDER) {
    // outward across the jaw line: perpendicular to it, away from the face's centre
    const tx = p(i + 1).x - p(i - 1).x, ty = p(i + 1).y - p(i - 1).y;
    const tl = Math.hypot(tx, ty) || 1;
    let nx = ty / tl, ny = -tx / tl;
    if (nx * (p(i).x - center.x) + ny * (p(i).y - center.y) < 0) {
      nx = -nx;
      ny = -ny;
    }
    // below the jaw by more than the chin's drop, farther under the chin, which drops the most; no
    // farther than 70 % of the way to the ring
    const wanted = W * (0.2 + 0.3 * (JAW_FOLLOW[i] as number));
    const toRing = distanceToEllipse(p(i), { x: nx, y: ny }, center, ux, uy, ring.rx, ring.ry);
    const d = Math.max(0, Math.min(wanted, 0.7 * toRing));
    points.push({ x: p(i).x + nx * d, y: p(i).y + ny * d });
    // what is just inside the jaw line against what is just below it: alike (a beard, or skin that goes
    // on) moves with the chin; unlike (a shadowed neck, a collar, the background) stays
    const r = Math.max(1.5, 0.07 * W);
    const inside = meanAround(image, p(i).x - nx * 0.14 * W, p(i).y - ny * 0.14 * W, r);
    const below = meanAround(image, p(i).x + nx * 0.5 * d, p(i).y + ny * 0.5 * d, r);
    const distance = inside && below ? Math.hypot(inside[0] - below[0], inside[1] - below[1], inside[2] - below[2]) : Infinity;
    measured.push(0.85 * Math.max(0, Math.min(1, 1 - distance / 50)));
  }
  // One share for the whole chin: a beard does not end halfway along the jaw, and shares that differ
  // from point to point would bend straight edges below it (a collar's) into steps. The middle's
  // median: the sides of the jaw see past the neck to the background more often.
  const middle = measured.slice(2, -2).sort((a, b) => a - b);
  const share = middle[Math.floor(middle.length / 2)] as number;
  // Where the ring leaves little room below the jaw, a point moves enough to keep a fifth of its
  // distance when the chin drops all the way: the skin between is squeezed, never folded. (The jaw
  // point comes toward it by the part of its drop along their line: d / cos of the way down.)
  const follow = points.map((q, k) => {
    const i = UNDER[k] as number;
    const d = Math.hypot(q.x - p(i).x, q.y - p(i).y);
    const down = d > 0 ? ((q.x - p(i).x) * uy.x + (q.y - p(i).y) * uy.y) / d : 0;
    const approach = MAX_JAW_DROP * W * (JAW_FOLLOW[i] as number) * down;
    return approach > 0 ? Math.max(share, Math.min(1, 1 - (0.8 * d) / approach)) : share;
  });
  return { points, jaw: UNDER, follow };
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
