import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAvatarError } from '@avatar/core';
import {
  analysePhoto, disposeFaceEngines, loadFaceEngines, loadImage, resolveFaceOptions, runFaceStage, sidecarPathFor,
} from '@avatar/face';
import type { FaceEngines, PhotoReport, ResolvedFaceOptions } from '@avatar/face';
import { ROOT, tempDir } from './helpers/cli.js';

// Real photos only (tests/fixtures/README.md says where each comes from); the variants below are
// transformations of those photos, never drawings.
const GRACE = join(ROOT, 'tests/fixtures/grace_hopper.jpg');
const ASTRONAUT = join(ROOT, 'tests/fixtures/faces/astronaut_eileen_collins.jpg');
const CAMERAMAN = join(ROOT, 'tests/fixtures/faces/cameraman.png');
const CAT = join(ROOT, 'tests/fixtures/faces/chelsea_cat.jpg');
const COFFEE = join(ROOT, 'tests/fixtures/faces/coffee.jpg');

let engines: FaceEngines;
let options: ResolvedFaceOptions;
let dir: string;
let grace: PhotoReport;

async function analyse(path: string): Promise<PhotoReport> {
  return (await analysePhoto(path, engines, { thresholds: options.thresholds })).report;
}

async function expectRefused(path: string, code: string): Promise<Error & { code: string; message: string; hint: string }> {
  try {
    await runFaceStage({ imagePath: path }, engines, options);
  } catch (error) {
    expect(isAvatarError(error), String(error)).toBe(true);
    expect((error as { code: string }).code).toBe(code);
    return error as Error & { code: string; message: string; hint: string };
  }
  throw new Error(`${path} was not refused`);
}

beforeAll(async () => {
  options = resolveFaceOptions({}, {});
  engines = await loadFaceEngines(options);
  dir = await tempDir('avatar-face-');
  grace = await analyse(GRACE);
});

afterAll(async () => {
  await disposeFaceEngines(engines);
});

describe('real portraits', () => {
  it('Grace Hopper: one frontal face, usable, with pose and quality measured', () => {
    expect(grace.faces).toHaveLength(1);
    const face = grace.faces[0]!;
    expect(grace.verdict.usable).toBe(true);
    expect(face.box.width).toBeGreaterThan(150);
    expect(face.landmarks).toHaveLength(68);
    expect(Math.abs(face.pose!.yaw)).toBeLessThan(10);
    expect(Math.abs(face.pose!.pitch)).toBeLessThan(10);
    expect(Math.abs(face.pose!.roll)).toBeLessThan(8);
    expect(face.quality).toMatchObject({ mouthInside: true, chinInside: true });
    expect(face.quality!.sharpness).toBeGreaterThan(0);
    expect(face.quality!.meanLuma).toBeGreaterThan(60);
    // the mouth lies below the eyes and between the jaw sides
    const lm = face.landmarks!;
    expect(lm[62]!.y).toBeGreaterThan(lm[39]!.y);
    expect(lm[62]!.x).toBeGreaterThan(lm[0]!.x);
    expect(lm[62]!.x).toBeLessThan(lm[16]!.x);
  });

  it('Eileen Collins (astronaut portrait): usable, frontal', async () => {
    const r = await analyse(ASTRONAUT);
    expect(r.verdict.usable).toBe(true);
    expect(r.faces).toHaveLength(1);
    expect(Math.abs(r.faces[0]!.pose!.yaw)).toBeLessThan(10);
    expect(Math.abs(r.faces[0]!.pose!.pitch)).toBeLessThan(10);
  });

  it('a photographer in near-profile is refused for yaw, with the measured angle and what to do', async () => {
    const r = await analyse(CAMERAMAN);
    expect(r.verdict.usable).toBe(false);
    const yaw = r.verdict.reasons.find((x) => x.rule === 'yaw');
    expect(yaw, JSON.stringify(r.verdict)).toBeDefined();
    expect(Math.abs(Number(yaw!.measured))).toBeGreaterThan(40);
    // he looks toward the image's right
    expect(Number(yaw!.measured)).toBeGreaterThan(0);
    const e = await expectRefused(CAMERAMAN, 'AVATAR_ERR_FACE_POSE');
    expect(e.message).toMatch(/yaw is \d+ degrees, over the limit of 30/);
    expect(e.hint).toContain('faces the camera');
  });

  it('a cat and a coffee cup: no face', async () => {
    for (const photo of [CAT, COFFEE]) {
      const r = await analyse(photo);
      expect(r.faces, photo).toHaveLength(0);
      const e = await expectRefused(photo, 'AVATAR_ERR_FACE_NONE');
      expect(e.message).toContain(photo);
    }
  });
});

describe('transformed real photos', () => {
  it('a photo turned 20 degrees clockwise: accepted, roll measured about +20 more than the original', async () => {
    const path = join(dir, 'grace-rot20.jpg');
    await sharp(GRACE).rotate(20, { background: '#ffffff' }).jpeg({ quality: 92 }).toFile(path);
    const r = await analyse(path);
    expect(r.verdict.usable, JSON.stringify(r.verdict)).toBe(true);
    const delta = r.faces[0]!.pose!.roll - grace.faces[0]!.pose!.roll;
    expect(Math.abs(delta - 20)).toBeLessThan(3);
    expect(Math.abs(r.faces[0]!.pose!.yaw - grace.faces[0]!.pose!.yaw)).toBeLessThan(8);
  });

  it('a mirrored photo: yaw and roll change sign', async () => {
    const path = join(dir, 'astronaut-flop.jpg');
    await sharp(ASTRONAUT).flop().jpeg({ quality: 92 }).toFile(path);
    const a = (await analyse(ASTRONAUT)).faces[0]!.pose!;
    const b = (await analyse(path)).faces[0]!.pose!;
    expect(Math.abs(a.roll + b.roll)).toBeLessThan(2);
    expect(Math.abs(a.yaw + b.yaw)).toBeLessThan(5);
    expect(Math.abs(a.pitch - b.pitch)).toBeLessThan(5);
  });

  it('EXIF orientation is honoured: a sideways-stored photo tagged "rotate 90" is found upright', async () => {
    const path = join(dir, 'grace-exif6.jpg');
    // store the pixels turned a quarter anticlockwise and tag them "rotate 90 clockwise to display"
    await sharp(GRACE).rotate(-90).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toFile(path);
    const meta = await sharp(path).metadata();
    expect(meta.orientation).toBe(6);
    expect(meta.width).toBe(600);
    const loaded = await loadImage(path);
    expect(loaded.image.width).toBe(512);
    expect(loaded.orientation).toBe(6);
    const r = await analyse(path);
    expect(r.verdict.usable).toBe(true);
    expect(Math.abs(r.faces[0]!.box.x - grace.faces[0]!.box.x)).toBeLessThan(12);
    expect(Math.abs(r.faces[0]!.pose!.roll - grace.faces[0]!.pose!.roll)).toBeLessThan(2);
  });

  it('a dark photo: found, exposure measured low, a warning but no refusal', async () => {
    const path = join(dir, 'grace-dark.jpg');
    await sharp(GRACE).linear(0.2, 0).jpeg({ quality: 92 }).toFile(path);
    const r = await analyse(path);
    expect(r.verdict.usable).toBe(true);
    expect(r.faces[0]!.quality!.meanLuma).toBeLessThan(35);
    expect(r.verdict.warnings.map((w) => w.rule)).toContain('exposure-dark');
    expect(grace.verdict.warnings.map((w) => w.rule)).not.toContain('exposure-dark');
  });

  it('grayscale and alpha: decoded to RGB and found', async () => {
    const gray = join(dir, 'astronaut-gray.png');
    await sharp(ASTRONAUT).toColourspace('b-w').png().toFile(gray);
    expect((await sharp(gray).metadata()).channels).toBe(1);
    const g = await analyse(gray);
    expect(g.wasGray).toBe(true);
    expect(g.verdict.usable).toBe(true);
    const alpha = join(dir, 'grace-alpha.png');
    await sharp(GRACE).ensureAlpha(0.9).png().toFile(alpha);
    const a = await analyse(alpha);
    expect(a.hadAlpha).toBe(true);
    expect(a.verdict.usable).toBe(true);
  });

  it('a small face in a larger scene: refused as too small, naming the width and the minimum', async () => {
    const path = join(dir, 'grace-small.jpg');
    const small = await sharp(GRACE).resize(Math.round(512 * 0.2)).toBuffer();
    const scene = await sharp(COFFEE).extract({ left: 0, top: 0, width: 400, height: 280 }).toBuffer();
    await sharp(scene).composite([{ input: small, left: 260, top: 40 }]).jpeg({ quality: 95 }).toFile(path);
    const r = await analyse(path);
    expect(r.faces.length, JSON.stringify(r.faces)).toBeGreaterThanOrEqual(1);
    expect(r.faces[0]!.box.width).toBeLessThan(64);
    const e = await expectRefused(path, 'AVATAR_ERR_FACE_TOO_SMALL');
    expect(e.message).toMatch(/is \d+ px wide, under the minimum of 64 px/);
    expect(e.hint).toContain('at least 64 px wide');
  });

  it('two portraits side by side: refused, listing both faces with their boxes', async () => {
    const path = join(dir, 'two-faces.jpg');
    const left = await sharp(GRACE).resize(400).toBuffer();
    const right = await sharp(ASTRONAUT).resize(600).extract({ left: 100, top: 0, width: 400, height: 470 }).toBuffer();
    await sharp({ create: { width: 820, height: 480, channels: 3, background: '#808080' } })
      .composite([{ input: left, left: 0, top: 0 }, { input: right, left: 420, top: 0 }])
      .jpeg({ quality: 92 }).toFile(path);
    const r = await analyse(path);
    expect(r.faces).toHaveLength(2);
    const e = await expectRefused(path, 'AVATAR_ERR_FACE_SEVERAL');
    expect(e.message).toMatch(/^2 faces of similar size/);
    expect(e.message).toMatch(/\d+x\d+ at \(\d+, \d+\); \d+x\d+ at \(\d+, \d+\)/);
  });

  it('one dominant face beside a much smaller one: accepted, the large one chosen', async () => {
    const path = join(dir, 'dominant.jpg');
    const big = await sharp(GRACE).toBuffer();
    const small = await sharp(ASTRONAUT).resize(280).toBuffer();
    await sharp({ create: { width: 740, height: 600, channels: 3, background: '#808080' } })
      .composite([{ input: big, left: 0, top: 0 }, { input: small, left: 480, top: 300 }])
      .jpeg({ quality: 92 }).toFile(path);
    const r = await analyse(path);
    expect(r.faces.length).toBe(2);
    expect(r.verdict.usable, JSON.stringify(r.verdict)).toBe(true);
    expect(r.faces[0]!.box.x).toBeLessThan(400);
  });

  it('a face cut off by the border: below the lower lip -> the chin; through the nose -> the mouth', async () => {
    const lm = grace.faces[0]!.landmarks!;
    const bottom = join(dir, 'grace-cut-bottom.jpg');
    const cutY = Math.round(lm[57]!.y + (lm[8]!.y - lm[57]!.y) * 0.9); // just above the chin's tip
    await sharp(GRACE).extract({ left: 0, top: 0, width: 512, height: cutY }).jpeg({ quality: 92 }).toFile(bottom);
    expect((await analyse(bottom)).faces.length, 'the cut face is still detected').toBe(1);
    expect((await expectRefused(bottom, 'AVATAR_ERR_FACE_CUT_OFF')).message).toMatch(/the chin of the face/);
    const side = join(dir, 'grace-cut-side.jpg');
    const cutX = Math.round(lm[33]!.x); // through the middle of the nose and mouth
    await sharp(GRACE).extract({ left: 0, top: 0, width: cutX, height: 600 }).jpeg({ quality: 92 }).toFile(side);
    expect((await analyse(side)).faces.length, 'the cut face is still detected').toBe(1);
    expect((await expectRefused(side, 'AVATAR_ERR_FACE_CUT_OFF')).message).toMatch(/the mouth of the face/);
  });
});

describe('bad files: a clear error, never a crash, nothing written', () => {
  const cases: [string, () => Promise<string>, string, RegExp][] = [
    ['not an image', async () => { const p = join(dir, 'notes.jpg'); await writeFile(p, 'these are not pixels\n'); return p; }, 'AVATAR_ERR_INPUT_NOT_IMAGE', /not a JPEG, PNG or WebP/],
    ['0 bytes', async () => { const p = join(dir, 'empty.png'); await writeFile(p, ''); return p; }, 'AVATAR_ERR_INPUT_NOT_IMAGE', /empty/],
    ['truncated', async () => { const p = join(dir, 'truncated.jpg'); const b = await readFile(GRACE); await writeFile(p, b.subarray(0, Math.floor(b.length * 0.4))); return p; }, 'AVATAR_ERR_INPUT_IMAGE_DAMAGED', /cannot be decoded/],
    ['unsupported format (TIFF)', async () => { const p = join(dir, 'grace.tif'); await sharp(GRACE).tiff().toFile(p); return p; }, 'AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED', /TIFF image; only JPEG, PNG and WebP/],
    ['unsupported format (GIF)', async () => { const p = join(dir, 'grace.gif'); await sharp(GRACE).gif().toFile(p); return p; }, 'AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED', /GIF image/],
    ['huge dimensions', async () => { const p = join(dir, 'huge.png'); await sharp({ create: { width: 8000, height: 6000, channels: 3, background: '#000' } }).png({ compressionLevel: 1 }).toFile(p); return p; }, 'AVATAR_ERR_INPUT_IMAGE_TOO_LARGE', /8000x6000 pixels \(48\.0 MP\), over the limit of 40 MP/],
  ];
  for (const [what, make, code, message] of cases) {
    it(what, async () => {
      const path = await make();
      const out = join(dir, `out-${code}.png`);
      try {
        await runFaceStage({ imagePath: path, prepare: { outputPath: out, size: 256 } }, engines, options);
        throw new Error('not refused');
      } catch (error) {
        expect(isAvatarError(error), String(error)).toBe(true);
        expect((error as { code: string }).code).toBe(code);
        expect((error as Error).message).toMatch(message);
        expect((error as Error).message).toContain(path);
      }
      expect(existsSync(out)).toBe(false);
      expect(existsSync(sidecarPathFor(out))).toBe(false);
    });
  }

  it('refused faces leave nothing at the output either', async () => {
    const out = join(dir, 'cat-avatar.png');
    await expect(runFaceStage({ imagePath: CAT, prepare: { outputPath: out, size: 256 } }, engines, options)).rejects.toMatchObject({ code: 'AVATAR_ERR_FACE_NONE' });
    expect((await readdir(dir)).filter((f) => f.startsWith('cat-avatar'))).toEqual([]);
  });
});
