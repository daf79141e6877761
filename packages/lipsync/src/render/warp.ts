import type { TriangleMap } from './triangle-map.js';

// The I420 warp; its compiled twin is native/cpp/warp.cc, which must draw the same bytes.

/**
 * Warps the triangle a, b, c (control point indices) from the photo's I420 planes into the frame's:
 * luma at full size, both chroma planes at half (their samples sit at the centre of each 2x2 block).
 */
export function warpTriangleI420(map: TriangleMap, moved: Float64Array, rest: Float64Array, a: number, b: number, c: number, src: Uint8Array, dst: Uint8Array, W: number, H: number): void {
  if (map.set(moved, rest, a, b, c, 1, 0, W, H)) warpPlanes(map, src, dst, 0, -1, W, H);
  if (map.set(moved, rest, a, b, c, 0.5, 0.5, W / 2, H / 2)) warpPlanes(map, src, dst, W * H, (W * H * 5) / 4, W / 2, H / 2);
}

/**
 * Warps one triangle (set up in `map` on this plane's grid) of one plane, or of two planes with the same
 * geometry (U and V), from `src` into `dst`; planes start at offsets o1 and o2 (-1: none) and are W wide.
 */
export function warpPlanes(map: TriangleMap, src: Uint8Array, dst: Uint8Array, o1: number, o2: number, W: number, H: number): void {
  const { xx, xy, x0, yx, yy, y0, inside } = map;
  // Inside the plane, source positions step in 16.16 fixed point and the bilinear blend is separable
  // integer arithmetic with 7-bit weights (1/128 of a pixel): no float-to-int conversion per sample,
  // and every product fits a signed 16-bit lane pair, which the native kernel's SIMD loop relies on. Over
  // a span of a few hundred pixels the stepping drifts by under 1/100 of a pixel.
  const stepX = Math.floor(xx * 65536 + 0.5);
  const stepY = Math.floor(yx * 65536 + 0.5);
  const limitX = (W - 1) * 65536;
  const limitY = (H - 1) * 65536;
  for (let y = map.minY; y <= map.maxY; y++) {
    if (!map.span(y)) continue;
    const lo = map.lo;
    const hi = map.hi;
    const sx = xx * lo + xy * y + x0;
    const sy = yx * lo + yy * y + y0;
    const fx0 = Math.floor(sx * 65536 + 0.5);
    const fy0 = Math.floor(sy * 65536 + 0.5);
    const fx1 = fx0 + (hi - lo) * stepX;
    const fy1 = fy0 + (hi - lo) * stepY;
    // Every read of the fixed-point path must stay inside the plane. The triangle test says so, and the
    // row's two ends (positions move linearly along it) confirm it even for a sliver of a triangle.
    if (inside && fx0 >= 0 && fx1 >= 0 && fx0 < limitX && fx1 < limitX && fy0 >= 0 && fy1 >= 0 && fy0 < limitY && fy1 < limitY) {
      const end = y * W + hi;
      let fxp = fx0;
      let fyp = fy0;
      if (o2 < 0) {
        for (let o = y * W + lo; o <= end; o++, fxp += stepX, fyp += stepY) {
          const fx = (fxp >> 9) & 127;
          const fy = (fyp >> 9) & 127;
          const k = o1 + (fyp >> 16) * W + (fxp >> 16);
          const top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          const bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o1 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
        }
      } else {
        for (let o = y * W + lo; o <= end; o++, fxp += stepX, fyp += stepY) {
          const fx = (fxp >> 9) & 127;
          const fy = (fyp >> 9) & 127;
          const i = (fyp >> 16) * W + (fxp >> 16);
          let k = o1 + i;
          let top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          let bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o1 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
          k = o2 + i;
          top = (src[k] as number) * (128 - fx) + (src[k + 1] as number) * fx;
          bottom = (src[k + W] as number) * (128 - fx) + (src[k + W + 1] as number) * fx;
          dst[o2 + o] = (top * (128 - fy) + bottom * fy + 8192) >> 14;
        }
      }
      continue;
    }
    warpRowClamped(src, dst, o1, o2, W, H, y * W + lo, hi - lo + 1, sx, sy, xx, yx);
  }
}

/** One row of a triangle whose source reaches the plane's edge: floating point, clamped to the plane. */
function warpRowClamped(src: Uint8Array, dst: Uint8Array, o1: number, o2: number, W: number, H: number, start: number, count: number, sx0: number, sy0: number, xx: number, yx: number): void {
  let sx = sx0;
  let sy = sy0;
  for (let o = start; o < start + count; o++, sx += xx, sy += yx) {
    const fx = sx < 0 ? 0 : sx > W - 1.001 ? W - 1.001 : sx;
    const fy = sy < 0 ? 0 : sy > H - 1.001 ? H - 1.001 : sy;
    const ix = fx | 0;
    const iy = fy | 0;
    const tx = fx - ix;
    const ty = fy - iy;
    const i = iy * W + ix;
    const w11 = tx * ty;
    const w10 = tx - w11;
    const w01 = ty - w11;
    const w00 = 1 - tx - w01;
    let k = o1 + i;
    dst[o1 + o] = (src[k] as number) * w00 + (src[k + 1] as number) * w10 + (src[k + W] as number) * w01 + (src[k + W + 1] as number) * w11 + 0.5;
    if (o2 >= 0) {
      k = o2 + i;
      dst[o2 + o] = (src[k] as number) * w00 + (src[k + 1] as number) * w10 + (src[k + W] as number) * w01 + (src[k + W + 1] as number) * w11 + 0.5;
    }
  }
}
