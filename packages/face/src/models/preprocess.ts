import { inputSize, type InputSpec } from './descriptor.js';
import type { Box, RgbImage } from './types.js';

/** Where the network input sits in the image: image x = originX + u * spanX for u in 0..1 of the input. */
export interface InputFrame {
  originX: number;
  originY: number;
  spanX: number;
  spanY: number;
}

export interface PreparedInput {
  data: Float32Array;
  dims: number[];
  frame: InputFrame;
}

/** Integer crop rectangle inside the image. */
export interface Crop {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Clips a box to the image and floors it: the crop face-api takes for the landmark nets
 * (`clipAtImageBorders`). Returns undefined when nothing is left.
 */
export function clipBox(box: Box, width: number, height: number): Crop | undefined {
  const x = Math.max(box.x, 0);
  const y = Math.max(box.y, 0);
  const w = Math.min(box.x + box.width - x, width - x);
  const h = Math.min(box.y + box.height - y, height - y);
  const crop = { x: Math.floor(x), y: Math.floor(y), width: Math.floor(w), height: Math.floor(h) };
  return crop.width > 0 && crop.height > 0 ? crop : undefined;
}

/**
 * Fits `crop` of `image` to the network input (pad or stretch, then bilinear resize) and normalises it,
 * in one pass over typed arrays. The resize follows TensorFlow's resizeBilinear without corner
 * alignment (source = destination * in/out), which the converted models were trained with.
 */
export function prepareInput(image: RgbImage, crop: Crop, spec: InputSpec): PreparedInput {
  const { width: outW, height: outH } = inputSize(spec);
  const { width: w, height: h } = crop;

  // the padded (virtual) canvas the crop sits in, and where the crop sits on it
  let padW = w;
  let padH = h;
  let offX = 0;
  let offY = 0;
  if (spec.fit !== 'stretch') {
    const aspect = outW / outH;
    if (w / h > aspect) padH = Math.round(w / aspect);
    else padW = Math.round(h * aspect);
    if (spec.fit === 'pad-center') {
      // face-api appends round(diff / 2) and prepends the rest
      offX = padW - w - Math.round((padW - w) / 2);
      offY = padH - h - Math.round((padH - h) / 2);
    }
  }

  const padValue = spec.padValue ?? 0;
  const order = spec.channels === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  const mean = spec.mean;
  const std = spec.std;

  // per output column: byte offsets (within a row) of the two source pixels, -1 for padding,
  // and the blend weight; per row the same with row offsets. Keeps the inner loop branch-light.
  const src = image.data;
  const stride = image.width * 3;
  const colOffset = (px: number): number => {
    const ix = px - offX;
    return ix < 0 || ix >= w ? -1 : (crop.x + ix) * 3;
  };
  const rowOffset = (py: number): number => {
    const iy = py - offY;
    return iy < 0 || iy >= h ? -1 : (crop.y + iy) * stride;
  };
  const colA = new Int32Array(outW);
  const colB = new Int32Array(outW);
  const colF = new Float64Array(outW);
  const rx = padW / outW;
  for (let x = 0; x < outW; x += 1) {
    const sx = x * rx;
    const a = Math.floor(sx);
    colA[x] = colOffset(a);
    colB[x] = colOffset(Math.min(Math.ceil(sx), padW - 1));
    colF[x] = sx - a;
  }
  const ry = padH / outH;

  const data = new Float32Array(3 * outW * outH);
  const plane = outW * outH;
  const nchw = spec.layout === 'NCHW';
  const [c0, c1, c2] = order as [number, number, number];
  const [m0, m1, m2] = mean;
  // multiply by 1/std: within a float ulp of dividing, and faster
  const [s0, s1, s2] = [1 / std[0], 1 / std[1], 1 / std[2]];
  const px = (row: number, col: number, c: number): number => (row < 0 || col < 0 ? padValue : src[row + col + c]!);

  for (let y = 0; y < outH; y += 1) {
    const sy = y * ry;
    const y0 = Math.floor(sy);
    const r0 = rowOffset(y0);
    const r1 = rowOffset(Math.min(Math.ceil(sy), padH - 1));
    const fy = sy - y0;
    const rowValid = r0 >= 0 && r1 >= 0;
    for (let x = 0; x < outW; x += 1) {
      const a = colA[x]!;
      const b = colB[x]!;
      const fx = colF[x]!;
      const base = nchw ? y * outW + x : (y * outW + x) * 3;
      const step = nchw ? plane : 1;
      if (rowValid && a >= 0 && b >= 0) {
        // fast path: all four source pixels inside the crop
        const i00 = r0 + a;
        const i01 = r0 + b;
        const i10 = r1 + a;
        const i11 = r1 + b;
        let tl = src[i00 + c0]!;
        let top = tl + (src[i01 + c0]! - tl) * fx;
        let bl = src[i10 + c0]!;
        data[base] = (top + (bl + (src[i11 + c0]! - bl) * fx - top) * fy - m0) * s0;
        tl = src[i00 + c1]!;
        top = tl + (src[i01 + c1]! - tl) * fx;
        bl = src[i10 + c1]!;
        data[base + step] = (top + (bl + (src[i11 + c1]! - bl) * fx - top) * fy - m1) * s1;
        tl = src[i00 + c2]!;
        top = tl + (src[i01 + c2]! - tl) * fx;
        bl = src[i10 + c2]!;
        data[base + 2 * step] = (top + (bl + (src[i11 + c2]! - bl) * fx - top) * fy - m2) * s2;
        continue;
      }
      for (let k = 0; k < 3; k += 1) {
        const c = k === 0 ? c0 : k === 1 ? c1 : c2;
        const tl = px(r0, a, c);
        const tr = px(r0, b, c);
        const bl = px(r1, a, c);
        const br = px(r1, b, c);
        const top = tl + (tr - tl) * fx;
        const bottom = bl + (br - bl) * fx;
        data[base + k * step] = (top + (bottom - top) * fy - mean[k]!) / std[k]!;
      }
    }
  }

  return {
    data,
    dims: nchw ? [1, 3, outH, outW] : [1, outH, outW, 3],
    frame: { originX: crop.x - offX, originY: crop.y - offY, spanX: padW, spanY: padH },
  };
}
