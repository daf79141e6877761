import type { SsdDecode, TinyYoloDecode } from './descriptor.js';
import type { InputFrame } from './preprocess.js';
import type { Box, DetectedFace, Point } from './types.js';

/** A tensor as it comes out of the runtime: flat float data and its dimensions. */
export interface OutputTensor {
  data: Float32Array;
  dims: readonly number[];
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

export function iou(a: Box, b: Box): number {
  const ix = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
  const inter = ix * iy;
  const union = a.width * a.height + b.width * b.height - inter;
  return union > 0 ? inter / union : 0;
}

/** Greedy non-maximum suppression: best score first, drop boxes overlapping a kept one by more than `iouThreshold`. */
export function nms(faces: DetectedFace[], iouThreshold: number, maxFaces = Infinity): DetectedFace[] {
  const sorted = [...faces].sort((a, b) => b.score - a.score);
  const kept: DetectedFace[] = [];
  for (const f of sorted) {
    if (kept.length >= maxFaces) break;
    if (kept.every((k) => iou(k.box, f.box) <= iouThreshold)) kept.push(f);
  }
  return kept;
}

/** Tiny YOLO v2 grid -> candidate faces in image pixels (before NMS). */
export function decodeTinyYolo(out: OutputTensor, dec: TinyYoloDecode, frame: InputFrame, minScore: number): DetectedFace[] {
  const nhwc = dec.layout === 'NHWC';
  const [, d1, d2, d3] = out.dims;
  const gh = (nhwc ? d1 : d2) ?? 0;
  const gw = (nhwc ? d2 : d3) ?? 0;
  const channels = (nhwc ? d3 : d1) ?? 0;
  const anchors = dec.anchors.length;
  const per = channels / anchors;
  if (!Number.isInteger(per) || per < 5) throw new Error(`tiny-yolo-v2 output has ${channels} channels for ${anchors} anchors`);
  const at = (row: number, col: number, ch: number): number =>
    out.data[nhwc ? (row * gw + col) * channels + ch : (ch * gh + row) * gw + col]!;
  const faces: DetectedFace[] = [];
  for (let row = 0; row < gh; row += 1) {
    for (let col = 0; col < gw; col += 1) {
      for (let a = 0; a < anchors; a += 1) {
        const base = a * per;
        const score = sigmoid(at(row, col, base + 4));
        if (score <= minScore) continue;
        const [aw, ah] = dec.anchors[a]!;
        const cx = (col + sigmoid(at(row, col, base))) / gw;
        const cy = (row + sigmoid(at(row, col, base + 1))) / gh;
        const bw = (Math.exp(at(row, col, base + 2)) * aw) / gw;
        const bh = (Math.exp(at(row, col, base + 3)) * ah) / gh;
        faces.push({ box: toImage(cx - bw / 2, cy - bh / 2, bw, bh, frame), score });
      }
    }
  }
  return faces;
}

/** SSD boxes + scores -> candidate faces in image pixels (before NMS). */
export function decodeSsd(
  boxes: OutputTensor,
  scores: OutputTensor,
  dec: SsdDecode,
  frame: InputFrame,
  input: { width: number; height: number },
  minScore: number,
): DetectedFace[] {
  const n = boxes.dims[1] ?? 0;
  const classes = scores.dims.length >= 3 ? (scores.dims[2] ?? 1) : 1;
  const scoreIndex = dec.scoreIndex ?? (classes > 1 ? 1 : 0);
  const sx = dec.normalized === false ? 1 / input.width : 1;
  const sy = dec.normalized === false ? 1 / input.height : 1;
  const clip = (v: number): number => (dec.clip ? Math.min(1, Math.max(0, v)) : v);
  const faces: DetectedFace[] = [];
  for (let i = 0; i < n; i += 1) {
    const score = scores.data[i * classes + scoreIndex]!;
    if (!(score > minScore)) continue;
    const b = boxes.data.subarray(i * 4, i * 4 + 4);
    const [x0, y0, x1, y1] = dec.boxFormat === 'yxyx' ? [b[1]!, b[0]!, b[3]!, b[2]!] : [b[0]!, b[1]!, b[2]!, b[3]!];
    const left = clip(Math.min(x0, x1) * sx);
    const top = clip(Math.min(y0, y1) * sy);
    const right = clip(Math.max(x0, x1) * sx);
    const bottom = clip(Math.max(y0, y1) * sy);
    faces.push({ box: toImage(left, top, right - left, bottom - top, frame), score });
  }
  return faces;
}

/** 136 values in 0..1 of the fitted input -> 68 points in image pixels. */
export function decodeLandmarks68(out: OutputTensor, frame: InputFrame): Point[] {
  if (out.data.length < 136) throw new Error(`landmark output has ${out.data.length} values, 136 expected`);
  const points: Point[] = [];
  for (let i = 0; i < 68; i += 1) {
    points.push({ x: frame.originX + out.data[2 * i]! * frame.spanX, y: frame.originY + out.data[2 * i + 1]! * frame.spanY });
  }
  return points;
}

function toImage(u: number, v: number, du: number, dv: number, frame: InputFrame): Box {
  return { x: frame.originX + u * frame.spanX, y: frame.originY + v * frame.spanY, width: du * frame.spanX, height: dv * frame.spanY };
}
