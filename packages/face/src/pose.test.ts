import { describe, expect, it } from 'vitest';
import { estimatePose, eyeLineRoll, projectGenericFace } from './pose.js';
import type { Point } from './models/types.js';

/** 68 points from the generic model at a pose; the points the model lacks are filled between neighbours. */
function landmarksAt(pose: { yaw: number; pitch: number; roll: number }): Point[] {
  const known = projectGenericFace(pose, { x: 300, y: 300 }, 2);
  const at = (i: number): Point => known.get(i) as Point;
  const mix = (a: Point, b: Point, t: number): Point => ({ x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t });
  const points: Point[] = Array.from({ length: 68 }, (_, i) => known.get(i) ?? at(30));
  // eyes: 36..41 and 42..47 around their corners, so the eye centres are the corner midpoints
  [37, 38].forEach((i, k) => { points[i] = mix(at(36), at(39), (k + 1) / 3); });
  [41, 40].forEach((i, k) => { points[i] = mix(at(36), at(39), (k + 1) / 3); });
  [43, 44].forEach((i, k) => { points[i] = mix(at(42), at(45), (k + 1) / 3); });
  [47, 46].forEach((i, k) => { points[i] = mix(at(42), at(45), (k + 1) / 3); });
  return points;
}

describe('head pose from landmarks', () => {
  it('recovers yaw and pitch of the generic face it fits, within half a degree', () => {
    for (const yaw of [-40, -20, 0, 15, 35]) {
      for (const pitch of [-25, 0, 20]) {
        const pose = estimatePose(landmarksAt({ yaw, pitch, roll: 0 }));
        expect(pose.yaw).toBeCloseTo(yaw, 0);
        expect(pose.pitch).toBeCloseTo(pitch, 0);
        expect(pose.fitError).toBeLessThan(0.001);
      }
    }
  });

  it('reads roll from the eye line: positive when the line drops toward the image right', () => {
    for (const roll of [-30, -5, 0, 12, 40]) {
      const points = landmarksAt({ yaw: 0, pitch: 0, roll });
      expect(eyeLineRoll(points)).toBeCloseTo(roll, 3);
      const pose = estimatePose(points);
      expect(pose.roll).toBeCloseTo(roll, 0);
      expect(pose.yaw).toBeCloseTo(0, 0);
    }
  });

  it('keeps yaw and pitch when the head is also tilted', () => {
    const pose = estimatePose(landmarksAt({ yaw: 25, pitch: -10, roll: 20 }));
    expect(pose.yaw).toBeCloseTo(25, 0);
    expect(pose.pitch).toBeCloseTo(-10, 0);
  });

  it('refuses fewer than 68 points', () => {
    expect(() => estimatePose([{ x: 0, y: 0 }])).toThrow(/68 landmarks/);
  });
});
