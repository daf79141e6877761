import type { MouthPose } from '../track.js';
import type { FaceFrame } from './geometry.js';
import type { FrameState } from './types.js';

/** The mesh's control points at rest and how each follows the head: what posing a frame starts from. */
export interface PoseBase {
  readonly rest: Float64Array;
  /** per control point: how much it follows the head (1 face, 0.45 mid ring, 0 anchors) */
  readonly headWeight: Float32Array;
  readonly frame: FaceFrame;
}

/** How strongly each jaw contour point (0..16) follows the chin when the jaw drops. */
const JAW_FOLLOW = [0, 0, 0, 0.1, 0.3, 0.55, 0.78, 0.93, 1, 0.93, 0.78, 0.55, 0.3, 0.1, 0, 0, 0];

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
  const jawDrop = 0.42 * W * jaw;
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
  const rest = base.rest;
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
