/** Distances beyond this are reported as this: the mouth's shading is the same from there on. */
export const OUTLINE_REACH = 5;

/**
 * Signed distance to a closed polygon's outline (positive inside), row by row and capped at
 * OUTLINE_REACH: each row keeps only the edges that can come within reach of it and the x where edges
 * cross it, so a pixel tests a handful of edges instead of all of them.
 */
export class OutlineRows {
  private readonly ax: Float64Array;
  private readonly ay: Float64Array;
  private readonly ex: Float64Array;
  private readonly ey: Float64Array;
  /** per edge: its x extent widened by the reach, its squared length */
  private readonly reachX0: Float64Array;
  private readonly reachX1: Float64Array;
  private readonly len: Float64Array;
  private readonly bx: Float64Array;
  private readonly by: Float64Array;
  /** this row's edges within reach, and the x where edges cross it (the first nearCount / crossCount) */
  private readonly near: Int32Array;
  private readonly crossings: Float64Array;
  private nearCount = 0;
  private crossCount = 0;
  private y = 0;

  /** `poly`: the outline's corners as x, y pairs */
  constructor(poly: Float64Array) {
    const n = poly.length / 2;
    this.ax = new Float64Array(n);
    this.ay = new Float64Array(n);
    this.bx = new Float64Array(n);
    this.by = new Float64Array(n);
    this.ex = new Float64Array(n);
    this.ey = new Float64Array(n);
    this.reachX0 = new Float64Array(n);
    this.reachX1 = new Float64Array(n);
    this.len = new Float64Array(n);
    this.near = new Int32Array(n);
    this.crossings = new Float64Array(n);
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const ax = poly[2 * i] as number, ay = poly[2 * i + 1] as number, bx = poly[2 * j] as number, by = poly[2 * j + 1] as number;
      this.ax[i] = ax;
      this.ay[i] = ay;
      this.bx[i] = bx;
      this.by[i] = by;
      const ex = bx - ax, ey = by - ay;
      this.ex[i] = ex;
      this.ey[i] = ey;
      this.reachX0[i] = Math.min(ax, ax + ex) - OUTLINE_REACH;
      this.reachX1[i] = Math.max(ax, ax + ex) + OUTLINE_REACH;
      this.len[i] = ex * ex + ey * ey;
    }
  }

  row(y: number): void {
    this.y = y;
    let near = 0;
    let cross = 0;
    for (let i = 0; i < this.ax.length; i++) {
      const ay = this.ay[i] as number, by = this.by[i] as number;
      const ax = this.ax[i] as number, bx = this.bx[i] as number;
      if (ay > y !== by > y) this.crossings[cross++] = ((bx - ax) * (y - ay)) / (by - ay) + ax;
      if (Math.min(ay, by) - OUTLINE_REACH <= y && y <= Math.max(ay, by) + OUTLINE_REACH) this.near[near++] = i;
    }
    this.nearCount = near;
    this.crossCount = cross;
  }

  /** at (x, row y): positive inside, negative outside, magnitude at most OUTLINE_REACH */
  distance(x: number): number {
    // even-odd rule: inside when an odd number of edges cross the row to the right of x
    let inside = false;
    for (let k = 0; k < this.crossCount; k++) if (x < (this.crossings[k] as number)) inside = !inside;
    let best = OUTLINE_REACH * OUTLINE_REACH;
    const y = this.y;
    for (let k = 0; k < this.nearCount; k++) {
      const i = this.near[k] as number;
      if ((this.reachX0[i] as number) > x || (this.reachX1[i] as number) < x) continue;
      const ax = this.ax[i] as number, ay = this.ay[i] as number;
      const ex = this.ex[i] as number, ey = this.ey[i] as number;
      const len = this.len[i] as number;
      const t = len > 0 ? Math.max(0, Math.min(1, ((x - ax) * ex + (y - ay) * ey) / len)) : 0;
      const dx = ax + t * ex - x;
      const dy = ay + t * ey - y;
      best = Math.min(best, dx * dx + dy * dy);
    }
    const d = Math.sqrt(best);
    return inside ? d : -d;
  }
}

/**
 * Per column x0..x1, where the outline (x, y pairs) starts and ends: its topmost and lowest crossing of
 * the column, or the fallbacks where it has none. The mouth is shaded from these local edges, so a
 * smile-shaped opening is as dark under its own upper edge at the sides as in the middle.
 */
export function columnSpans(poly: Float64Array, x0: number, x1: number, fallbackTop: number, fallbackBottom: number, tops: Float64Array, bottoms: Float64Array): void {
  const n = poly.length / 2;
  for (let x = x0; x <= x1; x++) {
    let top = Infinity;
    let bottom = -Infinity;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const ax = poly[2 * i] as number, ay = poly[2 * i + 1] as number, bx = poly[2 * j] as number, by = poly[2 * j + 1] as number;
      if (ax > x !== bx > x) {
        const y = ay + ((by - ay) * (x - ax)) / (bx - ax);
        if (y < top) top = y;
        if (y > bottom) bottom = y;
      }
    }
    tops[x - x0] = top <= bottom ? top : fallbackTop;
    bottoms[x - x0] = top <= bottom ? bottom : fallbackBottom;
  }
}

/**
 * Rounds every corner of a closed polygon (x, y pairs) that turns by more than `maxTurn` radians: the
 * corner is cut back along both edges (by up to 0.4 of the shorter one) and replaced by a quadratic curve
 * through it, sampled so that no corner of the result turns by more than `maxTurn`. A Catmull-Rom curve
 * through the lips' landmarks turns sharply at the end of a narrow opening; this keeps it a curve there.
 */
export function roundCorners(outline: Float64Array, maxTurn: number): Float64Array {
  // corners a twentieth of a pixel apart are one corner: their turn says nothing about the shape
  const kept: number[] = [];
  for (let i = 0; i < outline.length; i += 2) {
    const x = outline[i] as number, y = outline[i + 1] as number;
    const px = kept.length > 0 ? (kept[kept.length - 2] as number) : (outline[outline.length - 2] as number);
    const py = kept.length > 0 ? (kept[kept.length - 1] as number) : (outline[outline.length - 1] as number);
    if (Math.hypot(x - px, y - py) >= 0.05) kept.push(x, y);
  }
  const poly = kept.length >= 6 ? kept : Array.from(outline);
  const n = poly.length / 2;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const a = (i + n - 1) % n, c = (i + 1) % n;
    const bx = poly[2 * i] as number, by = poly[2 * i + 1] as number;
    const ex = bx - (poly[2 * a] as number), ey = by - (poly[2 * a + 1] as number);
    const fx = (poly[2 * c] as number) - bx, fy = (poly[2 * c + 1] as number) - by;
    const le = Math.hypot(ex, ey), lf = Math.hypot(fx, fy);
    const turn = le > 0 && lf > 0 ? Math.abs(Math.atan2(ex * fy - ey * fx, ex * fx + ey * fy)) : 0;
    if (turn <= maxTurn) {
      out.push(bx, by);
      continue;
    }
    const cut = 0.4 * Math.min(le, lf);
    const px = bx - (ex / le) * cut, py = by - (ey / le) * cut;
    const qx = bx + (fx / lf) * cut, qy = by + (fy / lf) * cut;
    // (a quadratic curve turns fastest at its middle, the more so the more its two sides differ in length:
    // more samples than the average turn asks for; at 1.6 times, a slit's tip on a 1346 px photo kept a 31 degree turn)
    const steps = Math.ceil((2.2 * turn) / maxTurn) + 1;
    for (let k = 0; k <= steps; k++) {
      const t = k / steps, s = 1 - t;
      out.push(s * s * px + 2 * s * t * bx + t * t * qx, s * s * py + 2 * s * t * by + t * t * qy);
    }
  }
  return Float64Array.from(out);
}
