import type { FacePoint } from '@avatar/core';
import type { Box } from './types.js';

export interface Vec {
  x: number;
  y: number;
}

const meanOf = (points: readonly FacePoint[], from: number, to: number): Vec => {
  let x = 0;
  let y = 0;
  for (let i = from; i <= to; i++) {
    x += (points[i] as FacePoint).x;
    y += (points[i] as FacePoint).y;
  }
  const n = to - from + 1;
  return { x: x / n, y: y / n };
};

/** The face's own axes and sizes, from its 68 landmarks. */
export interface FaceFrame {
  /** unit vector along the eyes (left to right in the photo) */
  ux: Vec;
  /** unit vector down the face */
  uy: Vec;
  /** distance between the eye centres */
  iod: number;
  /** corner to corner of the mouth: the scale every mouth shape is measured against */
  mouthWidth: number;
  center: Vec;
  /** the farthest landmark from the centre */
  radius: number;
  /** where the head turns: below the chin, where the neck is */
  pivot: Vec;
}

export function faceFrame(landmarks: readonly FacePoint[]): FaceFrame {
  const p = (i: number): FacePoint => landmarks[i] as FacePoint;
  const eyeL = meanOf(landmarks, 36, 41);
  const eyeR = meanOf(landmarks, 42, 47);
  const ex = eyeR.x - eyeL.x;
  const ey = eyeR.y - eyeL.y;
  const iod = Math.hypot(ex, ey);
  const ux = { x: ex / iod, y: ey / iod };
  const uy = { x: -ux.y, y: ux.x };
  const center = meanOf(landmarks, 0, 67);
  let radius = 0;
  for (const q of landmarks) radius = Math.max(radius, Math.hypot(q.x - center.x, q.y - center.y));
  return {
    ux,
    uy,
    iod,
    mouthWidth: Math.hypot(p(54).x - p(48).x, p(54).y - p(48).y),
    center,
    radius,
    pivot: { x: p(8).x + uy.x * radius * 0.4, y: p(8).y + uy.y * radius * 0.4 },
  };
}

/** The smallest box holding both boxes; null stands for no box. */
export function union(a: Box | null, b: Box | null): Box | null {
  if (!a) return b;
  if (!b) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}
