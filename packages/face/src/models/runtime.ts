import { AvatarError } from '@avatar/core';
import { decodeLandmarks68, decodeSsd, decodeTinyYolo, nms } from './decode.js';
import {
  inputSize,
  validateDetector,
  validateLandmarks,
  type DetectorDescriptor,
  type InputSpec,
  type LandmarkDescriptor,
} from './descriptor.js';
import { BUILTIN_DETECTORS, BUILTIN_LANDMARKS, modelsDir, readManifest, resolveModelPath } from './manifest.js';
import { clipBox, prepareInput } from './preprocess.js';
import { openSession, type SharedSession } from './session.js';
import type { Box, DetectedFace, FaceDetector, LandmarkModel, Point, RgbImage } from './types.js';

export interface LoadOptions {
  /** folder of the built models and relative descriptor paths; default modelsDir() */
  modelsDir?: string;
  /** ONNX Runtime intra-op threads (default 1; see session.ts) */
  threads?: number;
}

export interface DetectorLoadOptions extends LoadOptions {
  /** network input side for detectors whose graph takes any size (the tiny detector: a multiple of 32) */
  inputSize?: number;
}

export type DetectorKind = keyof typeof BUILTIN_DETECTORS;
export type LandmarkKind = keyof typeof BUILTIN_LANDMARKS;

interface Resolved<D> {
  descriptor: D;
  path: string;
  sha256: string | undefined;
}

async function resolveBuiltin<D extends DetectorDescriptor | LandmarkDescriptor>(
  name: string,
  type: 'detector' | 'landmarks',
  dir: string,
): Promise<Resolved<D>> {
  const manifest = await readManifest(name, dir);
  if (manifest.descriptor?.type !== type) {
    throw new AvatarError('AVATAR_ERR_MODEL_INVALID', { name, reason: `its manifest describes a ${String(manifest.descriptor?.type)} model, not ${type}` });
  }
  const descriptor = manifest.descriptor as unknown as D;
  return { descriptor, path: resolveModelPath(descriptor.path, dir), sha256: manifest.sha256 };
}

function checkImage(image: RgbImage): void {
  if (!(image.width > 0 && image.height > 0) || image.data.length !== image.width * image.height * 3) {
    throw new AvatarError('AVATAR_ERR_INTERNAL', {
      reason: `RgbImage of ${image.width}x${image.height} has ${image.data.length} bytes, ${image.width * image.height * 3} expected`,
    });
  }
}

/** A built-in model by its short name, or a user's descriptor, resolved to a model file. */
async function resolveKind<D extends DetectorDescriptor | LandmarkDescriptor>(
  kind: string | D,
  builtins: Readonly<Record<string, string>>,
  field: 'detector' | 'landmarks',
  modelsDirOption: string | undefined,
  expected: string,
): Promise<Resolved<D>> {
  const dir = modelsDirOption ?? modelsDir();
  if (typeof kind !== 'string') return { descriptor: kind, path: resolveModelPath(kind.path, dir), sha256: kind.sha256 };
  const name = builtins[kind];
  if (!name) {
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field, problem: `is not a known ${field === 'detector' ? 'detector' : 'landmark model'}`, value: String(kind), expected });
  }
  return resolveBuiltin<D>(name, field, dir);
}

function pickName(session: SharedSession, wanted: string | undefined, kind: 'input' | 'output', names: readonly string[]): string {
  const name = wanted ?? names[0];
  if (name === undefined || !names.includes(name)) {
    throw new AvatarError('AVATAR_ERR_MODEL_INVALID', {
      name: session.name,
      reason: `it has no ${kind} named "${String(name)}" (it has: ${names.join(', ')})`,
    });
  }
  return name;
}

/**
 * A face detector: 'tiny' (tiny face detector, fast), 'ssd' (SSD MobileNet v1, slower, finds smaller
 * faces), or any ONNX model described by a DetectorDescriptor.
 */
export async function loadDetector(kind: DetectorKind | DetectorDescriptor, options: DetectorLoadOptions = {}): Promise<FaceDetector> {
  const resolved = await resolveKind<DetectorDescriptor>(kind, BUILTIN_DETECTORS, 'detector', options.modelsDir, 'Use tiny, ssd or a model descriptor.');
  const d = resolved.descriptor;
  validateDetector(d);
  let spec: InputSpec = d.input;
  if (options.inputSize !== undefined) {
    if (!(Number.isInteger(options.inputSize) && options.inputSize >= 32 && (d.decode.kind !== 'tiny-yolo-v2' || options.inputSize % 32 === 0))) {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', {
        field: 'detector input size',
        problem: 'is not usable',
        value: String(options.inputSize),
        expected: 'Use a multiple of 32 such as 224, 320, 416 or 608.',
      });
    }
    spec = { ...spec, size: options.inputSize };
  }
  const session = await openSession({ name: d.name, path: resolved.path, sha256: resolved.sha256, threads: options.threads });
  try {
    const inName = pickName(session, spec.name, 'input', session.inputNames);
    const dec = d.decode;
    const outNames = dec.kind === 'tiny-yolo-v2' ? [pickName(session, dec.output, 'output', session.outputNames)] : [
      pickName(session, dec.boxes, 'output', session.outputNames),
      pickName(session, dec.scores, 'output', session.outputNames),
    ];
    const size = inputSize(spec);
    return {
      name: d.name,
      async detect(image, opts = {}) {
        checkImage(image);
        const minScore = opts.minScore ?? dec.minScore ?? 0.5;
        const input = prepareInput(image, { x: 0, y: 0, width: image.width, height: image.height }, spec);
        const out = await session.run({ [inName]: input }, outNames);
        let faces: DetectedFace[];
        if (dec.kind === 'tiny-yolo-v2') {
          faces = decodeTinyYolo(out[outNames[0]!]!, dec, input.frame, minScore);
        } else {
          faces = decodeSsd(out[outNames[0]!]!, out[outNames[1]!]!, dec, input.frame, size, minScore);
        }
        return nms(faces, dec.iouThreshold ?? 0.4, opts.maxFaces ?? Infinity);
      },
      dispose: () => session.release(),
    };
  } catch (err) {
    await session.release();
    throw err;
  }
}

/**
 * A 68-point landmark model: 'full' (face_landmark_68, the more accurate), 'tiny'
 * (face_landmark_68_tiny), or any ONNX model described by a LandmarkDescriptor.
 */
export async function loadLandmarks(kind: LandmarkKind | LandmarkDescriptor, options: LoadOptions = {}): Promise<LandmarkModel> {
  const resolved = await resolveKind<LandmarkDescriptor>(kind, BUILTIN_LANDMARKS, 'landmarks', options.modelsDir, 'Use full, tiny or a model descriptor.');
  const d = resolved.descriptor;
  validateLandmarks(d);
  const session = await openSession({ name: d.name, path: resolved.path, sha256: resolved.sha256, threads: options.threads });
  try {
    const inName = pickName(session, d.input.name, 'input', session.inputNames);
    const outName = pickName(session, d.decode.output, 'output', session.outputNames);
    const scale = d.cropScale ?? 1;
    return {
      name: d.name,
      async landmarks(image: RgbImage, box: Box): Promise<Point[]> {
        checkImage(image);
        const grown = scale === 1 ? box : {
          x: box.x - ((scale - 1) * box.width) / 2,
          y: box.y - ((scale - 1) * box.height) / 2,
          width: box.width * scale,
          height: box.height * scale,
        };
        const crop = clipBox(grown, image.width, image.height);
        if (!crop) {
          throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: `face box ${JSON.stringify(box)} lies outside the ${image.width}x${image.height} image` });
        }
        const input = prepareInput(image, crop, d.input);
        const out = await session.run({ [inName]: input }, [outName]);
        return decodeLandmarks68(out[outName]!, input.frame);
      },
      dispose: () => session.release(),
    };
  } catch (err) {
    await session.release();
    throw err;
  }
}
