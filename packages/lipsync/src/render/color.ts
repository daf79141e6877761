/**
 * Converts a rectangle (inclusive corners, widened to even coordinates) of an RGBA image into planar
 * I420 with the BT.709 matrix in limited range, the encoder's own choice, in 8.8 fixed point.
 * Chroma is the 2x2 average of the pixels it covers.
 */
export function rgbaToI420(rgba: Uint8Array, width: number, height: number, yuv: Uint8Array, x0: number, y0: number, x1: number, y1: number): void {
  const ax = x0 & ~1;
  const ay = y0 & ~1;
  const bx = Math.min(width - 1, x1 | 1);
  const by = Math.min(height - 1, y1 | 1);
  const uOffset = width * height;
  const vOffset = uOffset + (width * height) / 4;
  const half = width / 2;
  for (let y = ay; y <= by; y += 2) {
    for (let x = ax; x <= bx; x += 2) {
      let rs = 0, gs = 0, bs = 0;
      for (let dy = 0; dy < 2; dy++) {
        const row = (y + dy) * width;
        for (let dx = 0; dx < 2; dx++) {
          const i = (row + x + dx) * 4;
          const r = rgba[i] as number, g = rgba[i + 1] as number, b = rgba[i + 2] as number;
          yuv[row + x + dx] = 16 + ((47 * r + 157 * g + 16 * b + 128) >> 8);
          rs += r;
          gs += g;
          bs += b;
        }
      }
      const c = (y >> 1) * half + (x >> 1);
      // sums of four: divide by 4 inside the shift
      yuv[uOffset + c] = 128 + ((-26 * rs - 86 * gs + 112 * bs + 512) >> 10);
      yuv[vOffset + c] = 128 + ((112 * rs - 102 * gs - 10 * bs + 512) >> 10);
    }
  }
}
