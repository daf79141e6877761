import type { TriangleMap } from './triangle-map.js';

/** Fills one triangle (set up in `map` on the image's grid) of an RGBA frame from the photo (bilinear). */
export function warpTriangleRgba(map: TriangleMap, base: Uint8Array, out: Uint8Array, W: number, H: number): void {
  const { xx, xy, x0, yx, yy, y0, inside } = map;
  const row = W * 4;
  for (let y = map.minY; y <= map.maxY; y++) {
    if (!map.span(y)) continue;
    const lo = map.lo;
    const hi = map.hi;
    let sx = xx * lo + xy * y + x0;
    let sy = yx * lo + yy * y + y0;
    let o = (y * W + lo) * 4;
    if (inside) {
      // the source triangle lies inside the image: no clamping needed
      // 8-bit fixed-point weights: integer arithmetic, about twice as fast as floating point here
      for (let x = lo; x <= hi; x++, sx += xx, sy += yx, o += 4) {
        const ix = sx | 0;
        const iy = sy | 0;
        const fx = ((sx - ix) * 256) | 0;
        const fy = ((sy - iy) * 256) | 0;
        const i00 = iy * row + ix * 4;
        const i01 = i00 + row;
        const w11 = fx * fy;
        const w10 = (fx << 8) - w11;
        const w01 = (fy << 8) - w11;
        const w00 = 65536 - (fx << 8) - (fy << 8) + w11;
        out[o] = ((base[i00] as number) * w00 + (base[i00 + 4] as number) * w10 + (base[i01] as number) * w01 + (base[i01 + 4] as number) * w11 + 32768) >>> 16;
        out[o + 1] = ((base[i00 + 1] as number) * w00 + (base[i00 + 5] as number) * w10 + (base[i01 + 1] as number) * w01 + (base[i01 + 5] as number) * w11 + 32768) >>> 16;
        out[o + 2] = ((base[i00 + 2] as number) * w00 + (base[i00 + 6] as number) * w10 + (base[i01 + 2] as number) * w01 + (base[i01 + 6] as number) * w11 + 32768) >>> 16;
        out[o + 3] = 255;
      }
      continue;
    }
    for (let x = lo; x <= hi; x++, sx += xx, sy += yx, o += 4) {
      // bilinear sample, clamped to the image
      const fx = sx < 0 ? 0 : sx > W - 1.001 ? W - 1.001 : sx;
      const fy = sy < 0 ? 0 : sy > H - 1.001 ? H - 1.001 : sy;
      const ix = fx | 0;
      const iy = fy | 0;
      const tx = fx - ix;
      const ty = fy - iy;
      const i00 = iy * row + ix * 4;
      const i01 = i00 + row;
      const w11 = tx * ty;
      const w10 = tx - w11;
      const w01 = ty - w11;
      const w00 = 1 - tx - w01;
      out[o] = (base[i00] as number) * w00 + (base[i00 + 4] as number) * w10 + (base[i01] as number) * w01 + (base[i01 + 4] as number) * w11 + 0.5;
      out[o + 1] = (base[i00 + 1] as number) * w00 + (base[i00 + 5] as number) * w10 + (base[i01 + 1] as number) * w01 + (base[i01 + 5] as number) * w11 + 0.5;
      out[o + 2] = (base[i00 + 2] as number) * w00 + (base[i00 + 6] as number) * w10 + (base[i01 + 2] as number) * w01 + (base[i01 + 6] as number) * w11 + 0.5;
      out[o + 3] = 255;
    }
  }
}
