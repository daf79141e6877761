/**
 * Proves the ONNX conversion: the ORIGINAL face-api networks (its own published ESM build, with its
 * own classes and weight loader, running on TensorFlow.js's pure-JS CPU backend) and the converted
 * ONNX models (onnxruntime-node, our pre/post-processing) give the same faces and landmarks on real
 * photos: boxes IoU >= 0.95, landmarks within 1% of the face width. Raw network outputs for the same
 * input pixels are compared too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iou } from './decode.js';
import { loadDetector, loadLandmarks } from './runtime.js';
import { clipBox, prepareInput } from './preprocess.js';
import { openSession, type SharedSession } from './session.js';
import { modelsDir, readManifest } from './manifest.js';
import type { Box, FaceDetector, LandmarkModel, Point, RgbImage } from './types.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
const photos = ['tests/fixtures/grace_hopper.jpg', 'tests/fixtures/faces/astronaut_eileen_collins.jpg'].filter((p) =>
  existsSync(join(repo, p)),
);

/* eslint-disable @typescript-eslint/no-explicit-any -- face-api's published build is untyped JavaScript */
type FaceApi = any;

/**
 * tfjs-core with the pure-JS CPU backend, plus the chained tensor methods (x.reshape(...), x.as3D(...))
 * that the full @tensorflow/tfjs package registers and face-api calls: each is `op(this, ...args)`,
 * exactly as tfjs-core's own chained_ops modules define them (those ship only as extensionless ESM
 * that Node cannot load).
 */
const TF_SHIM = `import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-core';
const proto = tf.Tensor.prototype;
for (const [name, op] of Object.entries(tf)) {
  if (typeof op === 'function' && !(name in proto) && /^[a-z]/.test(name)) {
    proto[name] = function (...args) { this.throwIfDisposed(); return op(this, ...args); };
  }
}
proto.as1D = function () { this.throwIfDisposed(); return tf.reshape(this, [this.size]); };
for (const rank of [2, 3, 4, 5]) {
  proto['as' + rank + 'D'] = function (...shape) { this.throwIfDisposed(); return tf.reshape(this, shape); };
}
proto.asScalar = function () { return tf.reshape(this, []); };
proto.asType = function (dtype) { return tf.cast(this, dtype); };
proto.toFloat = function () { return tf.cast(this, 'float32'); };
proto.toInt = function () { return tf.cast(this, 'int32'); };
proto.toBool = function () { return tf.cast(this, 'bool'); };
`;

/**
 * face-api's "nobundle" ESM build imports @tensorflow/tfjs (+ webgl and wasm backends); we point those
 * imports at tfjs-core with the pure-JS CPU backend and load the file unmodified otherwise.
 */
async function loadFaceApi(): Promise<FaceApi> {
  const pkg = join(repo, 'node_modules', '@vladmandic', 'face-api');
  const dir = join(repo, 'node_modules', '.cache', 'avatar-face-parity');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tf.mjs'), TF_SHIM);
  writeFileSync(join(dir, 'none.mjs'), 'export {};\n');
  const src = readFileSync(join(pkg, 'dist', 'face-api.esm-nobundle.js'), 'utf8')
    .replace('"@tensorflow/tfjs/dist/index.js"', '"./tf.mjs"')
    .replace('"@tensorflow/tfjs-backend-webgl/dist/index.js"', '"./none.mjs"')
    .replace('"@tensorflow/tfjs-backend-wasm/dist/index.js"', '"./none.mjs"');
  writeFileSync(join(dir, 'face-api.mjs'), src);
  const faceapi: FaceApi = await import(pathToFileURL(join(dir, 'face-api.mjs')).href);
  await faceapi.tf.setBackend('cpu');
  await faceapi.tf.ready();
  // an ES module cannot require('fs'): hand face-api a file reader through its own hook
  faceapi.env.monkeyPatch({ readFile: (path: string) => readFile(path) });
  const weights = join(pkg, 'model');
  await faceapi.nets.tinyFaceDetector.loadFromDisk(weights);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(weights);
  await faceapi.nets.faceLandmark68TinyNet.loadFromDisk(weights);
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(weights);
  return faceapi;
}

async function decode(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i += 1) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

/** NCHW float planes -> NHWC array for TensorFlow.js. */
function toNhwc(data: Float32Array, h: number, w: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let c = 0; c < 3; c += 1) for (let i = 0; i < h * w; i += 1) out[i * 3 + c] = data[c * h * w + i]!;
  return out;
}

/** AVATAR_PARITY_REPORT=1 prints the measured agreement. */
const report = (line: string): void => {
  if (process.env.AVATAR_PARITY_REPORT === '1') process.stdout.write(`parity: ${line}\n`);
};

let faceapi: FaceApi;
let detector: FaceDetector;
const landmarkModels: Record<'full' | 'tiny', LandmarkModel> = {} as Record<'full' | 'tiny', LandmarkModel>;

beforeAll(async () => {
  execFileSync(process.execPath, [join(repo, 'models', 'build.mjs'), '--only', 'tiny_face_detector,face_landmark_68,face_landmark_68_tiny'], {
    stdio: 'ignore',
  });
  faceapi = await loadFaceApi();
  detector = await loadDetector('tiny');
  landmarkModels.full = await loadLandmarks('full');
  landmarkModels.tiny = await loadLandmarks('tiny');
}, 60_000);

afterAll(async () => {
  await detector?.dispose();
  await landmarkModels.full?.dispose();
  await landmarkModels.tiny?.dispose();
});

describe('ONNX conversion matches face-api (TensorFlow.js, CPU backend)', () => {
  it('has real photos to compare on', () => {
    expect(photos.length).toBeGreaterThanOrEqual(1);
  });

  it('raw network outputs agree on identical input pixels', async () => {
    const image = await decode(join(repo, photos[0]!));
    const tf = faceapi.tf;
    const dir = modelsDir();

    // tiny detector: feed both the same 416x416 float image (already fitted), compare the raw grid
    const tinyManifest = await readManifest('tiny_face_detector', dir);
    const raw = prepareInput(image, { x: 0, y: 0, width: image.width, height: image.height }, {
      ...tinyManifest.descriptor.input,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    });
    const fitted = prepareInput(image, { x: 0, y: 0, width: image.width, height: image.height }, tinyManifest.descriptor.input);
    const session: SharedSession = await openSession({ name: 'tiny', path: join(dir, 'tiny_face_detector.onnx') });
    try {
      const onnx = (await session.run({ input: fitted }))['grid']!;
      const x = tf.tensor4d(toNhwc(raw.data, 416, 416), [1, 416, 416, 3]);
      const ref = faceapi.nets.tinyFaceDetector.forwardInput(new faceapi.NetInput([x.squeeze([0])]), 416);
      const refData: Float32Array = await ref.data(); // [1, 13, 13, 25]
      const onnxNhwc = new Float32Array(refData.length);
      for (let c = 0; c < 25; c += 1) for (let i = 0; i < 169; i += 1) onnxNhwc[i * 25 + c] = onnx.data[c * 169 + i]!;
      const scale = maxAbsDiff(refData, new Float32Array(refData.length));
      const diff = maxAbsDiff(refData, onnxNhwc);
      expect(scale).toBeGreaterThan(1);
      report(`tiny detector raw grid: max |diff| ${diff.toExponential(2)} (outputs up to ${scale.toFixed(2)})`);
      expect(diff).toBeLessThan(1e-3 * scale);
      x.dispose();
      ref.dispose();
    } finally {
      await session.release();
    }
  });

  it('the SSD MobileNet v1 detector agrees on the first photo', async () => {
    const photo = photos[0]!;
    const image = await decode(join(repo, photo));
    const tensor = faceapi.tf.tensor3d(image.data, [image.height, image.width, 3], 'int32');
    const ssd = await loadDetector('ssd');
    try {
      const ref: Array<{ box: Box; score: number }> = (
        await faceapi.nets.ssdMobilenetv1.locateFaces(tensor, new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 }))
      ).map((d: FaceApi) => ({ box: { x: d.box.x, y: d.box.y, width: d.box.width, height: d.box.height }, score: d.score }));
      const ours = await ssd.detect(image, { minScore: 0.5 });
      expect(ref.length).toBeGreaterThanOrEqual(1);
      expect(ours.length).toBe(ref.length);
      for (const r of ref) {
        const best = Math.max(...ours.map((o) => iou(o.box, r.box)));
        report(`${photo}: SSD box IoU ${best.toFixed(4)}, score ${r.score.toFixed(4)}`);
        expect(best).toBeGreaterThanOrEqual(0.95);
        const match = ours.find((o) => iou(o.box, r.box) === best)!;
        expect(Math.abs(match.score - r.score)).toBeLessThan(0.01);
      }
    } finally {
      tensor.dispose();
      await ssd.dispose();
    }
  }, 60_000);

  for (const photo of photos) {
    it(`detector and landmarks agree on ${photo}`, async () => {
      const image = await decode(join(repo, photo));
      const tf = faceapi.tf;
      const tensor = tf.tensor3d(image.data, [image.height, image.width, 3], 'int32');
      try {
        const ref: Array<{ box: Box; score: number }> = (
          await faceapi.nets.tinyFaceDetector.locateFaces(tensor, new faceapi.TinyFaceDetectorOptions({ inputSize: 416, scoreThreshold: 0.5 }))
        ).map((d: FaceApi) => ({ box: { x: d.box.x, y: d.box.y, width: d.box.width, height: d.box.height }, score: d.score }));
        const ours = await detector.detect(image, { minScore: 0.5 });

        expect(ref.length).toBeGreaterThanOrEqual(1);
        expect(ours.length).toBe(ref.length);
        for (const r of ref) {
          const best = Math.max(...ours.map((o) => iou(o.box, r.box)));
          report(`${photo}: box IoU ${best.toFixed(4)}, score ${r.score.toFixed(4)}`);
          expect(best).toBeGreaterThanOrEqual(0.95);
          const match = ours.find((o) => iou(o.box, r.box) === best)!;
          expect(Math.abs(match.score - r.score)).toBeLessThan(0.01);
        }

        // landmarks on the reference box: face-api crops it (clipped, floored) and runs the net
        const face = ref.reduce((a, b) => (b.score > a.score ? b : a));
        const crop = clipBox(face.box, image.width, image.height)!;
        const [faceTensor] = await faceapi.extractFaceTensors(tensor, [new faceapi.Rect(face.box.x, face.box.y, face.box.width, face.box.height)]);
        try {
          for (const [kind, net] of [
            ['full', faceapi.nets.faceLandmark68Net],
            ['tiny', faceapi.nets.faceLandmark68TinyNet],
          ] as const) {
            const refLm = await net.detectLandmarks(faceTensor);
            // face-api maps points back as if the square padding were diff/2 on each side, while its
            // padToSquare puts diff - round(diff/2) first: half a pixel off on odd differences. We use
            // the true offset, so undo that half pixel in the reference before comparing.
            const diff = Math.abs(crop.width - crop.height);
            const shift = diff / 2 - (diff - Math.round(diff / 2));
            const dx = crop.width < crop.height ? shift : 0;
            const dy = crop.height < crop.width ? shift : 0;
            const refPts: Point[] = refLm.positions.map((p: FaceApi) => ({ x: p.x + crop.x + dx, y: p.y + crop.y + dy }));
            const pts = await landmarkModels[kind].landmarks(image, face.box);
            expect(pts).toHaveLength(68);
            const worst = Math.max(...pts.map((p, i) => Math.hypot(p.x - refPts[i]!.x, p.y - refPts[i]!.y)));
            report(`${photo}: ${kind} landmarks worst ${worst.toFixed(3)} px (${((100 * worst) / face.box.width).toFixed(3)}% of face width)`);
            expect(worst, `${kind} landmarks: worst point ${worst.toFixed(3)} px for a ${face.box.width.toFixed(0)} px face`).toBeLessThanOrEqual(
              0.01 * face.box.width,
            );
          }
        } finally {
          faceTensor.dispose();
        }
      } finally {
        tensor.dispose();
      }
    }, 30_000);
  }
});
