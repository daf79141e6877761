import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { measureTexture, pixelsInside, strongest } from './appearance.js';
import type { RgbaImage } from './types.js';

const FIXTURES = new URL('../../../../tests/fixtures/', import.meta.url).pathname;

/**
 * measureTexture as plainly written: every luma and smoothing worked out where it is read, the edges
 * sorted whole (a stable sort). The measurement used before each run must give the same numbers to the
 * last bit, or frames would change with an optimisation of it.
 */
function directTexture(image: RgbaImage, pixels: readonly number[]): { grain: number; grainScale: number; softness: number } {
  const { width: W, height: H, data } = image;
  const Y = (i: number): number => 0.2126 * data[4 * i]! + 0.7152 * data[4 * i + 1]! + 0.0722 * data[4 * i + 2]!;
  const B = [1, 4, 6, 4, 1];
  const smooth = (i: number): number => {
    let s = 0;
    for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) s += Y(i + dy * W + dx) * B[dx + 2]! * B[dy + 2]!;
    return s / 256;
  };
  const edges: { sharp: number; blurred: number }[] = [];
  for (let k = 0; k < pixels.length; k += 2) {
    const i = pixels[k]!;
    const x = i % W, y = (i - x) / W;
    if (x < 3 || y < 3 || x >= W - 4 || y >= H - 4) continue;
    const gx = (Y(i + 1) - Y(i - 1)) / 2, gy = (Y(i + W) - Y(i - W)) / 2;
    const bx = (smooth(i + 1) - smooth(i - 1)) / 2, by = (smooth(i + W) - smooth(i - W)) / 2;
    edges.push({ sharp: gx * gx + gy * gy, blurred: bx * bx + by * by });
  }
  edges.sort((a, b) => b.blurred - a.blurred);
  let energy = 0, blurredEnergy = 0;
  for (const e of edges.slice(0, Math.max(1, Math.floor(edges.length / 10)))) {
    energy += e.sharp;
    blurredEnergy += e.blurred;
  }
  const ratio = energy > 0 ? Math.min(0.95, blurredEnergy / energy) : 0.5;
  const softness = Math.max(0.5, Math.min(3, (1.4 * ratio) / Math.sqrt(1 - ratio * ratio)));
  const spread = (s: number): number => {
    const residuals: number[] = [];
    for (let k = 0; k < pixels.length; k += 2) {
      const i = pixels[k]!;
      const x = i % W, y = (i - x) / W;
      if (x < 3 * s || y < 3 * s || x >= W - 3 * s - 1 || y >= H - 3 * s - 1) continue;
      let m = 0;
      for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) m += Y(i + dy * s * W + dx * s);
      residuals.push(Math.abs(Y(i) - m / 9));
    }
    residuals.sort((a, b) => a - b);
    return residuals[Math.floor(residuals.length / 2)] ?? 0;
  };
  const fine = spread(1), coarse = spread(2);
  const grainScale = fine > 0 && coarse > 2.3 * fine ? 2 : 1;
  return { grain: Math.min(8, 1.25 * (grainScale === 2 ? coarse : fine)), grainScale, softness };
}

async function photo(path: string, size: number): Promise<RgbaImage> {
  const { data, info } = await sharp(path).resize(size, size, { fit: 'cover' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

describe('measureTexture', () => {
  it('gives the numbers of the direct computation exactly, on photos, flat steps (equal edges) and the image border', async () => {
    const cases: { name: string; image: RgbaImage; pixels: number[] }[] = [];
    for (const [name, size] of [['grace_hopper.jpg', 512], ['faces/barkla.jpg', 1024], ['faces/lamport_beard.jpg', 300]] as const) {
      const image = await photo(`${FIXTURES}${name}`, size);
      // a jaw-like region, and one running off the image's corner (pixels near the border are skipped)
      cases.push({ name, image, pixels: pixelsInside([{ x: 0.3 * size, y: 0.55 * size }, { x: 0.7 * size, y: 0.55 * size }, { x: 0.62 * size, y: 0.9 * size }, { x: 0.38 * size, y: 0.9 * size }], size, size) });
      cases.push({ name: `${name} corner`, image, pixels: pixelsInside([{ x: -5, y: -5 }, { x: 40, y: -5 }, { x: -5, y: 40 }], size, size) });
    }
    // vertical steps of equal height: many edges of exactly the same strength, so ties decide the order
    const W = 96, H = 64;
    const steps = new Uint8Array(W * H * 4);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) steps.fill(x % 16 < 8 ? 60 : 180, 4 * (y * W + x), 4 * (y * W + x) + 3);
    const ramp = new Uint8Array(W * H * 4).map((_, k) => (k % 4 === 3 ? 255 : ((k >> 2) * 37) % 251));
    for (const [name, data] of [['steps', steps], ['noise', ramp]] as const) {
      const all = Array.from({ length: W * H }, (_, i) => i);
      cases.push({ name, image: { width: W, height: H, data }, pixels: all });
    }
    // a patch inside the noise: its window's edges are read by the gradients and the smoothing
    const patch: number[] = [];
    for (let y = 9; y < 41; y++) for (let x = 11; x < 53; x++) patch.push(y * W + x);
    cases.push({ name: 'noise patch', image: { width: W, height: H, data: ramp }, pixels: patch });
    cases.push({ name: 'no pixels', image: { width: W, height: H, data: steps }, pixels: [] });
    for (const { name, image, pixels } of cases) {
      expect(measureTexture(image, pixels), name).toEqual(directTexture(image, pixels));
    }
  });

  it('picks the strongest edges first, equal ones in the order met, as a stable sort of them all would', () => {
    expect(strongest([3, 1, 3, 2, 3], 2)).toEqual([0, 2]);
    expect(strongest([1, 5, 2, 5], 3)).toEqual([1, 3, 2]);
    expect(strongest([], 1)).toEqual([]);
    let seed = 7;
    const next = (): number => (seed = (seed * 48271) % 2147483647);
    for (let round = 0; round < 50; round++) {
      const values = Array.from({ length: 1 + (next() % 300) }, () => next() % 9);
      const count = 1 + (next() % values.length);
      const stable = values.map((v, k) => ({ v, k })).sort((a, b) => b.v - a.v).slice(0, count).map(({ k }) => k);
      expect(strongest(values, count)).toEqual(stable);
    }
  });
});
