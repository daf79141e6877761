import { AvatarError } from '@avatar/core';
import type { AvatarErrorJSON, FaceBox, FaceQuality, HeadPose } from '@avatar/core';

/** What a photo must meet to be animated. docs/face.md explains each one. */
export interface FaceThresholds {
  /** the face box must be at least this wide, px */
  minFaceSize: number;
  /** |yaw| at most this, degrees */
  maxYaw: number;
  /** |pitch| at most this, degrees */
  maxPitch: number;
  /** with several faces, the largest must be this many times wider than the next one */
  dominance: number;
  /** detections below this confidence are ignored */
  minScore: number;
  /** warn (not refuse) below this mean face luminance, 0..255 */
  darkLuma: number;
  /** warn (not refuse) when this share of the face is blown out */
  maxBrightFraction: number;
  /** warn (not refuse) when the face is this much blurrier than the whole image */
  minSharpnessRatio: number;
}

export const DEFAULT_FACE_THRESHOLDS: Readonly<FaceThresholds> = {
  minFaceSize: 64,
  maxYaw: 30,
  maxPitch: 25,
  dominance: 1.5,
  minScore: 0.5,
  darkLuma: 40,
  maxBrightFraction: 0.25,
  minSharpnessRatio: 0.25,
};

/** Environment variables that override the defaults, for the CLI, the worker and the server alike. */
export const THRESHOLD_ENV: Readonly<Record<keyof FaceThresholds, string>> = {
  minFaceSize: 'AVATAR_FACE_MIN_SIZE',
  maxYaw: 'AVATAR_FACE_MAX_YAW',
  maxPitch: 'AVATAR_FACE_MAX_PITCH',
  dominance: 'AVATAR_FACE_DOMINANCE',
  minScore: 'AVATAR_FACE_MIN_SCORE',
  darkLuma: 'AVATAR_FACE_DARK_LUMA',
  maxBrightFraction: 'AVATAR_FACE_MAX_BRIGHT',
  minSharpnessRatio: 'AVATAR_FACE_MIN_SHARPNESS_RATIO',
};

const RANGES: Readonly<Record<keyof FaceThresholds, readonly [number, number]>> = {
  minFaceSize: [1, 4096],
  maxYaw: [0, 90],
  maxPitch: [0, 90],
  dominance: [1, 100],
  minScore: [0, 1],
  darkLuma: [0, 255],
  maxBrightFraction: [0, 1],
  minSharpnessRatio: [0, 100],
};

/** Defaults, then the environment, then `overrides`; every value is range-checked. */
export function resolveThresholds(overrides: Partial<FaceThresholds> = {}, env: NodeJS.ProcessEnv = process.env): FaceThresholds {
  const out: FaceThresholds = { ...DEFAULT_FACE_THRESHOLDS };
  for (const key of Object.keys(DEFAULT_FACE_THRESHOLDS) as (keyof FaceThresholds)[]) {
    const fromEnv = env[THRESHOLD_ENV[key]];
    const raw: unknown = overrides[key] ?? (fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : undefined);
    if (raw === undefined) continue;
    const [min, max] = RANGES[key];
    if (typeof raw !== 'number' || !Number.isFinite(raw) || raw < min || raw > max) {
      const field = overrides[key] !== undefined ? key : THRESHOLD_ENV[key];
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field, problem: `must be a number from ${min} to ${max}`, value: String(overrides[key] ?? fromEnv), expected: `Give ${field} a value from ${min} to ${max}.` });
    }
    out[key] = raw;
  }
  return out;
}

/** One face as the checks see it. */
export interface CheckedFace {
  box: FaceBox;
  score: number;
  pose?: HeadPose;
  quality?: FaceQuality;
}

export type FaceRule = 'face-found' | 'one-face' | 'min-size' | 'yaw' | 'pitch' | 'mouth-inside' | 'chin-inside';

export interface RuleFailure {
  rule: FaceRule;
  /** the measured value, in the rule's unit */
  measured: number | string;
  /** the limit it broke */
  limit: number | string;
  error: AvatarErrorJSON;
}

export interface QualityWarning {
  rule: 'exposure-dark' | 'exposure-bright' | 'sharpness';
  measured: number;
  limit: number;
  message: string;
}

export interface Verdict {
  usable: boolean;
  /** index into the faces (largest first) of the face that would be animated, or null */
  chosen: number | null;
  /** every rule the photo breaks, most important first; empty when usable */
  reasons: RuleFailure[];
  warnings: QualityWarning[];
}

const describeBox = (b: FaceBox): string => `${Math.round(b.width)}x${Math.round(b.height)} at (${Math.round(b.x)}, ${Math.round(b.y)})`;

/**
 * Applies the lip-sync rules to faces sorted largest first. Roll is never a reason: avatar preparation
 * straightens it. `chosen` needs pose and quality measured; the others only need their boxes.
 */
export function judgeFaces(faces: readonly CheckedFace[], thresholds: FaceThresholds, input: string, path: string): Verdict {
  const reasons: RuleFailure[] = [];
  const warnings: QualityWarning[] = [];
  const fail = (rule: FaceRule, measured: number | string, limit: number | string, error: AvatarError): void => {
    reasons.push({ rule, measured, limit, error: error.toJSON() });
  };
  const first = faces[0];
  if (!first) {
    fail('face-found', 0, 1, new AvatarError('AVATAR_ERR_FACE_NONE', { input, path, minimum: thresholds.minFaceSize }));
    return { usable: false, chosen: null, reasons, warnings };
  }
  const second = faces[1];
  if (second && first.box.width < thresholds.dominance * second.box.width) {
    const similar = faces.filter((f) => f.box.width * thresholds.dominance > first.box.width);
    const ratio = Math.round((first.box.width / second.box.width) * 100) / 100;
    fail('one-face', ratio, thresholds.dominance, new AvatarError('AVATAR_ERR_FACE_SEVERAL', {
      input, path, count: similar.length, faces: similar.map((f) => describeBox(f.box)).join('; '),
    }));
    return { usable: false, chosen: null, reasons, warnings };
  }
  const width = Math.round(first.box.width);
  if (width < thresholds.minFaceSize) {
    fail('min-size', width, thresholds.minFaceSize, new AvatarError('AVATAR_ERR_FACE_TOO_SMALL', { input, width, minimum: thresholds.minFaceSize }));
  }
  if (first.pose) {
    const { yaw, pitch } = first.pose;
    if (Math.abs(yaw) > thresholds.maxYaw) fail('yaw', yaw, thresholds.maxYaw, new AvatarError('AVATAR_ERR_FACE_POSE', { input, axis: 'yaw', value: yaw.toFixed(0), limit: thresholds.maxYaw }));
    if (Math.abs(pitch) > thresholds.maxPitch) fail('pitch', pitch, thresholds.maxPitch, new AvatarError('AVATAR_ERR_FACE_POSE', { input, axis: 'pitch', value: pitch.toFixed(0), limit: thresholds.maxPitch }));
  }
  const q = first.quality;
  if (q) {
    if (!q.mouthInside) fail('mouth-inside', 'outside', 'inside', new AvatarError('AVATAR_ERR_FACE_CUT_OFF', { input, part: 'mouth', detail: 'mouth landmarks fall outside the image' }));
    else if (!q.chinInside) fail('chin-inside', 'outside', 'inside', new AvatarError('AVATAR_ERR_FACE_CUT_OFF', { input, part: 'chin', detail: 'chin landmarks fall outside the image' }));
    if (q.meanLuma < thresholds.darkLuma) warnings.push({ rule: 'exposure-dark', measured: q.meanLuma, limit: thresholds.darkLuma, message: `the face is dark (mean luminance ${q.meanLuma} of 255, below ${thresholds.darkLuma}); a brighter photo animates better` });
    if (q.brightFraction > thresholds.maxBrightFraction) warnings.push({ rule: 'exposure-bright', measured: q.brightFraction, limit: thresholds.maxBrightFraction, message: `${Math.round(q.brightFraction * 100)}% of the face is blown out (over ${Math.round(thresholds.maxBrightFraction * 100)}%)` });
    if (q.sharpnessRatio < thresholds.minSharpnessRatio) warnings.push({ rule: 'sharpness', measured: q.sharpnessRatio, limit: thresholds.minSharpnessRatio, message: `the face is much blurrier than the rest of the photo (sharpness ratio ${q.sharpnessRatio}, below ${thresholds.minSharpnessRatio})` });
  }
  return { usable: reasons.length === 0, chosen: 0, reasons, warnings };
}

/** The first reason as a throwable error (the stage's refusal). */
export function verdictError(verdict: Verdict): AvatarError | null {
  const reason = verdict.reasons[0];
  if (!reason) return null;
  return AvatarError.fromJSON(reason.error);
}
