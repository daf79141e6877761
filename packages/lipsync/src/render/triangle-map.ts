/**
 * The affine map of one triangle from destination pixels to source pixels (both given as control point
 * indices into the moved and rest point arrays), and the span of pixels each row has inside it. Points
 * are taken to a plane's own grid as (p - shift) * scale: chroma samples of I420 sit at the centre of
 * each 2x2 block, so a chroma plane uses scale 1/2 and shift 1/2.
 */
export class TriangleMap {
  // destination (x, y) -> source (xx * x + xy * y + x0, yx * x + yy * y + y0)
  xx = 0; xy = 0; x0 = 0; yx = 0; yy = 0; y0 = 0;
  // barycentric weights of the second and third corner as linear functions of (x, y)
  private ux = 0; private uy = 0; private u0 = 0; private vx = 0; private vy = 0; private v0 = 0;
  minX = 0; maxX = 0; minY = 0; maxY = 0;
  /** the source triangle lies at least a pixel inside the plane: samples need no clamping */
  inside = false;
  /** the row's span after span() */
  lo = 0; hi = 0;

  /** false when the triangle is degenerate (nothing to draw) */
  set(moved: Float64Array, rest: Float64Array, a: number, b: number, c: number, scale: number, shift: number, W: number, H: number): boolean {
    const ax = ((moved[2 * a] as number) - shift) * scale, ay = ((moved[2 * a + 1] as number) - shift) * scale;
    const bx = ((moved[2 * b] as number) - shift) * scale, by = ((moved[2 * b + 1] as number) - shift) * scale;
    const cx = ((moved[2 * c] as number) - shift) * scale, cy = ((moved[2 * c + 1] as number) - shift) * scale;
    const det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay);
    if (Math.abs(det) < 1e-9) return false;
    const sax = ((rest[2 * a] as number) - shift) * scale, say = ((rest[2 * a + 1] as number) - shift) * scale;
    const sbx = ((rest[2 * b] as number) - shift) * scale, sby = ((rest[2 * b + 1] as number) - shift) * scale;
    const scx = ((rest[2 * c] as number) - shift) * scale, scy = ((rest[2 * c + 1] as number) - shift) * scale;
    const inv = 1 / det;
    const ux = (cy - ay) * inv, uy = -(cx - ax) * inv, u0 = -(ux * ax + uy * ay);
    const vx = -(by - ay) * inv, vy = (bx - ax) * inv, v0 = -(vx * ax + vy * ay);
    this.ux = ux; this.uy = uy; this.u0 = u0; this.vx = vx; this.vy = vy; this.v0 = v0;
    this.xx = (sbx - sax) * ux + (scx - sax) * vx;
    this.xy = (sbx - sax) * uy + (scx - sax) * vy;
    this.x0 = sax + (sbx - sax) * u0 + (scx - sax) * v0;
    this.yx = (sby - say) * ux + (scy - say) * vx;
    this.yy = (sby - say) * uy + (scy - say) * vy;
    this.y0 = say + (sby - say) * u0 + (scy - say) * v0;
    this.minX = Math.max(0, Math.floor(Math.min(ax, bx, cx)));
    this.maxX = Math.min(W - 1, Math.ceil(Math.max(ax, bx, cx)));
    this.minY = Math.max(0, Math.floor(Math.min(ay, by, cy)));
    this.maxY = Math.min(H - 1, Math.ceil(Math.max(ay, by, cy)));
    // affine maps keep a point inside its triangle, so a source triangle with a one-pixel margin inside
    // the plane never samples outside it (the span test allows a hair past the edges: hence the margin)
    this.inside = Math.min(sax, sbx, scx) >= 1 && Math.min(say, sby, scy) >= 1 && Math.max(sax, sbx, scx) <= W - 3 && Math.max(say, sby, scy) <= H - 3;
    this.setUpSpans();
    return true;
  }

  /**
   * The span of x on row y where u >= 0, v >= 0 and u + v <= 1; false when empty. On a row each of the
   * three holds on one side of an x that moves linearly with y, so the bounds are set up once per
   * triangle (setUpSpans) and a row costs three multiply-adds. The native kernel does the same sums.
   */
  span(y: number): boolean {
    let lo = this.minX;
    let hi = this.maxX;
    const b = this.bounds;
    for (let k = 0; k < 9; k += 3) {
      const kind = b[k] as number;
      // clamped near the triangle's box: the same span, and the native kernel rounds it through int64
      const x = Math.min(this.maxX + 1, Math.max(this.minX - 1, (b[k + 1] as number) * y + (b[k + 2] as number)));
      if (kind > 0) lo = Math.max(lo, Math.ceil(x));
      else if (kind < 0) hi = Math.min(hi, Math.floor(x));
      else if (x < -1e-7) return false;
    }
    this.lo = lo;
    this.hi = hi;
    return lo <= hi;
  }

  /** per bound (u, v, 1 - u - v): kind (+1 lower bound on x, -1 upper, 0 none: all in or all out), slope, intercept */
  private readonly bounds = new Float64Array(9);

  private setUpSpans(): void {
    const { ux, uy, u0, vx, vy, v0 } = this;
    setBound(this.bounds, 0, ux, uy, u0);
    setBound(this.bounds, 3, vx, vy, v0);
    setBound(this.bounds, 6, -(ux + vx), -(uy + vy), 1 - (u0 + v0));
  }
}

/** k(x, y) = kx * x + ky * y + k0 >= 0 (a hair below, so shared edges belong to both triangles) as a bound on x. */
function setBound(out: Float64Array, at: number, kx: number, ky: number, k0: number): void {
  if (kx > 1e-12 || kx < -1e-12) {
    out[at] = kx > 0 ? 1 : -1;
    out[at + 1] = -ky / kx;
    out[at + 2] = -(k0 + 1e-7) / kx;
  } else {
    out[at] = 0;
    out[at + 1] = ky;
    out[at + 2] = k0;
  }
}
