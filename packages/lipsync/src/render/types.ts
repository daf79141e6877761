/** Tightly packed RGBA, 4 bytes per pixel, row by row. */
export interface RgbaImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface RendererOptions {
  /** scales how far the mouth and jaw move; 1 = natural */
  expressiveness?: number;
  /** how many buffers frames are drawn into in turn (see FaceRenderer.render) */
  ring?: number;
  pixelFormat?: 'rgba' | 'yuv420p';
  /**
   * what draws I420 frames (the warp and the inner mouth): 'auto' (default) the native addon's compiled
   * kernels when it is built, else the TypeScript ones; 'js' always the TypeScript ones; 'native' the
   * compiled ones or an error; 'threads' the GPU kernels' thread functions run on the CPU one after
   * another (a check that the GPU's decomposition of a frame draws the same bytes; slow); 'cuda' an
   * NVIDIA GPU when one can be opened (`gpu`), else what 'auto' picks, with the reason in `gpuMissing`.
   * All give the same bytes.
   */
  kernel?: 'auto' | 'js' | 'native' | 'threads' | 'cuda';
  /** with kernel 'cuda': the GPU to draw on, by NVML's UUID ("GPU-..."); CUDA device 0 without one */
  gpu?: { uuid?: string };
}

/** What one frame shows besides the mouth. */
export interface FrameState {
  /** 0 open .. 1 closed */
  blink: number;
  /** head rotation in radians and translation in pixels */
  headAngle: number;
  headX: number;
  headY: number;
}

/** An inclusive pixel rectangle: x0, y0, x1, y1. */
export type Box = [number, number, number, number];
