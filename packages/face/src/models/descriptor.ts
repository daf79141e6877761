import { AvatarError } from '@avatar/core';

/**
 * How an image becomes the model's input tensor. Pixel values are normalised per channel as
 * `(value - mean) / std`, with values 0..255 in the order given by `channels`.
 */
export interface InputSpec {
  /** input tensor name; default: the model's first input */
  name?: string;
  /** network input size in pixels: a square side, or width and height */
  size: number | { width: number; height: number };
  layout: 'NCHW' | 'NHWC';
  /** channel order the model expects; default RGB */
  channels?: 'RGB' | 'BGR';
  /**
   * How the image (or face crop) is fitted to the input: padded to a square on the right and bottom,
   * padded to a square on both sides (centred), or stretched; then resized bilinearly.
   */
  fit: 'pad-bottom-right' | 'pad-center' | 'stretch';
  /** raw pixel value (0..255) of the padding, before normalisation; default 0 */
  padValue?: number;
  mean: [number, number, number];
  std: [number, number, number];
}

/** Tiny YOLO v2 grid: per cell and anchor (tx, ty, tw, th, objectness), anchors in grid cells. */
export interface TinyYoloDecode {
  kind: 'tiny-yolo-v2';
  /** output tensor name; default: the model's first output */
  output?: string;
  /** output layout: [1, A*5, H, W] (NCHW, default) or [1, H, W, A*5] (NHWC) */
  layout?: 'NCHW' | 'NHWC';
  anchors: Array<[number, number]>;
  iouThreshold?: number;
  minScore?: number;
}

/** SSD-style outputs with anchors already applied: boxes [1, N, 4] and scores [1, N] or [1, N, C]. */
export interface SsdDecode {
  kind: 'ssd';
  boxes: string;
  scores: string;
  /** corner order of each box */
  boxFormat: 'yxyx' | 'xyxy';
  /** boxes in 0..1 of the network input (default true); false: in input pixels */
  normalized?: boolean;
  /** which class column holds the face score when scores is [1, N, C]; default 1 when C > 1 */
  scoreIndex?: number;
  /** clip boxes to the network input before mapping back (default false) */
  clip?: boolean;
  iouThreshold?: number;
  minScore?: number;
}

export type DetectorDecode = TinyYoloDecode | SsdDecode;

/** Landmarks as (x0, y0, x1, y1, ...) for 68 points, in 0..1 of the (fitted) face crop. */
export interface Landmarks68Decode {
  kind: 'landmarks-68-normalized';
  output?: string;
}

interface DescriptorBase {
  name: string;
  /** the .onnx file: absolute, or relative to the models folder */
  path: string;
  /** when given, the file must have this sha256 (hex) */
  sha256?: string;
  input: InputSpec;
}

export interface DetectorDescriptor extends DescriptorBase {
  type?: 'detector';
  decode: DetectorDecode;
}

export interface LandmarkDescriptor extends DescriptorBase {
  type?: 'landmarks';
  /** grow the face box by this factor around its centre before cropping (default 1: as given) */
  cropScale?: number;
  decode: Landmarks68Decode;
}

export function inputSize(spec: InputSpec): { width: number; height: number } {
  return typeof spec.size === 'number' ? { width: spec.size, height: spec.size } : spec.size;
}

function invalid(name: string, reason: string): AvatarError {
  return new AvatarError('AVATAR_ERR_MODEL_INVALID', { name, reason });
}

const isTriple = (v: unknown): v is [number, number, number] =>
  Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x));

export function validateInput(name: string, spec: InputSpec): void {
  if (!spec || typeof spec !== 'object') throw invalid(name, 'the descriptor has no input section');
  const { width, height } = inputSize(spec);
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
    throw invalid(name, `input size must be positive integers (got ${JSON.stringify(spec.size)})`);
  }
  if (spec.layout !== 'NCHW' && spec.layout !== 'NHWC') throw invalid(name, `input layout must be NCHW or NHWC (got ${String(spec.layout)})`);
  if (!['pad-bottom-right', 'pad-center', 'stretch'].includes(spec.fit)) {
    throw invalid(name, `input fit must be pad-bottom-right, pad-center or stretch (got ${String(spec.fit)})`);
  }
  if (spec.channels !== undefined && spec.channels !== 'RGB' && spec.channels !== 'BGR') throw invalid(name, 'input channels must be RGB or BGR');
  if (!isTriple(spec.mean) || !isTriple(spec.std) || spec.std.some((s) => s === 0)) {
    throw invalid(name, 'input mean and std must be three numbers each (std not 0)');
  }
}

export function validateDetector(d: DetectorDescriptor): void {
  const name = d?.name ?? 'detector';
  if (typeof d?.path !== 'string' || d.path === '') throw invalid(name, 'the descriptor has no model path');
  validateInput(name, d.input);
  const dec = d.decode;
  if (dec?.kind === 'tiny-yolo-v2') {
    if (!Array.isArray(dec.anchors) || dec.anchors.length === 0 || !dec.anchors.every((a) => Array.isArray(a) && a.length === 2)) {
      throw invalid(name, 'tiny-yolo-v2 decoding needs anchors as [[w, h], ...] in grid cells');
    }
  } else if (dec?.kind === 'ssd') {
    if (typeof dec.boxes !== 'string' || typeof dec.scores !== 'string') throw invalid(name, 'ssd decoding needs the boxes and scores output names');
    if (dec.boxFormat !== 'yxyx' && dec.boxFormat !== 'xyxy') throw invalid(name, 'ssd boxFormat must be yxyx or xyxy');
  } else {
    throw invalid(name, `unknown detector decoding ${JSON.stringify((dec as { kind?: unknown } | undefined)?.kind)} (known: tiny-yolo-v2, ssd)`);
  }
}

export function validateLandmarks(d: LandmarkDescriptor): void {
  const name = d?.name ?? 'landmarks';
  if (typeof d?.path !== 'string' || d.path === '') throw invalid(name, 'the descriptor has no model path');
  validateInput(name, d.input);
  if (d.decode?.kind !== 'landmarks-68-normalized') {
    throw invalid(name, `unknown landmark decoding ${JSON.stringify(d.decode?.kind)} (known: landmarks-68-normalized)`);
  }
  if (d.cropScale !== undefined && !(d.cropScale > 0)) throw invalid(name, 'cropScale must be a positive number');
}
