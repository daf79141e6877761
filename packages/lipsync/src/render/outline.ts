/** Distances beyond this are reported as this: the mouth's shading is the same from there on. */
export const OUTLINE_REACH = 3;

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
