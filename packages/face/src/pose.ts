import type { HeadPose } from '@avatar/core';
import type { Point } from './models/types.js';

/**
 * A generic adult face in millimetres, for the landmarks that sit on rigid parts of the face.
 * Axes follow the image: x to the image's right, y down, z away from the camera; origin at the nose tip.
 * Jaw contour points (0-16) are left out on purpose: on a turned head they slide along the visible
 * outline instead of staying on one point of the face, which would bias the fit.
 */
export const GENERIC_FACE_3D: ReadonlyArray<readonly [index: number, x: number, y: number, z: number]> = [
  [27, 0, -45, 25], // nasion, top of the nose bridge
  [30, 0, 5, 0], // nose tip
  [31, -14, 13, 22], // nostril wings
  [35, 14, 13, 22],
  [33, 0, 18, 18], // under the nose
  [36, -45, -33, 45], // outer eye corners
  [39, -15, -32, 30], // inner eye corners
  [42, 15, -32, 30],
  [45, 45, -33, 45],
  [48, -25, 32, 30], // mouth corners
  [54, 25, 32, 30],
  [51, 0, 25, 18], // upper lip
  [57, 0, 43, 22], // lower lip
  [8, 0, 72, 28], // chin
];

export interface PoseEstimate extends HeadPose {
  /** root-mean-square distance between the landmarks and the fitted model, as a share of the face width */
  fitError: number;
}

const DEG = 180 / Math.PI;

type Vec3 = [number, number, number];
const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const norm = (a: Vec3): number => Math.sqrt(dot(a, a));
const scale = (a: Vec3, k: number): Vec3 => [a[0] * k, a[1] * k, a[2] * k];
const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

function invert3(m: number[][]): number[][] {
  const [a, b, c] = m as [number[], number[], number[]];
  const [a0, a1, a2] = a as [number, number, number];
  const [b0, b1, b2] = b as [number, number, number];
  const [c0, c1, c2] = c as [number, number, number];
  const det = a0 * (b1 * c2 - b2 * c1) - a1 * (b0 * c2 - b2 * c0) + a2 * (b0 * c1 - b1 * c0);
  const k = 1 / det;
  return [
    [(b1 * c2 - b2 * c1) * k, (a2 * c1 - a1 * c2) * k, (a1 * b2 - a2 * b1) * k],
    [(b2 * c0 - b0 * c2) * k, (a0 * c2 - a2 * c0) * k, (a2 * b0 - a0 * b2) * k],
    [(b0 * c1 - b1 * c0) * k, (a1 * c0 - a0 * c1) * k, (a0 * b1 - a1 * b0) * k],
  ];
}

/** The roll of the eye line in degrees: the angle from the image-left eye's centre to the image-right eye's. */
export function eyeLineRoll(landmarks: readonly Point[]): number {
  const centre = (from: number, to: number): Point => {
    let x = 0;
    let y = 0;
    for (let i = from; i <= to; i++) {
      x += landmarks[i]?.x ?? 0;
      y += landmarks[i]?.y ?? 0;
    }
    const n = to - from + 1;
    return { x: x / n, y: y / n };
  };
  const left = centre(36, 41);
  const right = centre(42, 47);
  return Math.atan2(right.y - left.y, right.x - left.x) * DEG;
}

/**
 * Head pose from 68 landmarks by fitting the generic 3D face under scaled orthographic projection
 * (a portrait is far from the lens compared with the depth of a face): least squares gives the 2x3
 * projection, its two rows are made orthonormal, their cross product completes the rotation, and the
 * rotation is read as roll * yaw * pitch. Roll is then taken from the eye line, which is what alignment
 * straightens and which the fit cannot beat.
 */
export function estimatePose(landmarks: readonly Point[]): PoseEstimate {
  if (landmarks.length < 68) throw new Error(`pose needs 68 landmarks, got ${landmarks.length}`);
  const model: Vec3[] = GENERIC_FACE_3D.map(([, x, y, z]) => [x, y, z]);
  const image: Point[] = GENERIC_FACE_3D.map(([i]) => landmarks[i] as Point);
  const n = model.length;
  const mMean = scale(model.reduce((s, p) => add(s, p), [0, 0, 0] as Vec3), 1 / n);
  const iMean = image.reduce((s, p) => ({ x: s.x + p.x / n, y: s.y + p.y / n }), { x: 0, y: 0 });
  const X = model.map((p) => sub(p, mMean));
  const U = image.map((p) => ({ x: p.x - iMean.x, y: p.y - iMean.y }));

  // A = (U^T X)(X^T X)^-1
  const xtx: number[][] = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
  const utx: [Vec3, Vec3] = [[0, 0, 0], [0, 0, 0]];
  for (let k = 0; k < n; k++) {
    const p = X[k] as Vec3;
    const u = U[k] as Point;
    for (let r = 0; r < 3; r++) {
      for (let c = 0; c < 3; c++) (xtx[r] as number[])[c] = ((xtx[r] as number[])[c] ?? 0) + p[r]! * p[c]!;
      utx[0][r] = utx[0][r]! + u.x * p[r]!;
      utx[1][r] = utx[1][r]! + u.y * p[r]!;
    }
  }
  const inv = invert3(xtx);
  const row = (v: Vec3): Vec3 => [0, 1, 2].map((c) => v[0] * inv[0]![c]! + v[1] * inv[1]![c]! + v[2] * inv[2]![c]!) as Vec3;
  const a1 = row(utx[0]);
  const a2 = row(utx[1]);
  const s = (norm(a1) + norm(a2)) / 2;

  // nearest pair of orthonormal rows, treating both rows alike
  const n1 = scale(a1, 1 / norm(a1));
  const n2 = scale(a2, 1 / norm(a2));
  const c = scale(add(n1, n2), 1 / norm(add(n1, n2)));
  const d = scale(sub(n1, n2), 1 / norm(sub(n1, n2)));
  const r1 = scale(add(c, d), Math.SQRT1_2);
  const r2 = scale(sub(c, d), Math.SQRT1_2);
  const r3 = cross(r1, r2);

  // R = Rz(roll) Ry(b) Rx(a): R20 = -sin b, R21 = cos b sin a, R22 = cos b cos a
  const b = Math.asin(Math.max(-1, Math.min(1, -r3[0])));
  const a = Math.atan2(r3[1], r3[2]);

  let sq = 0;
  for (let k = 0; k < n; k++) {
    const p = X[k] as Vec3;
    const u = U[k] as Point;
    const ex = s * dot(r1, p) - u.x;
    const ey = s * dot(r2, p) - u.y;
    sq += ex * ex + ey * ey;
  }
  // face width: the two outer eye corners span 90 mm of the model
  const faceWidthPx = s * 90;
  return {
    // a positive Ry moves the nose tip toward the image's left, i.e. the face turns left: flip to "toward the right"
    yaw: round1(-b * DEG),
    // a positive Rx moves the nose tip down: the face looks down; flip so that up is positive
    pitch: round1(-a * DEG),
    roll: round1(eyeLineRoll(landmarks)),
    fitError: Math.round((Math.sqrt(sq / n) / faceWidthPx) * 1000) / 1000,
  };
}

const round1 = (x: number): number => Math.round(x * 10) / 10 + 0;

/** Projects the generic face at a pose (for tests and for drawing): the inverse of estimatePose's model. */
export function projectGenericFace(pose: HeadPose, centre: Point, pixelsPerMm: number): Map<number, Point> {
  const rad = Math.PI / 180;
  const a = -pose.pitch * rad;
  const b = -pose.yaw * rad;
  const g = pose.roll * rad;
  const rx = [[1, 0, 0], [0, Math.cos(a), -Math.sin(a)], [0, Math.sin(a), Math.cos(a)]];
  const ry = [[Math.cos(b), 0, Math.sin(b)], [0, 1, 0], [-Math.sin(b), 0, Math.cos(b)]];
  const rz = [[Math.cos(g), -Math.sin(g), 0], [Math.sin(g), Math.cos(g), 0], [0, 0, 1]];
  const mul = (p: number[][], q: number[][]): number[][] => p.map((r) => [0, 1, 2].map((c) => r.reduce((acc, v, k) => acc + v * q[k]![c]!, 0)));
  const R = mul(rz, mul(ry, rx));
  const out = new Map<number, Point>();
  for (const [i, x, y, z] of GENERIC_FACE_3D) {
    const px = R[0]![0]! * x + R[0]![1]! * y + R[0]![2]! * z;
    const py = R[1]![0]! * x + R[1]![1]! * y + R[1]![2]! * z;
    out.set(i, { x: centre.x + px * pixelsPerMm, y: centre.y + py * pixelsPerMm });
  }
  return out;
}
