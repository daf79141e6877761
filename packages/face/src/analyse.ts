import type { FaceQuality } from '@avatar/core';
import type { LoadedImage } from './image.js';
import { loadImage } from './image.js';
import type { Box, DetectedFace, FaceDetector, LandmarkModel, Point, RgbImage } from './models/types.js';
import type { PoseEstimate } from './pose.js';
import { estimatePose } from './pose.js';
import { measureQuality } from './quality.js';
import type { FaceThresholds, Verdict } from './validate.js';
import { judgeFaces, resolveThresholds } from './validate.js';

/** The two models the face stage runs. */
export interface FaceEngines {
  detector: FaceDetector;
  landmarks: LandmarkModel;
}

export interface FaceReport {
  box: Box;
  score: number;
  /** landmarks, pose and quality are measured for the face that would be animated only */
  landmarks?: Point[];
  pose?: PoseEstimate;
  quality?: FaceQuality;
}

export interface PhotoReport {
  path: string;
  width: number;
  height: number;
  format: LoadedImage['format'];
  orientation: number;
  hadAlpha: boolean;
  wasGray: boolean;
  /** largest first */
  faces: FaceReport[];
  verdict: Verdict;
  models: { detector: string; landmarks: string };
  thresholds: FaceThresholds;
  timings: { decodeMs: number; detectMs: number; landmarksMs: number; measureMs: number };
}

export interface AnalyseOptions {
  /** names the photo in errors and reasons; default "avatar image" */
  input?: string;
  thresholds?: Partial<FaceThresholds>;
  maxMegapixels?: number;
  /** at most this many faces are detected */
  maxFaces?: number;
}

/** Share of the photo's longer side added as border on each side for the second look. */
const SECOND_LOOK_BORDER = 0.25;

async function detectPadded(detector: FaceDetector, image: RgbImage, options: { minScore: number; maxFaces: number }): Promise<DetectedFace[]> {
  const pad = Math.round(Math.max(image.width, image.height) * SECOND_LOOK_BORDER);
  const width = image.width + 2 * pad;
  const height = image.height + 2 * pad;
  // mid-grey border: no edges for the detector to mistake for features
  const data = new Uint8Array(width * height * 3).fill(128);
  for (let y = 0; y < image.height; y++) {
    data.set(image.data.subarray(y * image.width * 3, (y + 1) * image.width * 3), ((y + pad) * width + pad) * 3);
  }
  const found = await detector.detect({ width, height, data }, options);
  return found.map((f) => {
    const x0 = Math.max(0, f.box.x - pad);
    const y0 = Math.max(0, f.box.y - pad);
    const x1 = Math.min(image.width, f.box.x + f.box.width - pad);
    const y1 = Math.min(image.height, f.box.y + f.box.height - pad);
    return { score: f.score, box: { x: x0, y: y0, width: Math.max(0, x1 - x0), height: Math.max(0, y1 - y0) } };
  }).filter((f) => f.box.width > 0 && f.box.height > 0);
}

const ms = (t0: number): number => Math.round((performance.now() - t0) * 10) / 10;

/** Detects, places landmarks on the main face, measures pose and quality, and judges: the image stays in memory for preparation. */
export async function analyseImage(loaded: LoadedImage, path: string, engines: FaceEngines, options: AnalyseOptions = {}, decodeMs = 0): Promise<PhotoReport> {
  const input = options.input ?? 'avatar image';
  const thresholds = resolveThresholds(options.thresholds ?? {});
  const image: RgbImage = loaded.image;
  let t0 = performance.now();
  const detectOptions = { minScore: thresholds.minScore, maxFaces: options.maxFaces ?? 20 };
  let detected = await engines.detector.detect(image, detectOptions);
  // Small single-shot detectors miss faces that fill most of the frame (close-ups, prepared avatars):
  // with nothing found, look again with a border around the photo so the face is a smaller share of it.
  if (detected.length === 0) detected = await detectPadded(engines.detector, image, detectOptions);
  const detectMs = ms(t0);
  const faces: FaceReport[] = detected
    .filter((f) => f.score >= thresholds.minScore)
    .map((f) => ({ box: f.box, score: Math.round(f.score * 1000) / 1000 }))
    .sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height);

  let landmarksMs = 0;
  let measureMs = 0;
  const main = faces[0];
  const second = faces[1];
  // landmarks only when the largest face could be the one: with two similar faces the photo is refused anyway
  if (main && (!second || main.box.width >= thresholds.dominance * second.box.width)) {
    t0 = performance.now();
    main.landmarks = await engines.landmarks.landmarks(image, main.box);
    landmarksMs = ms(t0);
    t0 = performance.now();
    main.pose = estimatePose(main.landmarks);
    main.quality = measureQuality(image, main.box, main.landmarks);
    measureMs = ms(t0);
  }
  const verdict: Verdict = judgeFaces(faces, thresholds, input, path);
  return {
    path,
    width: image.width,
    height: image.height,
    format: loaded.format,
    orientation: loaded.orientation,
    hadAlpha: loaded.hadAlpha,
    wasGray: loaded.wasGray,
    faces,
    verdict,
    models: { detector: engines.detector.name, landmarks: engines.landmarks.name },
    thresholds,
    timings: { decodeMs, detectMs, landmarksMs, measureMs },
  };
}

/** Decodes a photo and analyses it. Decoding problems throw (AvatarError); face problems come back in `verdict`. */
export async function analysePhoto(path: string, engines: FaceEngines, options: AnalyseOptions = {}): Promise<{ report: PhotoReport; loaded: LoadedImage }> {
  const t0 = performance.now();
  const loaded = await loadImage(path, { input: options.input ?? 'avatar image', ...(options.maxMegapixels !== undefined && { maxMegapixels: options.maxMegapixels }) });
  const report = await analyseImage(loaded, path, engines, options, ms(t0));
  return { report, loaded };
}
