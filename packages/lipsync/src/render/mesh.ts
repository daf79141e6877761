import Delaunator from 'delaunator';
import type { FacePoint } from '@avatar/core';
import type { FaceFrame, Vec } from './geometry.js';
import type { OpeningCorners } from './appearance.js';
import type { UnderJaw } from './jaw.js';
import { curveSamples, lipPlaces, placeCurve, poseMesh } from './pose.js';
import type { Curve, PoseBase } from './pose.js';

/**
 * The control points of the warp and their triangulation: the 68 landmarks, points on smooth curves
 * between the lips' landmarks, the bite line's two sides when the photo shows teeth, points that hold
 * the brow and cheeks still during a blink, a ring around the head that follows it halfway, and anchors
 * on a rectangle that never move, so every pixel outside it is the photo's, frame after frame.
 */
export interface FaceMesh extends PoseBase {
  readonly triangles: Uint32Array;
  /**
   * The opening drawn into: a closed curve through the inner lips (60-67), or, when the photo shows
   * teeth, through the corners and the bite line's two sides, so the photo's teeth stay on either side.
   */
  readonly opening: Curve;
}

/** Points between two landmarks of a lip outline: the warp then bends the lips along curves, not corners. */
const INNER_LIP_STEPS = 4;
const OUTER_LIP_STEPS = 2;
const JAW_STEPS = 3;
/** how much the points below the jaw follow the head: between the face (1) and the ring around it (0.45) */
const UNDER_JAW_HEAD = 0.75;

/** The ring around the head that follows it halfway: its radii along the face's axes. */
export function headRing(frame: FaceFrame): { rx: number; ry: number } {
  return { rx: frame.radius * 1.3, ry: frame.radius * 1.4 };
}

export interface MeshParts {
  /** the bite line when the photo shows teeth (MouthAppearance.bite) */
  bite?: readonly FacePoint[] | null;
  /** points below the jaw line and how they follow it (underJaw) */
  underJaw?: UnderJaw | null;
  /** the opening's edge near the corners where the landmarks' curve misses it (MouthAppearance.corners) */
  corners?: OpeningCorners | null;
}

export function buildMesh(landmarks: readonly FacePoint[], frame: FaceFrame, expressiveness: number, parts: MeshParts = {}): FaceMesh {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const { ux, uy, iod, center } = frame;
  const bite = parts.bite ?? null;
  const pts: Vec[] = landmarks.map((q) => ({ x: q.x, y: q.y }));
  const weights: number[] = landmarks.map(() => 1);
  // the bite line, twice: its upper side stays with the skull (the upper teeth), its lower side moves
  // with the jaw (the lower teeth or lip)
  let biteUpper: number[] | null = null;
  let biteLower: number[] | null = null;
  if (bite) {
    biteUpper = bite.map((q) => pts.push({ x: q.x, y: q.y }) - 1);
    biteLower = bite.map((q) => pts.push({ x: q.x, y: q.y }) - 1);
    for (let k = 0; k < 6; k++) weights.push(1);
  }
  // the opening's edge near the corners, as points on the inner lips' curve between a corner and the middle
  // (each side's from the corner inward; upper and lower in step, so the k-th of each meet)
  let corners: { upperLeft: number[]; upperRight: number[]; lowerLeft: number[]; lowerRight: number[] } | null = null;
  if (parts.corners) {
    const add = (list: readonly FacePoint[]): number[] => list.map((q) => {
      weights.push(1);
      return pts.push({ x: q.x, y: q.y }) - 1;
    });
    const c = parts.corners;
    corners = { upperLeft: add(c.upperLeft), upperRight: add(c.upperRight), lowerLeft: add(c.lowerLeft), lowerRight: add(c.lowerRight) };
  }
  const curves: Curve[] = [];
  /** a curve's samples follow the head as its controls do (`weight`) */
  const addCurve = (controls: readonly number[], steps: number, { open = false, weight = 1 } = {}): Curve => {
    const curve = { controls, steps, first: pts.length, open };
    for (let k = 0; k < curveSamples(curve); k++) {
      pts.push({ x: 0, y: 0 });
      weights.push(weight);
    }
    curves.push(curve);
    return curve;
  };
  addCurve([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59], OUTER_LIP_STEPS);
  // around the mouth: upper lip left to right, lower lip right to left
  const lips = corners
    ? addCurve([
      60, ...corners.upperLeft, 61, 62, 63, ...[...corners.upperRight].reverse(),
      64, ...corners.lowerRight, 65, 66, 67, ...[...corners.lowerLeft].reverse(),
    ], INNER_LIP_STEPS)
    : addCurve([60, 61, 62, 63, 64, 65, 66, 67], INNER_LIP_STEPS);
  const opening = biteUpper && biteLower
    ? addCurve([60, ...biteUpper, 64, ...[...biteLower].reverse()], INNER_LIP_STEPS)
    : lips;
  // the jaw line bends as a curve when the chin drops: the edge of the chin against the neck or a collar
  // stays smooth, with no corner where one landmark's drop gives way to the next's
  addCurve([2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], JAW_STEPS, { open: true });
  // the forehead moves with the head: points above the brows
  for (const i of [17, 19, 21, 22, 24, 26]) {
    pts.push({ x: p(i).x - uy.x * iod * 0.7, y: p(i).y - uy.y * iod * 0.7 });
    weights.push(1);
  }
  // around each eye, points that stay put during a blink: the lid closes without bending the brow,
  // the glasses or the cheek
  for (const [corner0, corner1, up0, up1, low0, low1] of [[36, 39, 37, 38, 41, 40], [42, 45, 43, 44, 47, 46]] as const) {
    const eyeWidth = Math.hypot(p(corner1).x - p(corner0).x, p(corner1).y - p(corner0).y);
    for (const i of [up0, up1]) {
      pts.push({ x: p(i).x - uy.x * eyeWidth * 0.3, y: p(i).y - uy.y * eyeWidth * 0.3 });
      weights.push(1);
    }
    for (const i of [low0, low1]) {
      pts.push({ x: p(i).x + uy.x * eyeWidth * 0.22, y: p(i).y + uy.y * eyeWidth * 0.22 });
      weights.push(1);
    }
    for (const [i, dir] of [[corner0, -1], [corner1, 1]] as const) {
      pts.push({ x: p(i).x + ux.x * eyeWidth * 0.18 * dir, y: p(i).y + ux.y * eyeWidth * 0.18 * dir });
      weights.push(1);
    }
  }
  // below the jaw line, points that follow the chin as what is there does (a beard, or a neck that stays)
  let under: PoseBase['underJaw'] = null;
  if (parts.underJaw) {
    under = { first: pts.length, jaw: parts.underJaw.jaw, follow: parts.underJaw.follow };
    const controls = parts.underJaw.points.map((q) => {
      weights.push(UNDER_JAW_HEAD);
      return pts.push({ x: q.x, y: q.y }) - 1;
    });
    addCurve(controls, 2, { open: true, weight: UNDER_JAW_HEAD });
  }
  // a ring around the head that follows it halfway, so motion fades out smoothly
  const { rx, ry } = headRing(frame);
  for (let k = 0; k < 16; k++) {
    const a = (k / 16) * Math.PI * 2;
    const lx = Math.cos(a) * rx;
    const ly = Math.sin(a) * ry;
    pts.push({ x: center.x + ux.x * lx + uy.x * ly, y: center.y + ux.y * lx + uy.y * ly });
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
  const rest = new Float64Array(pts.length * 2);
  pts.forEach((q, i) => {
    rest[2 * i] = q.x;
    rest[2 * i + 1] = q.y;
  });
  for (const curve of curves) placeCurve(rest, curve);
  const headWeight = Float32Array.from(weights);
  const pairs = corners ? { upper: [...corners.upperLeft, ...corners.upperRight], lower: [...corners.lowerLeft, ...corners.lowerRight] } : null;
  const base: PoseBase = { rest, headWeight, frame, curves, bite: biteUpper && biteLower ? { upper: biteUpper, lower: biteLower } : null, corners: pairs, lips: lipPlaces(rest, frame), underJaw: under };
  // Triangulated with the mouth wide open: in the photo the lips touch, and a mesh made there joins the
  // upper lip to the lower one with thin triangles that an opening mouth stretches into streaks across
  // the lips. Made on the open shape, no triangle spans the opening except inside it, where the inner
  // mouth is drawn over them.
  const open = new Float64Array(rest.length);
  poseMesh(base, open, { jawOpen: 1, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 }, { blink: 0, headAngle: 0, headX: 0, headY: 0 }, expressiveness);
  // and the lower lip pushed further down, so that near the corners, too, the mesh goes around the
  // opening rather than across it; never so far that it passes the chin
  const chinRoom = ((open[2 * 8] as number) - (open[2 * 57] as number)) * uy.x + ((open[2 * 8 + 1] as number) - (open[2 * 57 + 1] as number)) * uy.y;
  const push = Math.max(0, Math.min(0.25 * frame.mouthWidth, chinRoom - 0.15 * frame.mouthWidth));
  for (const i of [55, 56, 57, 58, 59, 65, 66, 67, ...(biteLower ?? []), ...(pairs?.lower ?? [])]) {
    open[2 * i] = (open[2 * i] as number) + uy.x * push;
    open[2 * i + 1] = (open[2 * i + 1] as number) + uy.y * push;
  }
  // and the row below the jaw short of the ring, as at rest: a beard's row that passes it as it drops
  // folds the skin it passes under the beard, which the order below draws over it
  if (parts.underJaw && under) {
    const row = under.first;
    parts.underJaw.reach.forEach((most, k) => {
      const i = row + k;
      const down = ((open[2 * i] as number) - (rest[2 * i] as number)) * uy.x + ((open[2 * i + 1] as number) - (rest[2 * i + 1] as number)) * uy.y;
      if (down <= most) return;
      open[2 * i] = (open[2 * i] as number) - uy.x * (down - most);
      open[2 * i + 1] = (open[2 * i + 1] as number) - uy.y * (down - most);
    });
  }
  for (const curve of curves) placeCurve(open, curve);
  const triangles = openingFirst(new Delaunator(open).triangles, lips, opening, biteUpper, biteLower);
  return { ...base, opening, triangles: under ? belowJawFirst(triangles, under.first) : triangles };
}

/**
 * The triangles below the jaw's row first (every corner on the row, the ring or the anchors, which come
 * after it), keeping the order otherwise: when a beard's row drops past the ring, the skin it folds is
 * drawn under the beard, as the beard hides the neck in a photo.
 */
function belowJawFirst(triangles: ArrayLike<number>, row: number): Uint32Array {
  return cornersFirst(triangles, (v) => v >= row);
}

/** The triangles whose every corner passes `first` before the others, each group in its own order. */
function cornersFirst(triangles: ArrayLike<number>, first: (corner: number) => boolean): Uint32Array {
  const before: number[] = [];
  const after: number[] = [];
  for (let t = 0; t < triangles.length; t += 3) {
    const corners = [triangles[t] as number, triangles[t + 1] as number, triangles[t + 2] as number];
    (corners.every(first) ? before : after).push(...corners);
  }
  return Uint32Array.from([...before, ...after]);
}

/**
 * The triangles with the ones inside the opening first (every corner on the inner lips or the bite
 * line): frames draw them in this order, so where pressed lips fold the opening's triangles under them
 * (a smile's opening, closed for p, b, m, is curved), the lips are drawn over them, never the teeth
 * between them over the lips.
 */
function openingFirst(triangles: ArrayLike<number>, lips: Curve, opening: Curve, biteUpper: readonly number[] | null, biteLower: readonly number[] | null): Uint32Array {
  const inside = new Set<number>([...lips.controls, ...opening.controls, ...(biteUpper ?? []), ...(biteLower ?? [])]);
  for (const curve of new Set([lips, opening])) {
    for (let k = 0; k < curveSamples(curve); k++) inside.add(curve.first + k);
  }
  return cornersFirst(triangles, (v) => inside.has(v));
}
