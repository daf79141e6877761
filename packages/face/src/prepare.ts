import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { loadSharp } from './sharp.js';
import { AvatarError, atomicWriteFile, checkWritableTarget } from '@avatar/core';
import type { AvatarFace, FaceBox, FacePoint, FaceQuality, HeadPose } from '@avatar/core';
import type { Point, RgbImage } from './models/types.js';
import { estimatePose } from './pose.js';
import { measureQuality } from './quality.js';

/** The face's landmark span takes this share of the prepared avatar's width (the rest: hair, neck, shoulders). */
export const FACE_FRACTION = 0.4;
export const SIDECAR_FORMAT = 'avatar-face';
export const SIDECAR_VERSION = 1;

/** The JSON written beside a prepared avatar: everything later jobs need without detecting again. */
export interface AvatarSidecar {
  format: typeof SIDECAR_FORMAT;
  version: typeof SIDECAR_VERSION;
  image: { file: string; width: number; height: number; sha256: string };
  /** in the prepared image's coordinates */
  face: Omit<AvatarFace, 'sidecarPath'>;
  source: {
    path: string;
    sha256: string;
    width: number;
    height: number;
    /** the source's pose before alignment */
    pose: HeadPose;
    /** how the avatar was cut from the source: rotated by -rollDegrees about `centre`, `side` px square, scaled by `scale` */
    transform: { rollDegrees: number; centre: FacePoint; side: number; scale: number };
  };
  createdAt: string;
}

/** `avatar.png` -> `avatar.face.json` beside it. */
export function sidecarPathFor(imagePath: string): string {
  return join(dirname(imagePath), `${basename(imagePath, extname(imagePath))}.face.json`);
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface AlignedCrop {
  image: RgbImage;
  landmarks: Point[];
  box: FaceBox;
  transform: AvatarSidecar['source']['transform'];
}

function bounds(points: readonly Point[]): { minX: number; minY: number; maxX: number; maxY: number } {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (const p of points) {
    minX = Math.min(minX, p.x);
    minY = Math.min(minY, p.y);
    maxX = Math.max(maxX, p.x);
    maxY = Math.max(maxY, p.y);
  }
  return { minX, minY, maxX, maxY };
}

/**
 * The square to cut: centred on the face's landmarks, turned by the roll, as large as FACE_FRACTION asks
 * but never reaching outside the photo (no invented pixels), so a face near the border ends up off-centre
 * rather than padded.
 */
export function planCrop(width: number, height: number, landmarks: readonly Point[], rollDegrees: number): { centre: Point; side: number } {
  const b = bounds(landmarks);
  const faceWidth = b.maxX - b.minX;
  const theta = (rollDegrees * Math.PI) / 180;
  const spread = Math.abs(Math.cos(theta)) + Math.abs(Math.sin(theta));
  // the face's own width, measured across the straightened face
  const wanted = Math.max(faceWidth / spread, 1) / FACE_FRACTION;
  const side = Math.max(2, Math.min(wanted, Math.min(width, height) / spread));
  const half = (side / 2) * spread;
  const clamp = (v: number, lo: number, hi: number): number => (lo > hi ? (lo + hi) / 2 : Math.min(hi, Math.max(lo, v)));
  return {
    centre: { x: clamp((b.minX + b.maxX) / 2, half, width - half), y: clamp((b.minY + b.maxY) / 2, half, height - half) },
    side,
  };
}

/**
 * Cuts the avatar from the photo: face centred (as far as the photo allows), eye line made level,
 * `size` px square. Downscaling is done by sharp first (a proper filter), so the final rotation samples
 * at about 1:1. Landmarks are mapped with the same transform, so they need not be detected again.
 */
export async function alignAndCrop(source: RgbImage, landmarks: readonly Point[], rollDegrees: number, size: number): Promise<AlignedCrop> {
  const { centre, side } = planCrop(source.width, source.height, landmarks, rollDegrees);
  const scale = size / side;
  let scaled = source;
  let applied = 1;
  if (scale < 1) {
    const w = Math.max(1, Math.round(source.width * scale));
    const h = Math.max(1, Math.round(source.height * scale));
    const sharp = await loadSharp();
    const { data, info } = await sharp(Buffer.from(source.data.buffer, source.data.byteOffset, source.data.byteLength), { raw: { width: source.width, height: source.height, channels: 3 } })
      .resize(w, h, { kernel: 'lanczos3', fit: 'fill' })
      .raw()
      .toBuffer({ resolveWithObject: true });
    scaled = { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
    applied = info.width / source.width;
  }
  const t = (rollDegrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const map = (p: Point): Point => {
    const dx = p.x - centre.x;
    const dy = p.y - centre.y;
    // inverse rotation, then source pixels -> output pixels
    return { x: (cos * dx + sin * dy) * scale + size / 2, y: (-sin * dx + cos * dy) * scale + size / 2 };
  };
  const out = rotateCropExact(scaled, applied, centre, rollDegrees, size, scale);
  const mapped = landmarks.map(map);
  const b = bounds(mapped);
  return {
    image: out,
    landmarks: mapped,
    box: { x: b.minX, y: b.minY, width: b.maxX - b.minX, height: b.maxY - b.minY },
    transform: { rollDegrees, centre, side: Math.round(side * 100) / 100, scale: Math.round(scale * 10000) / 10000 },
  };
}

/**
 * Output pixel q (centre at q + 0.5) comes from source point centre + Rot(roll)((q + 0.5 - size/2) / scale),
 * read in the pre-scaled source at `applied` times the source's resolution.
 */
function rotateCropExact(scaled: RgbImage, applied: number, centre: Point, rollDegrees: number, size: number, scale: number): RgbImage {
  const out = new Uint8Array(size * size * 3);
  const t = (rollDegrees * Math.PI) / 180;
  const cos = Math.cos(t);
  const sin = Math.sin(t);
  const half = size / 2;
  const { width: w, height: h, data } = scaled;
  for (let qy = 0; qy < size; qy++) {
    const dy = qy + 0.5 - half;
    for (let qx = 0; qx < size; qx++) {
      const dx = qx + 0.5 - half;
      // source coordinates (original pixels), then into the scaled image's pixel grid
      const ox = centre.x + (cos * dx - sin * dy) / scale;
      const oy = centre.y + (sin * dx + cos * dy) / scale;
      const sx = Math.min(w - 1, Math.max(0, ox * applied - 0.5));
      const sy = Math.min(h - 1, Math.max(0, oy * applied - 0.5));
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const x1 = Math.min(w - 1, x0 + 1);
      const y1 = Math.min(h - 1, y0 + 1);
      const fx = sx - x0;
      const fy = sy - y0;
      const o = (qy * size + qx) * 3;
      const a = (y0 * w + x0) * 3;
      const b = (y0 * w + x1) * 3;
      const c = (y1 * w + x0) * 3;
      const d = (y1 * w + x1) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const top = data[a + ch]! + (data[b + ch]! - data[a + ch]!) * fx;
        const bottom = data[c + ch]! + (data[d + ch]! - data[c + ch]!) * fx;
        out[o + ch] = Math.round(top + (bottom - top) * fy);
      }
    }
  }
  return { width: size, height: size, data: out };
}

export interface WriteAvatarInput {
  outputPath: string;
  size: number;
  sourcePath: string;
  source: RgbImage;
  sourceSha256: string;
  landmarks: readonly Point[];
  score: number;
  sourcePose: HeadPose;
  models: { detector: string; landmarks: string };
}

/**
 * Writes the prepared avatar (PNG) and its sidecar (JSON), each atomically; on any failure neither is
 * left behind. Returns the face in the avatar's coordinates.
 */
export async function writePreparedAvatar(input: WriteAvatarInput): Promise<{ face: AvatarFace; sidecar: AvatarSidecar; sidecarPath: string }> {
  await checkWritableTarget(input.outputPath, 'avatar output');
  if (extname(input.outputPath).toLowerCase() !== '.png') {
    throw new AvatarError('AVATAR_ERR_OUTPUT_EXTENSION', { input: 'avatar output', extension: extname(input.outputPath) || '(no extension)', format: 'png' });
  }
  const crop = await alignAndCrop(input.source, input.landmarks, input.sourcePose.roll, input.size);
  const pose = estimatePose(crop.landmarks);
  const quality: FaceQuality = measureQuality(crop.image, crop.box, crop.landmarks);
  const sharp = await loadSharp();
  const png = await sharp(Buffer.from(crop.image.data.buffer, crop.image.data.byteOffset, crop.image.data.byteLength), { raw: { width: crop.image.width, height: crop.image.height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
  const round = (p: Point): FacePoint => ({ x: Math.round(p.x * 100) / 100, y: Math.round(p.y * 100) / 100 });
  const face: Omit<AvatarFace, 'sidecarPath'> = {
    box: { x: Math.round(crop.box.x * 100) / 100, y: Math.round(crop.box.y * 100) / 100, width: Math.round(crop.box.width * 100) / 100, height: Math.round(crop.box.height * 100) / 100 },
    score: input.score,
    landmarks: crop.landmarks.map(round),
    pose: { yaw: pose.yaw, pitch: pose.pitch, roll: pose.roll },
    quality,
    models: input.models,
  };
  const sidecar: AvatarSidecar = {
    format: SIDECAR_FORMAT,
    version: SIDECAR_VERSION,
    image: { file: basename(input.outputPath), width: crop.image.width, height: crop.image.height, sha256: sha256(png) },
    face,
    source: {
      path: input.sourcePath,
      sha256: input.sourceSha256,
      width: input.source.width,
      height: input.source.height,
      pose: input.sourcePose,
      transform: crop.transform,
    },
    createdAt: new Date().toISOString(),
  };
  const sidecarPath = sidecarPathFor(input.outputPath);
  await atomicWriteFile(input.outputPath, png);
  try {
    await atomicWriteFile(sidecarPath, `${JSON.stringify(sidecar, null, 2)}\n`);
  } catch (error) {
    await rm(input.outputPath, { force: true });
    throw error;
  }
  return { face: { ...face, sidecarPath }, sidecar, sidecarPath };
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isPoint = (v: unknown): v is FacePoint => typeof v === 'object' && v !== null && isNum((v as FacePoint).x) && isNum((v as FacePoint).y);

/**
 * The sidecar beside `imagePath`, when there is one and it describes this very image (same SHA-256).
 * A sidecar for another version of the image is ignored (the photo was replaced: detect again);
 * a damaged one is an error, so a hand-edited file never silently decides the face.
 */
export async function readSidecar(imagePath: string, imageBytes: Uint8Array, input = 'avatar image'): Promise<{ sidecar: AvatarSidecar; path: string } | null> {
  const path = sidecarPathFor(imagePath);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  const bad = (reason: string): AvatarError => new AvatarError('AVATAR_ERR_FACE_SIDECAR_INVALID', { input, path, reason });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON: ${(error as Error).message}`);
  }
  const s = raw as Partial<AvatarSidecar>;
  if (typeof raw !== 'object' || raw === null || s.format !== SIDECAR_FORMAT) throw bad(`not an ${SIDECAR_FORMAT} file`);
  if (s.version !== SIDECAR_VERSION) throw bad(`version ${String(s.version)}, expected ${SIDECAR_VERSION}`);
  if (!s.image || typeof s.image.sha256 !== 'string') throw bad('no image checksum');
  if (s.image.sha256 !== sha256(imageBytes)) return null;
  const f = s.face;
  if (!f || !Array.isArray(f.landmarks) || f.landmarks.length !== 68 || !f.landmarks.every(isPoint)) throw bad('landmarks missing or not 68 points');
  if (!f.box || !isNum(f.box.x) || !isNum(f.box.y) || !isNum(f.box.width) || !isNum(f.box.height)) throw bad('face box missing');
  if (!f.pose || !isNum(f.pose.yaw) || !isNum(f.pose.pitch) || !isNum(f.pose.roll)) throw bad('pose missing');
  if (!f.quality || typeof f.quality.mouthInside !== 'boolean') throw bad('quality missing');
  if (!f.models || typeof f.models.detector !== 'string') throw bad('model names missing');
  return { sidecar: s as AvatarSidecar, path };
}
