import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PipelineCoordinator, PluginRegistry, ResourceManager, VoiceProfileStore, isAvatarError } from '@avatar/core';
import {
  PreparedAvatarCache, analysePhoto, createFacePlugin, disposeFaceEngines, loadFaceEngines, resolveFaceOptions, runFaceStage, sha256, sidecarPathFor,
} from '@avatar/face';
import type { AvatarSidecar, FaceEngines, ResolvedFaceOptions } from '@avatar/face';
import { DEFAULT_VOICE } from '@avatar/tts';
import { ROOT, tempDir } from './helpers/cli.js';

const GRACE = join(ROOT, 'tests/fixtures/grace_hopper.jpg');
const ASTRONAUT = join(ROOT, 'tests/fixtures/faces/astronaut_eileen_collins.jpg');
const CAT = join(ROOT, 'tests/fixtures/faces/chelsea_cat.jpg');

let engines: FaceEngines;
let options: ResolvedFaceOptions;
let dir: string;

/** The real detector, counting its calls: shows when a prepared avatar skips detection. */
function counting(e: FaceEngines): FaceEngines & { calls: () => number } {
  let n = 0;
  return {
    detector: { name: e.detector.name, detect: (img, o) => { n++; return e.detector.detect(img, o); }, dispose: async () => undefined },
    landmarks: e.landmarks,
    calls: () => n,
  };
}

beforeAll(async () => {
  options = resolveFaceOptions({}, {});
  engines = await loadFaceEngines(options);
  dir = await tempDir('avatar-prepare-');
});

afterAll(async () => {
  await disposeFaceEngines(engines);
});

describe('avatar preparation', () => {
  it('a tilted photo becomes a level, centred, preset-sized PNG whose sidecar landmarks match a fresh detection', async () => {
    const tilted = join(dir, 'grace-tilted.jpg');
    await sharp(GRACE).rotate(-15, { background: '#ffffff' }).jpeg({ quality: 95 }).toFile(tilted);
    const out = join(dir, 'avatar.png');
    const avatar = await runFaceStage({ imagePath: tilted, prepare: { outputPath: out, size: 512 } }, engines, options);
    expect(avatar.imagePath).toBe(out);
    expect(avatar).toMatchObject({ width: 512, height: 512 });
    const meta = await sharp(out).metadata();
    expect(meta).toMatchObject({ format: 'png', width: 512, height: 512 });

    const sidecar = JSON.parse(await readFile(sidecarPathFor(out), 'utf8')) as AvatarSidecar;
    expect(sidecar).toMatchObject({ format: 'avatar-face', version: 1, image: { file: 'avatar.png', width: 512, height: 512 } });
    expect(sidecar.source.path).toBe(tilted);
    expect(Math.abs(sidecar.source.pose.roll + 15 - (await analysePhoto(GRACE, engines)).report.faces[0]!.pose!.roll)).toBeLessThan(3);
    expect(sidecar.face.landmarks).toHaveLength(68);
    expect(Math.abs(sidecar.face.pose.roll)).toBeLessThan(1);
    expect(sidecar.face.models).toEqual({ detector: engines.detector.name, landmarks: engines.landmarks.name });

    // detect again on the written avatar: level, centred, and where the sidecar says
    const fresh = (await analysePhoto(out, engines)).report;
    expect(fresh.verdict.usable, JSON.stringify([fresh.verdict, fresh.faces.map((f) => f.box), sidecar.source.transform])).toBe(true);
    const face = fresh.faces[0]!;
    expect(Math.abs(face.pose!.roll)).toBeLessThan(2.5);
    const xs = face.landmarks!.map((p) => p.x);
    const centreX = (Math.min(...xs) + Math.max(...xs)) / 2;
    expect(Math.abs(centreX - 256)).toBeLessThan(512 * 0.05);
    const width = Math.max(...xs) - Math.min(...xs);
    const meanError = face.landmarks!.reduce((s, p, i) => s + Math.hypot(p.x - sidecar.face.landmarks[i]!.x, p.y - sidecar.face.landmarks[i]!.y), 0) / 68;
    expect(meanError / width).toBeLessThan(0.03);
  });

  it('a prepared avatar is not detected again; a replaced image is; a damaged sidecar is an error', async () => {
    const out = join(dir, 'astro.png');
    await runFaceStage({ imagePath: ASTRONAUT, prepare: { outputPath: out, size: 256 } }, engines, options);
    const counted = counting(engines);
    const again = await runFaceStage({ imagePath: out, prepare: { outputPath: join(dir, 'unused.png'), size: 256, reuse: true } }, counted, options);
    expect(counted.calls()).toBe(0);
    expect(again.imagePath).toBe(out);
    expect(again.face.sidecarPath).toBe(sidecarPathFor(out));
    expect(existsSync(join(dir, 'unused.png'))).toBe(false);

    // same pixels re-encoded: the checksum no longer matches, so the face is detected afresh
    await sharp(out).png({ compressionLevel: 9 }).toFile(join(dir, 'astro2.png'));
    await copyFile(sidecarPathFor(out), sidecarPathFor(join(dir, 'astro2.png')));
    await runFaceStage({ imagePath: join(dir, 'astro2.png') }, counted, options);
    expect(counted.calls()).toBe(1);

    await writeFile(sidecarPathFor(out), '{ "format": "avatar-face", "version": 1, ');
    await expect(runFaceStage({ imagePath: out }, counted, options)).rejects.toMatchObject({ code: 'AVATAR_ERR_FACE_SIDECAR_INVALID' });
  });

  it('a prepared avatar used as it is is judged from its sidecar and header, its pixels not decoded; prepared again, they are', async () => {
    const out = join(dir, 'header-only.png');
    await runFaceStage({ imagePath: GRACE, prepare: { outputPath: out, size: 256 } }, engines, options);
    // its pixel data cut short, and the sidecar's checksum made to name the cut bytes: only a decode can tell
    const bytes = await readFile(out);
    const cut = join(dir, 'cut.png');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const sidecar = JSON.parse(await readFile(sidecarPathFor(out), 'utf8')) as AvatarSidecar;
    sidecar.image.sha256 = sha256(new Uint8Array(await readFile(cut)));
    await writeFile(sidecarPathFor(cut), JSON.stringify(sidecar));
    const counted = counting(engines);
    const used = await runFaceStage({ imagePath: cut, prepare: { outputPath: join(dir, 'cut-unused.png'), size: 256, reuse: true } }, counted, options);
    expect(used).toMatchObject({ imagePath: cut, width: 256, height: 256 });
    expect(counted.calls()).toBe(0);
    const again = await runFaceStage({ imagePath: cut, prepare: { outputPath: join(dir, 'cut-128.png'), size: 128 } }, counted, options).catch((e: unknown) => e);
    expect(isAvatarError(again, 'AVATAR_ERR_INPUT_IMAGE_DAMAGED'), String(again)).toBe(true);
    expect(existsSync(join(dir, 'cut-128.png'))).toBe(false);
  });

  it('a prepared avatar is still judged: tighter limits refuse it without detecting', async () => {
    const out = join(dir, 'strict.png');
    await runFaceStage({ imagePath: GRACE, prepare: { outputPath: out, size: 256 } }, engines, options);
    const strict = resolveFaceOptions({ thresholds: { minFaceSize: 200 } }, {});
    const error = await runFaceStage({ imagePath: out }, counting(engines), strict).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_FACE_TOO_SMALL')).toBe(true);
    expect((error as Error).message).toMatch(/is \d+ px wide, under the minimum of 200 px/);
  });

  it('a photo prepared before comes from the cache, byte for byte, without detecting; another size, other options or a damaged entry detect again', async () => {
    const cache = new PreparedAvatarCache(join(dir, 'cache'), options);
    const counted = counting(engines);
    const run = async (name: string, photo: string, size: number, using = cache) => {
      await mkdir(join(dir, name), { recursive: true });
      return runFaceStage({ imagePath: photo, prepare: { outputPath: join(dir, name, 'avatar.png'), size, reuse: true } }, counted, options, undefined, using);
    };
    const first = await run('c1', GRACE, 256);
    expect(counted.calls()).toBe(1);
    // the same bytes under another name
    const copy = join(dir, 'grace-copy.jpg');
    await copyFile(GRACE, copy);
    const second = await run('c2', copy, 256);
    expect(counted.calls()).toBe(1);
    expect(second.imagePath).toBe(join(dir, 'c2', 'avatar.png'));
    expect((await readFile(second.imagePath)).equals(await readFile(first.imagePath))).toBe(true);
    expect(second.face.landmarks).toEqual(first.face.landmarks);
    expect(second.face.sidecarPath).toBe(sidecarPathFor(second.imagePath));
    // its sidecar names this run's photo and file
    const restored = JSON.parse(await readFile(sidecarPathFor(second.imagePath), 'utf8')) as AvatarSidecar;
    expect(restored.source.path).toBe(copy);
    expect(restored.image.file).toBe('avatar.png');
    // `prepare me.jpg --output me.png` leaves me.face.json, which is also me.jpg's sidecar name: it is
    // another image's, so me.jpg is still looked up
    await mkdir(join(dir, 'me'), { recursive: true });
    await copyFile(GRACE, join(dir, 'me', 'me.jpg'));
    await runFaceStage({ imagePath: join(dir, 'me', 'me.jpg'), prepare: { outputPath: join(dir, 'me', 'me.png'), size: 256 } }, counted, options, undefined, cache);
    await runFaceStage({ imagePath: join(dir, 'me', 'me.jpg'), prepare: { outputPath: join(dir, 'me', 'again.png'), size: 256 } }, counted, options, undefined, cache);
    expect(counted.calls()).toBe(1);
    // another size, other thresholds: prepared afresh
    await run('c3', GRACE, 128);
    expect(counted.calls()).toBe(2);
    await run('c4', GRACE, 256, new PreparedAvatarCache(join(dir, 'cache'), resolveFaceOptions({ thresholds: { maxYaw: 29 } }, {})));
    expect(counted.calls()).toBe(3);
    // a damaged entry is a miss, then made whole again
    const entries = (await readdir(join(dir, 'cache'))).filter((n) => n.endsWith('.face.json'));
    expect(entries).toHaveLength(3);
    for (const name of entries) await writeFile(join(dir, 'cache', name), '{ "format": ');
    const repaired = await run('c5', GRACE, 256);
    expect(counted.calls()).toBe(4);
    expect((await readFile(repaired.imagePath)).equals(await readFile(first.imagePath))).toBe(true);
    await run('c6', GRACE, 256);
    expect(counted.calls()).toBe(4);
    // no partial files anywhere
    expect((await readdir(join(dir, 'cache'))).filter((n) => n.endsWith('.partial'))).toEqual([]);
    expect((await readdir(join(dir, 'c5'))).sort()).toEqual(['avatar.face.json', 'avatar.png']);
  });

  it('the cache keeps the most recently used entries up to its limit', async () => {
    const folder = join(dir, 'small-cache');
    const cache = new PreparedAvatarCache(folder, options, 2);
    // three photos: the astronaut re-encoded is a third
    const third = join(dir, 'astronaut-q80.jpg');
    await sharp(ASTRONAUT).jpeg({ quality: 80 }).toFile(third);
    const photos = [GRACE, ASTRONAUT, third];
    const counted = counting(engines);
    const sidecars = async (): Promise<string[]> => (await readdir(folder)).filter((n) => n.endsWith('.face.json'));
    /** prepares photo `k` and names its entry */
    const prepare = async (k: number, step: number): Promise<string | undefined> => {
      const before: string[] = await sidecars().catch(() => []);
      await mkdir(join(dir, `s${step}`), { recursive: true });
      await runFaceStage({ imagePath: photos[k]!, prepare: { outputPath: join(dir, `s${step}`, 'avatar.png'), size: 128 } }, counted, options, undefined, cache);
      return (await sidecars()).find((n) => !before.includes(n));
    };
    // (times set by hand: file times may be coarse; the older entry is the one last used longer ago)
    const usedMinutesAgo = (name: string, minutes: number) => utimes(join(folder, name), new Date(Date.now() - minutes * 60_000), new Date(Date.now() - minutes * 60_000));
    const grace = await prepare(0, 0);
    const astronaut = await prepare(1, 1);
    await usedMinutesAgo(grace!, 10);
    await usedMinutesAgo(astronaut!, 5);
    // grace used again: now the most recent, so the astronaut goes when a third comes
    await prepare(0, 2);
    await prepare(2, 3);
    expect(counted.calls()).toBe(3);
    expect(await sidecars()).toHaveLength(2);
    expect(await sidecars()).toContain(grace);
    await prepare(0, 4);
    expect(counted.calls()).toBe(3);
    await prepare(1, 5);
    expect(counted.calls()).toBe(4);
  });

  it('detection + landmarks on a 1024x1024 JPEG, decode included, after warm-up', async () => {
    const big = join(dir, 'astronaut-1024.jpg');
    await sharp(ASTRONAUT).resize(1024, 1024).jpeg({ quality: 90 }).toFile(big);
    await analysePhoto(big, engines);
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const { report } = await analysePhoto(big, engines);
      times.push(performance.now() - t0);
      expect(report.verdict.usable).toBe(true);
    }
    times.sort((a, b) => a - b);
    const median = times[2]!;
    console.log(`face analysis of a 1024x1024 JPEG: median ${median.toFixed(1)} ms (${times.map((t) => t.toFixed(0)).join(', ')})`);
    // speed is measured by scripts/bench-face.mjs, not asserted here
  });
});

describe('through the coordinator', () => {
  it('prepareAvatar runs the onnx-face plugin through the ResourceManager; a refused photo leaves nothing', async () => {
    const registry = new PluginRegistry();
    registry.register(createFacePlugin(), 'test');
    const storage = await tempDir('avatar-prepare-storage-');
    const coordinator = new PipelineCoordinator({
      registry, resources: new ResourceManager({}), voices: new VoiceProfileStore(storage), storageDir: storage, defaultVoice: DEFAULT_VOICE,
    });
    const out = join(dir, 'coord.png');
    const ok = await coordinator.prepareAvatar({ imagePath: GRACE, outputPath: out, config: { videoQuality: 'low' } });
    expect(ok.success, JSON.stringify(ok.error)).toBe(true);
    expect(ok.stagesCompleted).toEqual(['validate_avatar']);
    expect(ok.avatar).toMatchObject({ imagePath: out, width: 256, height: 256 });
    expect((await sharp(out).metadata()).width).toBe(256);

    // kept in the storage folder for the next run with this photo (not with cache=false)
    expect((await readdir(join(storage, 'face', 'prepared'))).filter((n) => n.endsWith('.png'))).toHaveLength(1);
    const again = await coordinator.prepareAvatar({ imagePath: GRACE, outputPath: join(dir, 'coord-again.png'), config: { videoQuality: 'low' } });
    expect((await readFile(join(dir, 'coord-again.png'))).equals(await readFile(out))).toBe(true);
    expect(again.avatar?.face.landmarks).toEqual(ok.avatar?.face.landmarks);
    await coordinator.prepareAvatar({ imagePath: ASTRONAUT, outputPath: join(dir, 'coord-uncached.png'), config: { videoQuality: 'low', engineOptions: { face: { cache: false } } } });
    expect((await readdir(join(storage, 'face', 'prepared'))).filter((n) => n.endsWith('.png'))).toHaveLength(1);

    const refused = join(dir, 'cat.png');
    const bad = await coordinator.prepareAvatar({ imagePath: CAT, outputPath: refused });
    expect(bad.success).toBe(false);
    expect(bad.error?.code).toBe('AVATAR_ERR_FACE_NONE');
    expect(existsSync(refused) || existsSync(sidecarPathFor(refused))).toBe(false);
    expect((await readdir(join(storage, 'face', 'prepared'))).filter((n) => n.endsWith('.png'))).toHaveLength(1);

    const wrongExt = await coordinator.prepareAvatar({ imagePath: GRACE, outputPath: join(dir, 'avatar.jpg') });
    expect(wrongExt.error?.code).toBe('AVATAR_ERR_OUTPUT_EXTENSION');
  });
});
