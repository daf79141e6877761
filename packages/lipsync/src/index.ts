import type { AnyStagePlugin } from '@avatar/core';
import { syncInspectorPlugin, warpPlugin } from './plugin.js';

export { computeMouthTrack, lipGap, MOUTH_PARAMETERS, MouthTracker, poseAt, trackFrameCount } from './track.js';
export type { MouthParameter, MouthPose, MouthTrack, MouthTrackOptions, SpeechAudio } from './track.js';
export { REST, VISEMES, visemeFor } from './visemes.js';
export type { VisemeClass, VisemeTarget } from './visemes.js';
export { inspectVideo } from './inspect.js';
export type { Box, InspectionReport, InspectOptions, LagMeasure } from './inspect.js';
export { DEFAULT_ANIMATION, FaceRenderer, blinkAt, blinkSchedule, headMotionAt } from './render/index.js';
export type { AnimationOptions, FrameState, HeadMotion, RendererOptions, RgbaImage } from './render/index.js';
export { decodeRecording, frameSize, syncInspectorPlugin, warpPlugin } from './plugin.js';

/** What the plugin registry loads from this package: the renderer and the sync inspector. */
export const plugins: readonly AnyStagePlugin[] = [warpPlugin, syncInspectorPlugin];
