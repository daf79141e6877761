import type { FaceQuality } from '@avatar/core';
import type { Box, Point, RgbImage } from './models/types.js';

/** Luminance (Rec. 601) of the pixels in `box`, averaged over `step` x `step` cells. */
function lumaGrid(image: RgbImage, box: Box, step: number): { w: number; h: number; values: Float32Array } {
  const x0 = Math.max(0, Math.floor(box.x));
  const y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(image.width, Math.ceil(box.x + box.width));
  const y1 = Math.min(image.height, Math.ceil(box.y + box.height));
  const w = Math.max(0, Math.floor((x1 - x0) / step));
  const h = Math.max(0, Math.floor((y1 - y0) / step));
  const values = new Float32Array(w * h);
  const d = image.data;
  const area = step * step;
  for (let gy = 0; gy < h; gy++) {
    for (let gx = 0; gx < w; gx++) {
      let sum = 0;
      for (let dy = 0; dy < step; dy++) {
        let o = ((y0 + gy * step + dy) * image.width + x0 + gx * step) * 3;
        for (let dx = 0; dx < step; dx++, o += 3) sum += 0.299 * d[o]! + 0.587 * d[o + 1]! + 0.114 * d[o + 2]!;
      }
      values[gy * w + gx] = sum / area;
    }
  }
  return { w, h, values };
}

/** Variance of the 4-neighbour Laplacian: high for crisp edges, low for blur. */
function laplacianVariance(grid: { w: number; h: number; values: Float32Array }): number {
  const { w, h, values: v } = grid;
  if (w < 3 || h < 3) return 0;
  let sum = 0;
  let sq = 0;
  let n = 0;
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      const i = y * w + x;
      const lap = 4 * v[i]! - v[i - 1]! - v[i + 1]! - v[i - w]! - v[i + w]!;
      sum += lap;
      sq += lap * lap;
      n++;
    }
  }
  const mean = sum / n;
  return sq / n - mean * mean;
}

/**
 * The Laplacian variance of the whole image at the same scale as the face, estimated from about 64
 * evenly spaced rows (three grid rows each): the same statistic at a fraction of the cost on big photos.
 */
function wholeImageSharpness(image: RgbImage, step: number): number {
  const gridH = Math.floor(image.height / step);
  const gridW = Math.floor(image.width / step);
  if (gridH < 3 || gridW < 3) return 0;
  const stride = Math.max(1, Math.floor((gridH - 2) / 64));
  let sum = 0;
  let sq = 0;
  let n = 0;
  for (let gy = 1; gy < gridH - 1; gy += stride) {
    const band = lumaGrid(image, { x: 0, y: (gy - 1) * step, width: gridW * step, height: 3 * step }, step);
    const { w, values: v } = band;
    for (let x = 1; x < w - 1; x++) {
      const i = w + x;
      const lap = 4 * v[i]! - v[i - 1]! - v[i + 1]! - v[i - w]! - v[i + w]!;
      sum += lap;
      sq += lap * lap;
      n++;
    }
  }
  if (n === 0) return 0;
  const mean = sum / n;
  return sq / n - mean * mean;
}

/** Sharpness is measured on the face scaled to about this width, so big and small faces compare. */
const SHARPNESS_WIDTH = 128;

const MOUTH = Array.from({ length: 20 }, (_, i) => 48 + i);
const CHIN = [6, 7, 8, 9, 10];

/** True when every listed landmark lies inside the image, `margin` px away from the border. */
export function pointsInside(image: { width: number; height: number }, landmarks: readonly Point[], indices: readonly number[], margin = 0): boolean {
  return indices.every((i) => {
    const p = landmarks[i];
    return !!p && p.x >= margin && p.y >= margin && p.x <= image.width - 1 - margin && p.y <= image.height - 1 - margin;
  });
}

/**
 * Face size, sharpness, exposure and whether mouth and chin are inside the image.
 * Sharpness is the variance of the Laplacian of the luminance over the face box, measured after
 * averaging the face down to about 128 px across (so it does not depend on the photo's resolution);
 * `sharpnessRatio` compares it with the same measure over the whole image.
 */
export function measureQuality(image: RgbImage, box: Box, landmarks: readonly Point[]): FaceQuality {
  const step = Math.max(1, Math.floor(box.width / SHARPNESS_WIDTH));
  const face = lumaGrid(image, box, step);
  const sharpness = laplacianVariance(face);
  const whole = wholeImageSharpness(image, step);
  let sum = 0;
  let dark = 0;
  let bright = 0;
  for (const v of face.values) {
    sum += v;
    if (v <= 8) dark++;
    if (v >= 247) bright++;
  }
  const count = Math.max(1, face.values.length);
  const margin = Math.max(1, box.width * 0.01);
  return {
    widthPx: Math.round(box.width),
    heightPx: Math.round(box.height),
    sharpness: Math.round(sharpness * 10) / 10,
    sharpnessRatio: whole > 0 ? Math.round((sharpness / whole) * 100) / 100 : 0,
    meanLuma: Math.round((sum / count) * 10) / 10,
    darkFraction: Math.round((dark / count) * 1000) / 1000,
    brightFraction: Math.round((bright / count) * 1000) / 1000,
    // The landmark net sees only the visible part of a face whose box the border clips, and squeezes
    // the face into it; so a box that reaches a side or the bottom border counts as cut off too.
    mouthInside: pointsInside(image, landmarks, MOUTH, margin) && box.x > 1 && box.x + box.width < image.width - 1,
    chinInside: pointsInside(image, landmarks, CHIN, margin) && box.y + box.height < image.height - 1,
  };
}
