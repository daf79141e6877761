/** An image in memory: tightly packed RGB, 3 bytes per pixel, row by row. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface Point {
  x: number;
  y: number;
}

/** A box in image pixels. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface DetectedFace {
  box: Box;
  /** detector confidence 0..1 */
  score: number;
}

/** Finds faces. One ONNX session, created once and reused; `dispose` releases it. */
export interface FaceDetector {
  readonly name: string;
  detect(image: RgbImage, options?: { minScore?: number; maxFaces?: number }): Promise<DetectedFace[]>;
  dispose(): Promise<void>;
}

/** Places the 68 landmarks (iBUG 300-W order: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67). */
export interface LandmarkModel {
  readonly name: string;
  /** 68 points in image pixels for the face in `box` */
  landmarks(image: RgbImage, box: Box): Promise<Point[]>;
  dispose(): Promise<void>;
}
