import { readFile, rm } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { AvatarError, PLUGIN_API_VERSION, checkWritableTarget } from '@avatar/core';
import type { Avatar, AvatarFace, EngineLicense, FaceAssessment, FaceInput, HeadPose, LoadedStageOf, ModelLicense, PluginCheck, PluginOptionsSchema, StagePlugin } from '@avatar/core';
import type { AnalyseOptions, FaceEngines, PhotoReport } from './analyse.js';
import { analyseImage } from './analyse.js';
import { PreparedAvatarCache } from './cache.js';
import type { CacheKey } from './cache.js';
import { decodeImage, readImageHeader } from './image.js';
import { listModelManifests, loadDetector, loadLandmarks } from './models/index.js';
import { loadOnnxRuntime } from './models/session.js';
import { loadSharp } from './sharp.js';
import type { Point, RgbImage } from './models/types.js';
import type { AvatarSidecar } from './prepare.js';
import { readSidecar, sha256, sidecarPathFor, writePreparedAvatar } from './prepare.js';
import type { FaceThresholds, Verdict } from './validate.js';
import { judgeFaces, resolveThresholds, verdictError } from './validate.js';

export type DetectorChoice = 'tiny' | 'ssd';
export type LandmarkChoice = 'tiny' | 'full';

export interface FacePluginOptions {
  /** default: $AVATAR_FACE_DETECTOR, else 'tiny' (fast; 'ssd' finds smaller faces but also takes some animals for faces) */
  detector?: DetectorChoice;
  /** default: $AVATAR_FACE_LANDMARKS, else 'full' */
  landmarks?: LandmarkChoice;
  /** where the converted ONNX models are; default: the models package's own folder */
  modelsDir?: string;
  thresholds?: Partial<FaceThresholds>;
  /** refuse photos over this many megapixels; default $AVATAR_FACE_MAX_MEGAPIXELS, else 40 */
  maxMegapixels?: number;
  /** keep prepared avatars between runs in the storage folder, keyed by the photo (default true) */
  cache?: boolean;
}

function choice<T extends string>(name: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined || value === '') return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: name, problem: 'is not a known model', value, expected: `Use one of: ${allowed.join(', ')}.` });
}

export interface ResolvedFaceOptions {
  detector: DetectorChoice;
  landmarks: LandmarkChoice;
  modelsDir?: string;
  thresholds: FaceThresholds;
  maxMegapixels?: number;
  cache: boolean;
}

/** Options, then the environment, then the defaults. */
export function resolveFaceOptions(options: FacePluginOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedFaceOptions {
  const mp = options.maxMegapixels ?? (env.AVATAR_FACE_MAX_MEGAPIXELS ? Number(env.AVATAR_FACE_MAX_MEGAPIXELS) : undefined);
  if (mp !== undefined && (!Number.isFinite(mp) || mp <= 0)) {
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'AVATAR_FACE_MAX_MEGAPIXELS', problem: 'must be a positive number', value: String(mp), expected: 'Give megapixels, e.g. 40.' });
  }
  return {
    detector: options.detector ?? choice('AVATAR_FACE_DETECTOR', env.AVATAR_FACE_DETECTOR, ['tiny', 'ssd'] as const, 'tiny'),
    landmarks: options.landmarks ?? choice('AVATAR_FACE_LANDMARKS', env.AVATAR_FACE_LANDMARKS, ['tiny', 'full'] as const, 'full'),
    ...(options.modelsDir !== undefined && { modelsDir: options.modelsDir }),
    thresholds: resolveThresholds(options.thresholds ?? {}, env),
    ...(mp !== undefined && { maxMegapixels: mp }),
    cache: options.cache ?? true,
  };
}

/** Creates the ONNX sessions once; `dispose` releases both. */
export async function loadFaceEngines(options: ResolvedFaceOptions): Promise<FaceEngines> {
  const where = options.modelsDir !== undefined ? { modelsDir: options.modelsDir } : {};
  const detector = await loadDetector(options.detector, where);
  try {
    const landmarks = await loadLandmarks(options.landmarks, where);
    return { detector, landmarks };
  } catch (error) {
    await detector.dispose();
    throw error;
  }
}

export async function disposeFaceEngines(engines: FaceEngines): Promise<void> {
  await Promise.allSettled([engines.detector.dispose(), engines.landmarks.dispose()]);
}

/** What the check found: for a raw photo the full analysis, for a prepared avatar the stored face. */
export interface FaceCheck {
  path: string;
  /** the details came from a prepared avatar's sidecar, not from detection */
  prepared: boolean;
  sidecarPath?: string;
  report?: PhotoReport;
  face?: AvatarFace;
  width: number;
  height: number;
  verdict: Verdict;
}

interface CheckedPhoto {
  check: FaceCheck;
  /** for preparing from a raw photo or a prepared avatar */
  source: {
    /** its pixels, decoded when asked for (a prepared avatar used as it is never needs them) */
    image: () => Promise<RgbImage>; bytes: Uint8Array; landmarks: readonly Point[]; score: number; pose: HeadPose; models: { detector: string; landmarks: string };
  } | null;
}

/** A photo's bytes and its own sidecar (null: none), as the cache's look-up read them. */
interface PhotoRead {
  bytes: Uint8Array;
  stored: Awaited<ReturnType<typeof readSidecar>>;
}

/**
 * Checks one photo or prepared avatar against the lip-sync rules. A prepared avatar (an image with a
 * matching sidecar) is not detected again: its stored face is judged with the same rules.
 */
export async function checkFace(path: string, engines: FaceEngines | (() => Promise<FaceEngines>), options: ResolvedFaceOptions, input = 'avatar image', read?: PhotoRead): Promise<CheckedPhoto> {
  const absolute = resolve(path);
  const header = await readImageHeader(absolute, { input, ...(options.maxMegapixels !== undefined && { maxMegapixels: options.maxMegapixels }) });
  const bytes = read?.bytes ?? new Uint8Array(await readFile(absolute));
  const stored = read ? read.stored : await readSidecar(absolute, bytes, input);
  // a prepared avatar's bytes are those its sidecar's checksum names, written whole by the prepare step:
  // it is judged from the sidecar and its header, its pixels decoded only if it is prepared again
  if (stored) return fromSidecar(absolute, stored.sidecar, stored.path, header, async () => (await decodeImage(header)).image, bytes, options, input);
  const loaded = await decodeImage(header);
  const analyse: AnalyseOptions = { input, thresholds: options.thresholds };
  const report = await analyseImage(loaded, absolute, typeof engines === 'function' ? await engines() : engines, analyse);
  const main = report.faces[0];
  const usableSource = main?.landmarks && main.pose
    ? { image: async () => loaded.image, bytes, landmarks: main.landmarks, score: main.score, pose: { yaw: main.pose.yaw, pitch: main.pose.pitch, roll: main.pose.roll }, models: report.models }
    : null;
  return { check: { path: absolute, prepared: false, report, width: report.width, height: report.height, verdict: report.verdict }, source: usableSource };
}

function fromSidecar(
  path: string, sidecar: AvatarSidecar, sidecarPath: string, size: { width: number; height: number }, image: () => Promise<RgbImage>,
  bytes: Uint8Array, options: ResolvedFaceOptions, input: string,
): CheckedPhoto {
  const face: AvatarFace = { ...sidecar.face, sidecarPath };
  const verdict = judgeFaces([{ box: face.box, score: face.score, pose: face.pose, quality: face.quality }], options.thresholds, input, path);
  return {
    check: { path, prepared: true, sidecarPath, face, width: size.width, height: size.height, verdict },
    source: { image, bytes, landmarks: face.landmarks, score: face.score, pose: face.pose, models: face.models },
  };
}

/** A check as the stage contract reports it (`avatar avatars check`): the faces, the verdict, and the full report in details. */
export function toAssessment(check: FaceCheck): FaceAssessment {
  const faces = check.report?.faces ?? (check.face ? [check.face] : []);
  const models = check.report?.models ?? check.face?.models;
  return {
    path: check.path,
    width: check.width,
    height: check.height,
    prepared: check.prepared,
    ...(check.sidecarPath !== undefined && { sidecarPath: check.sidecarPath }),
    ...(models && { models }),
    faces: faces.map((f) => ({
      box: f.box, score: f.score,
      ...(f.landmarks && { landmarks: f.landmarks }), ...(f.pose && { pose: { yaw: f.pose.yaw, pitch: f.pose.pitch, roll: f.pose.roll } }), ...(f.quality && { quality: f.quality }),
    })),
    verdict: { usable: check.verdict.usable, reasons: check.verdict.reasons, warnings: check.verdict.warnings },
    ...(check.report && { details: JSON.parse(JSON.stringify(check.report)) as Record<string, unknown> }),
  };
}

/** The face of a checked photo in the photo's own coordinates. */
function faceOf(check: FaceCheck): AvatarFace {
  if (check.face) return check.face;
  const main = check.report?.faces[0];
  if (!main?.landmarks || !main.pose || !main.quality || !check.report) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'a usable face without landmarks' });
  return {
    box: main.box,
    score: main.score,
    landmarks: main.landmarks,
    pose: { yaw: main.pose.yaw, pitch: main.pose.pitch, roll: main.pose.roll },
    quality: main.quality,
    models: check.report.models,
  };
}

/**
 * The face stage: judges the photo (refusing with the first broken rule) and, when asked, writes the
 * prepared avatar and returns it. A prepared avatar of the wanted size is used as it is.
 */
export async function runFaceStage(input: FaceInput, engines: FaceEngines | (() => Promise<FaceEngines>), options: ResolvedFaceOptions, signal?: AbortSignal, cache?: PreparedAvatarCache): Promise<Avatar> {
  signal?.throwIfAborted();
  const prepare = input.prepare;
  // a photo prepared before at this size, with these options and models: its avatar, not detected again
  const kept = prepare && cache ? await fromCache(input.imagePath, prepare, cache) : undefined;
  if (kept?.avatar) {
    if (signal?.aborted) {
      // cancelled while the files were copied: a cancelled run leaves none
      await Promise.all([rm(kept.avatar.imagePath, { force: true }), rm(sidecarPathFor(kept.avatar.imagePath), { force: true })]);
      signal.throwIfAborted();
    }
    return kept.avatar;
  }
  // (the photo as the cache's look-up read it, where it did: read and checked once)
  const { check, source } = await checkFace(input.imagePath, engines, options, 'avatar image', kept?.read);
  signal?.throwIfAborted();
  const refusal = verdictError(check.verdict);
  if (refusal) throw refusal;
  const reusable = check.prepared && check.width === prepare?.size && check.height === prepare.size && (prepare.reuse === true || resolve(prepare.outputPath) === check.path);
  if (!prepare || reusable) {
    return { imagePath: check.path, width: check.width, height: check.height, face: faceOf(check) };
  }
  if (!source) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'a usable face without landmarks' });
  const outputPath = resolve(prepare.outputPath);
  const written = await writePreparedAvatar({
    outputPath,
    size: prepare.size,
    sourcePath: check.path,
    source: await source.image(),
    sourceSha256: sha256(source.bytes),
    landmarks: source.landmarks,
    score: source.score,
    sourcePose: source.pose,
    models: source.models,
  });
  if (signal?.aborted) {
    // cancelled while the files were written: a cancelled run leaves none
    await Promise.all([rm(outputPath, { force: true }), rm(written.sidecarPath, { force: true })]);
    signal.throwIfAborted();
  }
  if (kept?.found) await cache?.keep(kept.found, outputPath);
  return { imagePath: outputPath, width: prepare.size, height: prepare.size, face: written.face };
}

/**
 * The cache's prepared avatar for a raw photo, copied to where the stage prepares it; else the key to
 * keep the avatar under once it is made. A photo that is itself a prepared avatar, one that cannot be
 * read, or an output the stage would refuse is not looked up (the stage's own path says why).
 */
async function fromCache(imagePath: string, prepare: NonNullable<FaceInput['prepare']>, cache: PreparedAvatarCache): Promise<{ avatar?: Avatar; found?: CacheKey; read?: PhotoRead }> {
  const photoPath = resolve(imagePath);
  const outputPath = resolve(prepare.outputPath);
  if (outputPath === photoPath || extname(outputPath).toLowerCase() !== '.png') return {};
  const photo = await readFile(photoPath).then((b) => new Uint8Array(b), () => undefined);
  if (!photo) return {};
  // (a sidecar of another image beside the photo, as `prepare me.jpg --output me.png` leaves, does not count;
  // one that cannot be read is left for the stage's own check to name)
  let stored: PhotoRead['stored'];
  try {
    stored = await readSidecar(photoPath, photo);
  } catch {
    return {};
  }
  const read: PhotoRead = { bytes: photo, stored };
  if (stored !== null) return { read };
  const found = await cache.keyFor(photo, prepare.size);
  if (!found) return { read };
  try {
    await checkWritableTarget(outputPath, 'avatar output');
  } catch {
    return { read };
  }
  const sidecar = await cache.restore(found, outputPath, photoPath);
  if (!sidecar) return { found, read };
  // (judged already: the photo passed these very thresholds, part of the key, before it was kept; the
  // crop itself is not judged again, as a small preset's crop may fall under a size rule the photo met)
  const { width, height } = sidecar.image;
  if (width === prepare.size && height === prepare.size) {
    return { avatar: { imagePath: outputPath, width, height, face: { ...sidecar.face, sidecarPath: sidecarPathFor(outputPath) } } };
  }
  // not of the size asked for: prepared again, which replaces it
  await Promise.all([rm(outputPath, { force: true }), rm(sidecarPathFor(outputPath), { force: true })]);
  return { found, read };
}

const number = (description: string, minimum: number, maximum: number): { type: 'number'; description: string; minimum: number; maximum: number } =>
  ({ type: 'number', description, minimum, maximum });

/**
 * The options users set for this engine (`--engine-option face.minFaceSize=48`, config
 * `engineOptions.face`). Unset ones fall back to the AVATAR_FACE_* environment, then the defaults
 * (docs/face.md), so they carry no schema defaults.
 */
export const FACE_OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    detector: { type: 'string', enum: ['tiny', 'ssd'], description: 'face detector: tiny (default, fast) or ssd (finds smaller faces)' },
    landmarks: { type: 'string', enum: ['tiny', 'full'], description: 'landmark model: full (default) or tiny' },
    minFaceSize: number('smallest face width accepted, px (default 64)', 1, 4096),
    maxYaw: number('largest |yaw| accepted, degrees (default 30)', 0, 90),
    maxPitch: number('largest |pitch| accepted, degrees (default 25)', 0, 90),
    dominance: number('with several faces, how many times wider the largest must be (default 1.5)', 1, 100),
    minScore: number('detections below this confidence are ignored (default 0.5)', 0, 1),
    darkLuma: number('warn below this mean face luminance, 0..255 (default 40)', 0, 255),
    maxBrightFraction: number('warn when this share of the face is blown out (default 0.25)', 0, 1),
    minSharpnessRatio: number('warn when the face is this much blurrier than the image (default 0.25)', 0, 100),
    maxMegapixels: { type: 'number', exclusiveMinimum: 0, description: 'refuse photos over this many megapixels (default 40)' },
    cache: { type: 'boolean', description: 'keep prepared avatars between runs in the storage folder, keyed by the photo, so a photo seen before is not detected again (default true)' },
  },
} as const satisfies PluginOptionsSchema;

const THRESHOLD_KEYS = ['minFaceSize', 'maxYaw', 'maxPitch', 'dominance', 'minScore', 'darkLuma', 'maxBrightFraction', 'minSharpnessRatio'] as const;

/** Engine options (flat, as users set them) over the options the plugin was created with. */
export function faceOptionsFrom(given: Readonly<Record<string, unknown>>, base: FacePluginOptions = {}): FacePluginOptions {
  const thresholds: Partial<FaceThresholds> = { ...base.thresholds };
  for (const key of THRESHOLD_KEYS) if (typeof given[key] === 'number') thresholds[key] = given[key];
  return {
    ...base,
    ...(typeof given.detector === 'string' && { detector: given.detector as DetectorChoice }),
    ...(typeof given.landmarks === 'string' && { landmarks: given.landmarks as LandmarkChoice }),
    ...(typeof given.maxMegapixels === 'number' && { maxMegapixels: given.maxMegapixels }),
    ...(typeof given.cache === 'boolean' && { cache: given.cache }),
    thresholds,
  };
}

const FACE_API = '@vladmandic/face-api (converted to ONNX by models/build.mjs)';

/** The two models a face run loads with these options, and their terms (models/README.md). */
export function faceLicense(options: ResolvedFaceOptions): EngineLicense {
  const detector: ModelLicense = options.detector === 'ssd'
    ? { name: 'ssd_mobilenetv1', license: 'MIT', commercialUse: false, source: FACE_API, note: 'trained on WIDER FACE, whose images are for research use only' }
    : { name: 'tiny_face_detector', license: 'MIT', commercialUse: true, source: FACE_API };
  const landmarks: ModelLicense = { name: options.landmarks === 'tiny' ? 'face_landmark_68_tiny' : 'face_landmark_68', license: 'MIT', commercialUse: true, source: FACE_API };
  return { code: 'MIT (runs onnxruntime-node: MIT)', commercialUse: true, models: [detector, landmarks] };
}

/** Model memory: both sessions with their weights and buffers, measured with the ssd detector and the full landmark net. */
export const FACE_RAM_MB = 160;

export function createFacePlugin(options: FacePluginOptions = {}): StagePlugin<'face'> {
  return {
    name: 'onnx-face',
    stage: 'face',
    apiVersion: PLUGIN_API_VERSION,
    description: 'ONNX face detection and 68-point landmarks (converted face-api models): photo checks for lip-sync, head pose, avatar preparation',
    resources: { device: 'cpu', ramMB: FACE_RAM_MB },
    options: FACE_OPTIONS_SCHEMA,
    license: (given) => faceLicense(resolveFaceOptions(faceOptionsFrom(given, options))),
    // the runtime's and sharp's native libraries load while speech is synthesised; the models load with the stage
    prewarm: async () => {
      await Promise.all([loadOnnxRuntime(), loadSharp()]);
    },
    async check(): Promise<PluginCheck> {
      try {
        const resolved = resolveFaceOptions(options);
        const engines = await loadFaceEngines(resolved);
        const detail = `detector ${engines.detector.name}, landmarks ${engines.landmarks.name}`;
        await disposeFaceEngines(engines);
        const models = listModelManifests({ verify: true }).map((m) => ({
          name: m.name, status: m.status, path: m.path, sha256: m.sha256, source: m.source, license: m.license,
        }));
        return { ok: true, detail, models };
      } catch (error) {
        return { ok: false, detail: error instanceof Error ? error.message : String(error), install: 'npm run bootstrap (converts the face models)' };
      }
    },
    async load(ctx): Promise<LoadedStageOf<'face'>> {
      const resolved = resolveFaceOptions(faceOptionsFrom(ctx.options, options));
      // The models' sessions are made when a photo is first detected: a prepared avatar is judged from
      // its stored face and never needs them (their making is most of a prepared avatar's face stage,
      // 0.1-0.25 s). A model that cannot be loaded then fails that run, as it failed the load before.
      let loading: Promise<FaceEngines> | undefined;
      const engines = (): Promise<FaceEngines> => {
        loading ??= loadFaceEngines(resolved);
        // (a load that failed is tried again by the next run)
        loading.catch(() => { loading = undefined; });
        return loading;
      };
      const cache = resolved.cache ? new PreparedAvatarCache(join(ctx.storageDir, 'face', 'prepared'), resolved) : undefined;
      return {
        assess: async (imagePath, runCtx) => {
          runCtx.signal.throwIfAborted();
          return toAssessment((await checkFace(imagePath, engines, resolved)).check);
        },
        run: async (input, ctx) => {
          ctx.progress(0.1, 'detecting the face');
          const avatar = await runFaceStage(input, engines, resolved, ctx.signal, cache);
          ctx.progress(1);
          return avatar;
        },
        unload: async () => {
          const made = loading;
          loading = undefined;
          if (made) await made.then(disposeFaceEngines, () => undefined);
        },
      };
    },
  };
}

export const onnxFacePlugin: StagePlugin<'face'> = createFacePlugin();
