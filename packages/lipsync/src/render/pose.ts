import type { MouthPose } from '../track.js';
import type { FaceFrame } from './geometry.js';
import { JAW_FOLLOW, MAX_JAW_DROP } from './jaw.js';
import type { FrameState } from './types.js';

/**
 * A Catmull-Rom curve through some of the mesh's points (`controls`, indices), sampled `steps` times per
 * segment: the samples between two controls are mesh points of their own, from index `first` on, placed
 * from the controls wherever they move (placeCurve). Closed unless `open` (the jaw line ends by the ears).
 */
export interface Curve {
  readonly controls: readonly number[];
  readonly steps: number;
  readonly first: number;
  readonly open?: boolean;
}

/** How many segments a curve has: one per control when closed, one fewer when open. */
const segmentsOf = (curve: Curve): number => curve.controls.length - (curve.open ? 1 : 0);

/** How many mesh points a curve's samples between its controls take. */
export const curveSamples = (curve: Curve): number => segmentsOf(curve) * (curve.steps - 1);

/** The mesh's control points at rest and how each follows the head: what posing a frame starts from. */
export interface PoseBase {
  readonly rest: Float64Array;
  /** per control point: how much it follows the head (1 face, 0.45 mid ring, 0 anchors) */
  readonly headWeight: Float32Array;
  readonly frame: FaceFrame;
  /** curves whose samples are placed from their controls after the controls move */
  readonly curves: readonly Curve[];
  /**
   * when the photo shows teeth: the bite line's upper side (stays with the skull) and lower side (moves
   * with the lower inner lip: jaw and lower teeth), per column 61/67, 62/66, 63/65
   */
  readonly bite: { readonly upper: readonly number[]; readonly lower: readonly number[] } | null;
  /** points on the inner lips' curve near the corners (left, right), where the photo's opening reaches past the landmarks */
  readonly corners: { readonly upper: readonly number[]; readonly lower: readonly number[] } | null;
  /**
   * the lip landmarks' places across the mouth at rest (per landmark index, along the eyes, from the
   * middle between the inner corners) and half the inner corners' distance: what the lips' bands move by
   */
  readonly lips: { readonly across: Float64Array; readonly half: number };
  /** points below the jaw line, from mesh index `first` on: the jaw point above each, and its share of that point's drop */
  readonly underJaw: { readonly first: number; readonly jaw: readonly number[]; readonly follow: readonly number[] } | null;
}

/** The lips' places across the mouth at rest, for PoseBase.lips. */
export function lipPlaces(rest: Float64Array, frame: FaceFrame): PoseBase['lips'] {
  const { ux } = frame;
  const midX = ((rest[2 * 60] as number) + (rest[2 * 64] as number)) / 2;
  const midY = ((rest[2 * 60 + 1] as number) + (rest[2 * 64 + 1] as number)) / 2;
  // every point's (the lips', and any added on the lips' curve after the landmarks)
  const across = new Float64Array(rest.length / 2);
  for (let i = 48; i < across.length; i++) across[i] = ((rest[2 * i] as number) - midX) * ux.x + ((rest[2 * i + 1] as number) - midY) * ux.y;
  return { across, half: Math.max(1, Math.abs((across[64] as number) - (across[60] as number)) / 2) };
}

const catmullRom = (p0: number, p1: number, p2: number, p3: number, t: number): number => {
  const t2 = t * t, t3 = t2 * t;
  return 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3);
};

/**
 * Samples a closed curve from its controls in `points`, `steps` times per segment starting at each
 * control (t = 0 gives the control itself), into `out` from point index `at` on; `skipControls` leaves
 * the controls out. Returns the next free index.
 */
function sampleCurve(points: Float64Array, curve: Curve, steps: number, out: Float64Array, at: number, skipControls: boolean): number {
  const { controls } = curve;
  const n = controls.length;
  // an open curve's end segments repeat their end control as the one beyond it
  const control = (k: number): number => controls[curve.open ? Math.max(0, Math.min(n - 1, k)) : (k + n) % n] as number;
  let o = at;
  for (let i = 0; i < segmentsOf(curve); i++) {
    const a = control(i - 1), b = control(i), c = control(i + 1), d = control(i + 2);
    for (let k = skipControls ? 1 : 0; k < steps; k++, o++) {
      const t = k / steps;
      out[2 * o] = catmullRom(points[2 * a] as number, points[2 * b] as number, points[2 * c] as number, points[2 * d] as number, t);
      out[2 * o + 1] = catmullRom(points[2 * a + 1] as number, points[2 * b + 1] as number, points[2 * c + 1] as number, points[2 * d + 1] as number, t);
    }
  }
  return o;
}

/** Places a curve's samples in `points` from its controls there. */
export function placeCurve(points: Float64Array, curve: Curve): void {
  sampleCurve(points, curve, curve.steps, points, curve.first, true);
}

/**
 * The curve as a closed polygon, x, y pairs, sampled `steps` times per segment (a multiple of the
 * curve's own steps, so its mesh points are among the corners): the outline a frame draws along.
 */
export function curveOutline(points: Float64Array, curve: Curve, steps = curve.steps): Float64Array {
  const out = new Float64Array(segmentsOf(curve) * steps * 2);
  sampleCurve(points, curve, steps, out, 0, false);
  return out;
}

/**
 * Moves the control points for one frame into `moved`: mouth, jaw and eyelids, then the whole head.
 * Returns the lip gap in pixels (0 when the lips touch).
 */
export function poseMesh(base: PoseBase, moved: Float64Array, mouth: MouthPose, state: FrameState, expressiveness: number): { gap: number } {
  const m = moved;
  m.set(base.rest);
  const e = expressiveness;
  const { ux, uy, mouthWidth: W, pivot } = base.frame;
  const jaw = Math.max(0, Math.min(1, mouth.jawOpen * e));
  const closure = Math.max(0, Math.min(1, mouth.lipClosure));
  const tuck = Math.max(0, Math.min(1, mouth.lipToTeeth));
  const width = Math.max(-1, Math.min(1, mouth.lipWidth * e));
  // f/v: the lower lip tucks under the upper teeth, leaving a sliver where the teeth show
  const gap = 0.5 * W * jaw * (1 - closure) * (1 - 0.75 * tuck) + 0.05 * W * tuck * (1 - closure);
  const jawDrop = MAX_JAW_DROP * W * jaw;
  const move = (i: number, along: number, down: number): void => {
    m[2 * i] = (m[2 * i] as number) + ux.x * along + uy.x * down;
    m[2 * i + 1] = (m[2 * i + 1] as number) + ux.y * along + uy.y * down;
  };
  // jaw and chin follow the jaw drop, fading toward the ears
  for (let i = 0; i <= 16; i++) move(i, 0, (JAW_FOLLOW[i] as number) * jawDrop);
  // and below the jaw line, the beard with them, the neck hardly
  if (base.underJaw) {
    const { first, jaw: above, follow } = base.underJaw;
    above.forEach((i, k) => move(first + k, 0, (follow[k] as number) * (JAW_FOLLOW[i] as number) * jawDrop));
  }
  // The lips move as two bands: each inner-lip landmark by its own amount (the lower lip carries most of
  // the opening, the upper lifts a little, the corners drop a little), and every outer-lip landmark as the
  // inner lip does at the same place across the mouth, so both lips keep their thickness. The corners
  // spread (ee) or come in (oo, w), the lips between following by their distance from the middle, and
  // rounded lips push out.
  const rest = base.rest;
  const { across: acrossOf, half } = base.lips;
  const lower = 0.88 * gap + 0.12 * jawDrop - tuck * 0.03 * W;
  const cornerDown = 0.3 * gap;
  // the upper lip lifts a little, but not over the photo's own teeth: those would stretch
  const lift = base.bite ? 0 : 0.1 * gap;
  const spread = (width >= 0 ? width * 0.07 * W : width * 0.11 * W) - 0.05 * gap;
  const pout = Math.max(0, -width) * 0.035 * W;
  // rounded lips purse: they gather toward the middle, the opening between them more than the lips'
  // outer edge, so it narrows toward a circle
  const purse = Math.max(0, -width) * 0.14 * W;
  const bands: readonly (readonly [readonly number[], readonly number[], readonly number[], number, readonly number[]])[] = [
    // inner chain (corner to corner), its drops, the outer landmarks that follow it, how they push out,
    // and the points added on the inner lip near the corners, which move as the chain does where they are
    [[60, 61, 62, 63, 64], [cornerDown, -lift, -1.2 * lift, -lift, cornerDown], [49, 50, 51, 52, 53], -pout, base.corners?.upper ?? []],
    [[60, 67, 66, 65, 64], [cornerDown, 0.94 * lower, lower, 0.94 * lower, cornerDown], [59, 58, 57, 56, 55], pout, base.corners?.lower ?? []],
  ];
  for (const [chain, drops, outer, push, added] of bands) {
    const dropAt = (x: number): number => {
      if (x <= (acrossOf[chain[0] as number] as number)) return drops[0] as number;
      for (let k = 1; k < chain.length; k++) {
        const x0 = acrossOf[chain[k - 1] as number] as number, x1 = acrossOf[chain[k] as number] as number;
        if (x <= x1) return (drops[k - 1] as number) + ((drops[k] as number) - (drops[k - 1] as number)) * (x1 > x0 ? (x - x0) / (x1 - x0) : 1);
      }
      return drops[chain.length - 1] as number;
    };
    // (over the photo's own teeth the lips do not purse: the teeth under them would stretch)
    const squeeze = base.bite ? 0 : purse;
    for (const i of [...chain.slice(1, -1), ...added]) {
      const x = acrossOf[i] as number;
      move(i, ((spread - squeeze) * x) / half, dropAt(x));
    }
    for (const i of outer) {
      const x = acrossOf[i] as number;
      const t = Math.max(-1, Math.min(1, x / half));
      move(i, (spread - 0.7 * squeeze) * t, dropAt(x) + push * (1 - t * t));
    }
  }
  // and the inner corners most: the lips meet at the sides, so the opening's ends round off instead of
  // running out to the corners in points
  const cornerPurse = base.bite ? 0 : purse * (1 + 0.6 * Math.max(0, -width));
  move(48, -spread, cornerDown);
  move(60, cornerPurse - spread, cornerDown);
  move(54, spread, cornerDown);
  move(64, spread - cornerPurse, cornerDown);
  if (base.bite) {
    // the lower teeth move with the lower lip; the upper ones stay with the skull
    base.bite.lower.forEach((i, k) => {
      const lip = 67 - k;
      m[2 * i] = (m[2 * i] as number) + (m[2 * lip] as number) - (rest[2 * lip] as number);
      m[2 * i + 1] = (m[2 * i + 1] as number) + (m[2 * lip + 1] as number) - (rest[2 * lip + 1] as number);
    });
  }
  // Pressed lips (p, b, m) meet even where the photo's lips are apart (a smile showing its teeth) or the
  // jaw is still a little open: each inner lip moves toward the line between them by `closure` of the way
  // from where it is, its outer edge most of that way with it, and the photo's teeth between them (the
  // bite line's two sides) are covered as the lips meet.
  if (closure > 0) {
    // the points near the corners meet their opposite as the landmarks do
    base.corners?.upper.forEach((up, k) => {
      const low = base.corners?.lower[k] as number;
      const meetX = ((m[2 * up] as number) + (m[2 * low] as number)) / 2, meetY = ((m[2 * up + 1] as number) + (m[2 * low + 1] as number)) / 2;
      for (const i of [up, low]) {
        m[2 * i] = (m[2 * i] as number) + closure * (meetX - (m[2 * i] as number));
        m[2 * i + 1] = (m[2 * i + 1] as number) + closure * (meetY - (m[2 * i + 1] as number));
      }
    });
    for (let k = 0; k < 3; k++) {
      const up = 61 + k, low = 67 - k;
      const meetX = ((m[2 * up] as number) + (m[2 * low] as number)) / 2;
      const meetY = ((m[2 * up + 1] as number) + (m[2 * low + 1] as number)) / 2;
      const pull = (i: number, follower: number): void => {
        const dx = closure * (meetX - (m[2 * i] as number)), dy = closure * (meetY - (m[2 * i + 1] as number));
        m[2 * i] = (m[2 * i] as number) + dx;
        m[2 * i + 1] = (m[2 * i + 1] as number) + dy;
        m[2 * follower] = (m[2 * follower] as number) + 0.6 * dx;
        m[2 * follower + 1] = (m[2 * follower + 1] as number) + 0.6 * dy;
      };
      pull(up, 50 + k);
      pull(low, 58 - k);
      if (base.bite) {
        for (const i of [base.bite.upper[k] as number, base.bite.lower[k] as number]) {
          m[2 * i] = (m[2 * i] as number) + closure * (meetX - (m[2 * i] as number));
          m[2 * i + 1] = (m[2 * i + 1] as number) + closure * (meetY - (m[2 * i + 1] as number));
        }
      }
    }
  }
  for (const curve of base.curves) placeCurve(m, curve);
  // eyelids: the upper lid comes down onto the lower one
  if (state.blink > 0) {
    for (const [upper, lower2] of [[37, 41], [38, 40], [43, 47], [44, 46]] as const) {
      const dx = (rest[2 * lower2] as number) - (rest[2 * upper] as number);
      const dy = (rest[2 * lower2 + 1] as number) - (rest[2 * upper + 1] as number);
      m[2 * upper] = (m[2 * upper] as number) + dx * 0.97 * state.blink;
      m[2 * upper + 1] = (m[2 * upper + 1] as number) + dy * 0.97 * state.blink;
    }
  }
  // the head turns about the neck; each point follows by its weight
  if (state.headAngle !== 0 || state.headX !== 0 || state.headY !== 0) {
    const n = m.length / 2;
    for (let i = 0; i < n; i++) {
      const w = base.headWeight[i] as number;
      if (w === 0) continue;
      const a = state.headAngle * w;
      const cos = Math.cos(a);
      const sin = Math.sin(a);
      const x = (m[2 * i] as number) - pivot.x;
      const y = (m[2 * i + 1] as number) - pivot.y;
      m[2 * i] = pivot.x + x * cos - y * sin + state.headX * w;
      m[2 * i + 1] = pivot.y + x * sin + y * cos + state.headY * w;
    }
  }
  return { gap };
}
