import type { AnyStagePlugin } from '@avatar/core';
import { onnxFacePlugin } from './stage.js';

export { analyseImage, analysePhoto } from './analyse.js';
export type { AnalyseOptions, FaceEngines, FaceReport, PhotoReport } from './analyse.js';
export { DEFAULT_MAX_MEGAPIXELS, loadImage } from './image.js';
export type { LoadImageOptions, LoadedImage } from './image.js';
export { GENERIC_FACE_3D, estimatePose, eyeLineRoll, projectGenericFace } from './pose.js';
export type { PoseEstimate } from './pose.js';
export { measureQuality, pointsInside } from './quality.js';
export { FACE_FRACTION, SIDECAR_FORMAT, SIDECAR_VERSION, alignAndCrop, planCrop, readSidecar, sha256, sidecarPathFor, writePreparedAvatar } from './prepare.js';
export type { AlignedCrop, AvatarSidecar, WriteAvatarInput } from './prepare.js';
export { DEFAULT_FACE_THRESHOLDS, THRESHOLD_ENV, judgeFaces, resolveThresholds, verdictError } from './validate.js';
export type { CheckedFace, FaceRule, FaceThresholds, QualityWarning, RuleFailure, Verdict } from './validate.js';
export {
  FACE_OPTIONS_SCHEMA, FACE_RAM_MB, checkFace, createFacePlugin, faceOptionsFrom, toAssessment, disposeFaceEngines, loadFaceEngines, onnxFacePlugin, resolveFaceOptions, runFaceStage,
} from './stage.js';
export type { DetectorChoice, FaceCheck, FacePluginOptions, LandmarkChoice, ResolvedFaceOptions } from './stage.js';
export type { Box, DetectedFace, FaceDetector, LandmarkModel, Point, RgbImage } from './models/types.js';
export { MAX_PREPARED_ENTRIES, PreparedAvatarCache } from './cache.js';
export type { CacheKey, PreparingOptions } from './cache.js';

/** What the plugin registry loads from this package. */
export const plugins: readonly AnyStagePlugin[] = [onnxFacePlugin];
