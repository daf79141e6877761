import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AvatarError } from '@avatar/core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iou, nms } from './decode.js';
import type { DetectorDescriptor } from './descriptor.js';
import { listModelManifests, modelsDir, readManifest } from './manifest.js';
import { loadDetector, loadLandmarks } from './runtime.js';
import { openSessionCount } from './session.js';
import type { RgbImage } from './types.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

async function decode(path: string): Promise<RgbImage> {
  const { data, info } = await sharp(path).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<AvatarError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AvatarError);
  expect((err as AvatarError).code).toBe(code);
  return err as AvatarError;
}

let hopper: RgbImage;
let tmp: string;

beforeAll(async () => {
  execFileSync(process.execPath, [join(repo, 'models', 'build.mjs')], { stdio: 'ignore' });
  hopper = await decode(join(repo, 'tests/fixtures/grace_hopper.jpg'));
  tmp = mkdtempSync(join(tmpdir(), 'avatar-models-'));
}, 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('built models', () => {
  it('has a manifest per model with source, licence, checksum and shapes, and the files match', () => {
    const list = listModelManifests();
    expect(list.map((m) => m.name).sort()).toEqual(['face_landmark_68', 'face_landmark_68_tiny', 'ssd_mobilenetv1', 'tiny_face_detector']);
    for (const m of list) {
      expect(m.status).toBe('ok');
      expect(m.source).toMatch(/^@vladmandic\/face-api@\d+\.\d+\.\d+$/);
      expect(m.license).toBe('MIT');
      expect(m.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(m.inputs[0]?.name).toBe('input');
      expect(m.outputs.length).toBeGreaterThan(0);
    }
  });

  it('builds the same bytes again (deterministic) and skips fresh models', () => {
    const dir = join(tmp, 'rebuild');
    const env = { ...process.env, AVATAR_MODELS_DIR: dir };
    const run = (): string => execFileSync(process.execPath, [join(repo, 'models', 'build.mjs'), '--only', 'tiny_face_detector,face_landmark_68_tiny'], { env, encoding: 'utf8' });
    expect(run()).toMatch(/built tiny_face_detector\.onnx/);
    const first = readFileSync(join(dir, 'tiny_face_detector.onnx'));
    expect(run()).toMatch(/up to date/);
    execFileSync(process.execPath, [join(repo, 'models', 'build.mjs'), '--force', '--only', 'tiny_face_detector'], { env });
    expect(readFileSync(join(dir, 'tiny_face_detector.onnx')).equals(first)).toBe(true);
    const manifest = JSON.parse(readFileSync(join(dir, 'tiny_face_detector.manifest.json'), 'utf8')) as { sha256: string };
    expect(listModelManifests({ modelsDir: dir }).find((m) => m.name === 'tiny_face_detector')?.sha256).toBe(manifest.sha256);
  });
});

describe('detectors', () => {
  it('tiny and ssd find the one face of a real portrait, in the same place', async () => {
    const tiny = await loadDetector('tiny');
    const ssd = await loadDetector('ssd');
    try {
      const a = await tiny.detect(hopper);
      const b = await ssd.detect(hopper);
      expect(a).toHaveLength(1);
      expect(b).toHaveLength(1);
      expect(a[0]!.score).toBeGreaterThan(0.8);
      expect(b[0]!.score).toBeGreaterThan(0.8);
      // the two detectors draw different box shapes but the same face
      expect(iou(a[0]!.box, b[0]!.box)).toBeGreaterThan(0.5);
      const box = a[0]!.box;
      expect(box.width).toBeGreaterThan(150);
      expect(box.x + box.width / 2).toBeGreaterThan(hopper.width * 0.3);
      expect(box.x + box.width / 2).toBeLessThan(hopper.width * 0.7);
    } finally {
      await tiny.dispose();
      await ssd.dispose();
    }
  });

  it('finds no face in a real photo without one', async () => {
    const tiny = await loadDetector('tiny');
    try {
      // a real photo region without a face: the top strip of the portrait (plain background)
      const strip: RgbImage = { width: hopper.width, height: 120, data: hopper.data.subarray(0, hopper.width * 120 * 3) };
      expect(await tiny.detect(strip)).toEqual([]);
    } finally {
      await tiny.dispose();
    }
  });

  it('shares one session per model per process and frees it with the last dispose', async () => {
    const before = openSessionCount();
    const a = await loadDetector('tiny');
    const b = await loadDetector('tiny');
    expect(openSessionCount()).toBe(before + 1);
    await a.dispose();
    expect(openSessionCount()).toBe(before + 1);
    expect((await b.detect(hopper)).length).toBe(1);
    await b.dispose();
    expect(openSessionCount()).toBe(before);
  });

  it('takes a user descriptor for any ONNX detector (here the tiny graph at another input size)', async () => {
    const manifest = await readManifest('tiny_face_detector', modelsDir());
    const own: DetectorDescriptor = {
      name: 'my-detector',
      path: join(modelsDir(), 'tiny_face_detector.onnx'),
      sha256: manifest.sha256,
      input: { size: 320, layout: 'NCHW', channels: 'RGB', fit: 'pad-bottom-right', mean: [117.001, 114.697, 97.404], std: [255, 255, 255] },
      decode: { kind: 'tiny-yolo-v2', anchors: [[1.603231, 2.094468], [6.041143, 7.080126], [2.882459, 3.518061], [4.266906, 5.178857], [9.041765, 10.66308]] },
    };
    const det = await loadDetector(own);
    const ref = await loadDetector('tiny');
    try {
      const [mine] = await det.detect(hopper);
      const [theirs] = await ref.detect(hopper);
      expect(det.name).toBe('my-detector');
      expect(iou(mine!.box, theirs!.box)).toBeGreaterThan(0.8);
    } finally {
      await det.dispose();
      await ref.dispose();
    }
  });

  it('refuses a missing model, a checksum mismatch and a bad descriptor with clear codes', async () => {
    const missing = await expectCode(loadDetector('tiny', { modelsDir: join(tmp, 'nothing-here') }), 'AVATAR_ERR_MODEL_MISSING');
    expect(missing.message).toContain('tiny_face_detector');
    expect(missing.hint).toContain('npm run models');

    const dir = join(tmp, 'tampered');
    execFileSync(process.execPath, [join(repo, 'models', 'build.mjs'), '--only', 'tiny_face_detector'], { env: { ...process.env, AVATAR_MODELS_DIR: dir } });
    const file = join(dir, 'tiny_face_detector.onnx');
    const bytes = readFileSync(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) % 256;
    writeFileSync(file, bytes);
    await expectCode(loadDetector('tiny', { modelsDir: dir }), 'AVATAR_ERR_MODEL_CHECKSUM');
    expect(listModelManifests({ modelsDir: dir })[0]?.status).toBe('checksum');

    const notOnnx = join(tmp, 'not-a-model.onnx');
    writeFileSync(notOnnx, 'this is not a model');
    const base = { name: 'x', input: { size: 64, layout: 'NCHW', fit: 'stretch', mean: [0, 0, 0], std: [1, 1, 1] } } as const;
    await expectCode(loadDetector({ ...base, path: notOnnx, decode: { kind: 'tiny-yolo-v2', anchors: [[1, 1]] } }), 'AVATAR_ERR_MODEL_INVALID');
    await expectCode(
      loadDetector({ ...base, path: notOnnx, decode: { kind: 'yunet' } } as unknown as DetectorDescriptor),
      'AVATAR_ERR_MODEL_INVALID',
    );
    // a real model with an output name it does not have
    copyFileSync(join(modelsDir(), 'tiny_face_detector.onnx'), join(tmp, 'copy.onnx'));
    const err = await expectCode(
      loadDetector({ ...base, path: join(tmp, 'copy.onnx'), decode: { kind: 'tiny-yolo-v2', output: 'nope', anchors: [[1, 1]] } }),
      'AVATAR_ERR_MODEL_INVALID',
    );
    expect(err.message).toContain('grid');
    await expectCode(loadDetector('tiny', { inputSize: 100 }), 'AVATAR_ERR_CONFIG_INVALID');
  });
});

describe('landmarks', () => {
  it('places 68 points where a face has them (full and tiny agree closely)', async () => {
    const tiny = await loadDetector('tiny');
    const full = await loadLandmarks('full');
    const small = await loadLandmarks('tiny');
    try {
      const [face] = await tiny.detect(hopper);
      const pts = await full.landmarks(hopper, face!.box);
      const pts2 = await small.landmarks(hopper, face!.box);
      expect(pts).toHaveLength(68);
      const mean = (from: number, to: number, key: 'x' | 'y'): number => pts.slice(from, to).reduce((s, p) => s + p[key], 0) / (to - from);
      // eyes above the nose tip above the mouth above the chin; left eye left of right eye
      expect(mean(36, 42, 'y')).toBeLessThan(pts[30]!.y);
      expect(pts[30]!.y).toBeLessThan(mean(48, 68, 'y'));
      expect(mean(48, 68, 'y')).toBeLessThan(pts[8]!.y);
      expect(mean(36, 42, 'x')).toBeLessThan(mean(42, 48, 'x'));
      // every point inside the face box, give or take a margin
      const b = face!.box;
      for (const p of pts) {
        expect(p.x).toBeGreaterThan(b.x - 0.15 * b.width);
        expect(p.x).toBeLessThan(b.x + 1.15 * b.width);
        expect(p.y).toBeGreaterThan(b.y - 0.15 * b.height);
        expect(p.y).toBeLessThan(b.y + 1.15 * b.height);
      }
      const mad = pts.reduce((s, p, i) => s + Math.hypot(p.x - pts2[i]!.x, p.y - pts2[i]!.y), 0) / 68;
      expect(mad).toBeLessThan(0.05 * b.width);
    } finally {
      await tiny.dispose();
      await full.dispose();
      await small.dispose();
    }
  });
});

describe('nms', () => {
  it('keeps the best of overlapping boxes and separate faces', () => {
    const f = (x: number, score: number) => ({ box: { x, y: 0, width: 10, height: 10 }, score });
    expect(nms([f(0, 0.6), f(1, 0.9), f(50, 0.7)], 0.4).map((d) => d.score)).toEqual([0.9, 0.7]);
    expect(nms([f(0, 0.6), f(1, 0.9), f(50, 0.7)], 0.4, 1)).toHaveLength(1);
  });
});
