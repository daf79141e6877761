import type { FaceBox, FacePoint, FrameRegions } from './plugin.js';

// Where the face and the mouth are in a frame, from the 68 landmarks of the face contract (iBUG 300-W
// order): what the renderer hands the inspector, and what `avatar inspect` finds in a video's first frame.

function boxAround(points: readonly FacePoint[], margin: number, width: number, height: number): FaceBox {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const p of points) {
    x0 = Math.min(x0, p.x);
    y0 = Math.min(y0, p.y);
    x1 = Math.max(x1, p.x);
    y1 = Math.max(y1, p.y);
  }
  const mx = (x1 - x0) * margin;
  const my = (y1 - y0) * margin;
  const bx = Math.max(0, Math.floor(x0 - mx));
  const by = Math.max(0, Math.floor(y0 - my));
  return { x: bx, y: by, width: Math.min(width, Math.ceil(x1 + mx)) - bx, height: Math.min(height, Math.ceil(y1 + my)) - by };
}

/** The face and mouth (with the chin below it: where lips and jaw move) as boxes, from 68 landmarks. */
export function regionsFromLandmarks(points: readonly FacePoint[], width: number, height: number): FrameRegions {
  return {
    face: boxAround(points, 0.05, width, height),
    mouth: boxAround([...points.slice(48, 68), points[57] as FacePoint, points[8] as FacePoint], 0.15, width, height),
  };
}
