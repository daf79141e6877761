// The talking-head renderer, in the order a frame is made: the animation schedule (blinks, head
// motion), the face's mesh, its pose for the frame, the warp of the photo's pixels, the inner mouth.
// Each kernel with a compiled twin in native/cpp/ has that twin's name: warp.ts ~ warp.cc, mouth.ts ~ mouth.cc.
export { DEFAULT_ANIMATION, blinkAt, blinkSchedule, headMotionAt } from './animation.js';
export type { AnimationOptions, HeadMotion } from './animation.js';
export { rgbaToI420 } from './color.js';
export { FaceRenderer } from './renderer.js';
export type { FrameState, RendererOptions, RgbaImage } from './types.js';
