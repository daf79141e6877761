export type { Box, DetectedFace, FaceDetector, LandmarkModel, Point, RgbImage } from './types.js';
export type {
  DetectorDecode,
  DetectorDescriptor,
  InputSpec,
  LandmarkDescriptor,
  Landmarks68Decode,
  SsdDecode,
  TinyYoloDecode,
} from './descriptor.js';
export { validateDetector, validateLandmarks } from './descriptor.js';
export { loadDetector, loadLandmarks } from './runtime.js';
export type { DetectorKind, DetectorLoadOptions, LandmarkKind, LoadOptions } from './runtime.js';
export { BUILTIN_DETECTORS, BUILTIN_LANDMARKS, listModelManifests, modelsDir } from './manifest.js';
export type { ModelManifest, ModelStatus } from './manifest.js';
export { iou, nms } from './decode.js';
export { clipBox, prepareInput } from './preprocess.js';
export type { Crop, InputFrame, PreparedInput } from './preprocess.js';
export { openSessionCount } from './session.js';
