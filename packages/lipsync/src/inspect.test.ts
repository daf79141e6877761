import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { execFile, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvatarError, QUALITY_PRESETS, isAvatarError, silentLogger } from '@avatar/core';
import type { EncodeSettings, FrameStream, RunContext, Speech } from '@avatar/core';
import { plugins as encodePlugins } from '@avatar/encode';
import { encodeWav, plugins as ttsPlugins } from '@avatar/tts';
import { FrameEnergy, PgmFrames, inspectVideo, probe, probeMp4 } from './inspect.js';
import { toDb } from './dsp.js';
import { computeMouthTrack, lipGap } from './track.js';
import type { Box, InspectionReport } from './inspect.js';

const W = 192;
const H = 192;
const FPS = 25;
const FACE: Box = { x: 40, y: 24, width: 112, height: 150 };
const MOUTH: Box = { x: 68, y: 118, width: 56, height: 30 };

let dir = '';
let wavPath = '';
let frameCount = 0;
/** 0..1 mouth opening per frame, from the speech's loudness */
let opening: number[] = [];
const reports = new Map<string, InspectionReport>();

function ctx(): RunContext {
  return { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: dir };
}

async function speak(text: string, name: string): Promise<Speech> {
  const plugin = ttsPlugins.find((p) => p.name === 'flite');
  if (!plugin || plugin.stage !== 'tts') throw new Error('no flite plugin');
  const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run({ text, voice: { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(dir, name), maxSeconds: 60 }, ctx());
  } finally {
    await loaded.unload();
  }
}

/** Deterministic pseudo-random sequence in 0..1. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Variant {
  /** opening of the synthetic mouth in frame i */
  open: (i: number) => number;
  /** a square moving through the top-left border band */
  borderMotion?: boolean;
  /** blur the mouth while it is open (a renderer that loses detail when speaking) */
  blurWhenOpen?: boolean;
}

/**
 * Frames of a static textured picture with a synthetic "mouth": a dark gap between two lip bands
 * inside MOUTH whose height follows `open`. Only the inspector is under test here, so a moving patch
 * stands in for a rendered face.
 */
function frames(variant: Variant): FrameStream {
  const background = new Uint8Array(W * H);
  const r = rng(11);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) background[y * W + x] = 90 + Math.round(60 * Math.sin(x / 7) * Math.cos(y / 9)) + Math.round(r() * 20);
  for (let y = FACE.y; y < FACE.y + FACE.height; y++) {
    for (let x = FACE.x; x < FACE.x + FACE.width; x++) {
      const dx = (x - FACE.x - FACE.width / 2) / (FACE.width / 2);
      const dy = (y - FACE.y - FACE.height / 2) / (FACE.height / 2);
      if (dx * dx + dy * dy < 1) background[y * W + x] = 170 + ((x * 3 + y * 5) % 13);
    }
  }
  async function* generate(): AsyncGenerator<Uint8Array> {
    const grey = new Uint8Array(W * H);
    const rgba = new Uint8Array(W * H * 4);
    for (let i = 0; i < frameCount; i++) {
      grey.set(background);
      const o = Math.max(0, Math.min(1, variant.open(i)));
      const cy = MOUTH.y + MOUTH.height / 2;
      const gap = 1 + o * 20;
      for (let y = MOUTH.y + 2; y < MOUTH.y + MOUTH.height - 2; y++) {
        for (let x = MOUTH.x + 4; x < MOUTH.x + MOUTH.width - 4; x++) {
          const d = Math.abs(y + 0.5 - cy);
          grey[y * W + x] = d < gap / 2 ? 25 : d < gap / 2 + 5 ? 120 : (grey[y * W + x] as number);
        }
      }
      if (variant.blurWhenOpen && o > 0.15) {
        const copy = grey.slice();
        for (let y = MOUTH.y + 2; y < MOUTH.y + MOUTH.height - 2; y++) {
          for (let x = MOUTH.x + 2; x < MOUTH.x + MOUTH.width - 2; x++) {
            let s = 0;
            for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) s += copy[(y + dy) * W + x + dx] as number;
            grey[y * W + x] = Math.round(s / 25);
          }
        }
      }
      if (variant.borderMotion) {
        const bx = (i * 4) % (W - 16);
        for (let y = 0; y < 14; y++) for (let x = bx; x < bx + 16; x++) grey[y * W + x] = 255;
      }
      for (let p = 0; p < W * H; p++) {
        const v = grey[p] as number;
        rgba[p * 4] = v; rgba[p * 4 + 1] = v; rgba[p * 4 + 2] = v; rgba[p * 4 + 3] = 255;
      }
      yield rgba;
    }
  }
  return { width: W, height: H, fps: FPS, frameCount, frames: generate() };
}

async function build(name: string, variant: Variant): Promise<string> {
  const plugin = encodePlugins.find((p) => p.name === 'ffmpeg');
  if (!plugin || plugin.stage !== 'encode') throw new Error('no ffmpeg encode plugin');
  const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  const settings: EncodeSettings = { format: 'mp4', ...QUALITY_PRESETS.low, fps: FPS };
  const outputPath = join(dir, `${name}.mp4`);
  try {
    await loaded.run({ kind: 'frames', frames: frames(variant), audioPath: wavPath, outputPath, settings }, ctx());
  } finally {
    await loaded.unload();
  }
  return outputPath;
}

async function report(name: string, variant: Variant): Promise<InspectionReport> {
  const path = await build(name, variant);
  const r = await inspectVideo(path, { mouthBox: MOUTH, faceBox: FACE });
  reports.set(name, r);
  return r;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-inspect-'));
  // real speech with a one-second pause in the middle
  const [a, b] = await Promise.all([
    speak('Bob moves to the blue moon, and maybe five people will follow.', 'a.wav'),
    speak('We shall see what happens when they arrive.', 'b.wav'),
  ]);
  const gap = new Int16Array(a.sampleRate);
  const pcm = new Int16Array(a.pcm.length + gap.length + b.pcm.length);
  pcm.set(a.pcm, 0);
  pcm.set(b.pcm, a.pcm.length + gap.length);
  wavPath = join(dir, 'speech.wav');
  await writeFile(wavPath, encodeWav(pcm, a.sampleRate));
  frameCount = Math.ceil((pcm.length / a.sampleRate) * FPS);
  // the mouth opens with the loudness of each frame's audio (dB above -50, over 35 dB)
  opening = Array.from({ length: frameCount }, (_, i) => {
    const from = Math.floor((i / FPS) * a.sampleRate);
    const to = Math.min(pcm.length, Math.floor(((i + 1) / FPS) * a.sampleRate));
    let sum = 0;
    for (let j = from; j < to; j++) sum += ((pcm[j] ?? 0) / 32768) ** 2;
    const db = 10 * Math.log10(sum / Math.max(1, to - from) + 1e-12);
    return Math.max(0, Math.min(1, (db + 50) / 35));
  });
  // the mouth track for the same speech, phone timings included
  const offset = (a.pcm.length + gap.length) / a.sampleRate;
  const track = computeMouthTrack({
    pcm,
    sampleRate: a.sampleRate,
    phonemes: [
      ...(a.phonemes ?? []),
      { phoneme: 'pau', start: a.durationSeconds, end: offset },
      ...(b.phonemes ?? []).map((p) => ({ ...p, start: p.start + offset, end: p.end + offset })),
    ],
  }, { fps: FPS });
  expect(track.frameCount).toBe(frameCount);
  const random = rng(5);
  const unrelated = Array.from({ length: frameCount }, () => random());
  const smoothUnrelated = unrelated.map((_, i) => ((unrelated[i - 1] ?? 0.5) + (unrelated[i] ?? 0.5) + (unrelated[i + 1] ?? 0.5)) / 3);
  const restless = rng(9);
  await Promise.all([
    report('sync', { open: (i) => opening[i] ?? 0 }),
    report('late3', { open: (i) => opening[i - 3] ?? 0 }),
    report('early2', { open: (i) => opening[i + 2] ?? 0 }),
    report('unrelated', { open: (i) => smoothUnrelated[i] ?? 0 }),
  ]);
  await Promise.all([
    report('border', { open: (i) => opening[i] ?? 0, borderMotion: true }),
    report('blurred', { open: (i) => opening[i] ?? 0, blurWhenOpen: true }),
    report('track', { open: (i) => lipGap(track, i) * 1.25 }),
    report('restless', { open: (i) => ((opening[i] ?? 0) > 0.05 ? (opening[i] ?? 0) : 0.5 * restless()) }),
  ]);
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** sync.mp4's streams in Matroska, which the inspector leaves to ffprobe; made once. */
let mkvCopy: Promise<string> | undefined;
function matroskaCopy(): Promise<string> {
  mkvCopy ??= promisify(execFile)('ffmpeg', ['-v', 'error', '-y', '-i', join(dir, 'sync.mp4'), '-c', 'copy', join(dir, 'sync.mkv')]).then(() => join(dir, 'sync.mkv'));
  return mkvCopy;
}

const get = (name: string): InspectionReport => {
  const r = reports.get(name);
  if (!r) throw new Error(`no report ${name}`);
  return r;
};

describe('inspectVideo on encoded videos with real speech', () => {
  it('reads the video and audio geometry', () => {
    const r = get('sync');
    expect(r.video).toMatchObject({ width: W, height: H, fps: FPS, frameCount, analysedWidth: W, analysedHeight: H });
    expect(Math.abs(r.audio.durationSeconds - frameCount / FPS)).toBeLessThan(0.1);
    expect(r.audio.speechFrames).toBeGreaterThan(frameCount * 0.4);
    expect(r.audio.silentFrames).toBeGreaterThan(10);
  });

  it('finds lag 0 and a strong correlation when the mouth follows the audio', () => {
    const r = get('sync');
    expect(Math.abs(r.sync.lagFrames)).toBeLessThanOrEqual(1);
    expect(r.sync.correlation).toBeGreaterThanOrEqual(0.5);
    expect(r.sync.byLag).toHaveLength(11);
    expect(Math.abs(r.motionSync.lagFrames)).toBeLessThanOrEqual(1);
  });

  it("judges a mouth drawn from the mouth track in sync, resting in the pause", () => {
    const r = get('track');
    expect(Math.abs(r.sync.lagFrames)).toBeLessThanOrEqual(1);
    expect(r.sync.correlation).toBeGreaterThanOrEqual(0.5);
    expect(r.silence.stillnessRatio ?? 1).toBeLessThan(0.1);
  });

  it('reports a video 3 frames late as lag ~+3 and one 2 frames early as ~-2', () => {
    expect(Math.abs(get('late3').sync.lagFrames - 3)).toBeLessThanOrEqual(1);
    expect(get('late3').sync.correlation).toBeGreaterThanOrEqual(0.5);
    expect(Math.abs(get('early2').sync.lagFrames + 2)).toBeLessThanOrEqual(1);
  });

  it('gives a low correlation for mouth motion unrelated to the audio', () => {
    expect(get('unrelated').sync.correlation).toBeLessThan(0.3);
    expect(get('unrelated').motionSync.correlation).toBeLessThan(0.3);
  });

  it('sees still borders as ~0 motion, and moving borders as motion', () => {
    expect(get('sync').borders.meanMotion).toBeLessThan(0.2);
    expect(get('sync').borders.pixels).toBeGreaterThan(0);
    expect(get('border').borders.meanMotion).toBeGreaterThan(1);
    expect(get('border').borders.maxMotion).toBeGreaterThan(2);
  });

  it('measures a mouth that rests in silence, and one that keeps moving', () => {
    const still = get('sync').silence;
    const restless = get('restless').silence;
    expect(still.stillnessRatio).not.toBeNull();
    expect(still.stillnessRatio ?? 1).toBeLessThan(0.1);
    expect(still.closureRatio ?? 1).toBeLessThan(0.1);
    expect(restless.stillnessRatio ?? 0).toBeGreaterThan(0.3);
    expect(restless.closureRatio ?? 0).toBeGreaterThan(0.2);
  });

  it('compares mouth sharpness while speaking with rest: ~1 when sharp, lower when blurred', () => {
    const sharp = get('sync').sharpness.ratio ?? 0;
    const blurred = get('blurred').sharpness.ratio ?? 1;
    expect(sharp).toBeGreaterThan(0.7);
    expect(blurred).toBeLessThan(sharp * 0.7);
  });

  it('refuses a missing file, a file without audio and a mouth box outside the frame', async () => {
    const missing = await inspectVideo(join(dir, 'nope.mp4'), { mouthBox: MOUTH }).catch((e: unknown) => e);
    expect((missing as AvatarError).code).toBe('AVATAR_ERR_INPUT_FILE_MISSING');
    const silentVideo = join(dir, 'no-audio.mp4');
    await promisify(execFile)('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=192x192:duration=1', '-pix_fmt', 'yuv420p', silentVideo]);
    const noAudio = await inspectVideo(silentVideo, { mouthBox: MOUTH }).catch((e: unknown) => e);
    expect(noAudio).toBeInstanceOf(AvatarError);
    expect((noAudio as AvatarError).code).toBe('AVATAR_ERR_INPUT_NOT_VIDEO');
    expect((noAudio as AvatarError).message).toContain('no audio track');
    const outside = await inspectVideo(join(dir, 'sync.mp4'), { mouthBox: { x: 180, y: 180, width: 40, height: 20 } }).catch((e: unknown) => e);
    expect((outside as AvatarError).code).toBe('AVATAR_ERR_USAGE');
    const text = join(dir, 'text.mp4');
    await writeFile(text, 'not a video at all');
    const notVideo = await inspectVideo(text, { mouthBox: MOUTH }).catch((e: unknown) => e);
    expect((notVideo as AvatarError).code).toBe('AVATAR_ERR_INPUT_NOT_VIDEO');
    // an MP4 is read in this process; another container needs ffprobe, and a missing one is named
    const mkv = await matroskaCopy();
    const noTool = await inspectVideo(mkv, { mouthBox: MOUTH, ffprobePath: '/nonexistent/ffprobe' }).catch((e: unknown) => e);
    expect((noTool as AvatarError).code).toBe('AVATAR_ERR_TOOL_MISSING');
    const noDecoder = await inspectVideo(join(dir, 'sync.mp4'), { mouthBox: MOUTH, ffmpegPath: '/nonexistent/ffmpeg' }).catch((e: unknown) => e);
    expect((noDecoder as AvatarError).code).toBe('AVATAR_ERR_TOOL_MISSING');
  });

  it('reads an MP4 in this process as ffprobe does, and leaves anything else to ffprobe', async () => {
    const path = join(dir, 'sync.mp4');
    const ours = await probeMp4(path);
    const theirs = await probe(path, 'ffprobe', undefined);
    expect(ours).toBeDefined();
    expect({ ...ours, duration: 0 }).toEqual({ ...theirs, duration: 0 });
    expect(Math.abs((ours?.duration ?? 0) - theirs.duration)).toBeLessThan(0.03);
    expect(await probeMp4(await matroskaCopy())).toBeUndefined();
    // and the report needs no ffprobe for an MP4
    const report = await inspectVideo(path, { mouthBox: MOUTH, ffprobePath: '/nonexistent/ffprobe' });
    expect(report.sync.lagFrames).toBe(get('sync').sync.lagFrames);
    expect(report.sync.correlation).toBe(get('sync').sync.correlation);
  });

  it('stops its decode when the probe answers late and the boxes are wrong: no ffmpeg left behind', async () => {
    // a probe that answers after the decode has filled its waiting room and paused
    const slowProbe = join(dir, 'slow-ffprobe.sh');
    await writeFile(slowProbe, '#!/bin/sh\nsleep 1.5\nexec ffprobe "$@"\n', { mode: 0o755 });
    const children = (): string[] => {
      const out = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).stdout;
      return out.split('\n').filter((line) => /ffmpeg .*-c:v pgm/.test(line));
    };
    const started = Date.now();
    const outside = await inspectVideo(await matroskaCopy(), { mouthBox: { x: 180, y: 180, width: 40, height: 20 }, ffprobePath: slowProbe }).catch((e: unknown) => e);
    expect((outside as AvatarError).code).toBe('AVATAR_ERR_USAGE');
    // the scenario happened: the answer came after the slow probe (not a speed check)
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    // the killed decode is reaped within moments
    for (let i = 0; i < 250 && children().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(children()).toEqual([]);
  });

  it('measures a video as it is encoded (the watched stream) with the figures of the finished file', async () => {
    const plugin = encodePlugins.find((p) => p.name === 'ffmpeg');
    if (!plugin || plugin.stage !== 'encode') throw new Error('no ffmpeg encode plugin');
    const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    // veryfast: B-frames, so the watched copy's video starts late and its sound carries the priming
    const settings: EncodeSettings = { format: 'mp4', ...QUALITY_PRESETS.low, preset: 'veryfast', fps: FPS };
    const outputPath = join(dir, 'watched.mp4');
    let watched: Promise<InspectionReport> | undefined;
    try {
      await loaded.run({
        kind: 'frames', frames: frames({ open: (i) => opening[i - 3] ?? 0 }), audioPath: wavPath, outputPath, settings,
        watch: (video) => { watched = inspectVideo(outputPath, { mouthBox: MOUTH, faceBox: FACE, watching: video }); },
      }, ctx());
    } finally {
      await loaded.unload();
    }
    if (!watched) throw new Error('the encoder did not hand the video over');
    const fromStream = await watched;
    const fromFile = await inspectVideo(outputPath, { mouthBox: MOUTH, faceBox: FACE });
    expect(fromStream.sync.lagFrames).toBe(3);
    expect({ ...fromStream, elapsedSeconds: 0 }).toEqual({ ...fromFile, elapsedSeconds: 0 });
  });

  it('starts decoding a watched stream at its second fragment, not at its first', async () => {
    // a fragment every half second, as a watched encode hands them over
    const fragmented = join(dir, 'sync-fragmented.mp4');
    await promisify(execFile)('ffmpeg', ['-v', 'error', '-y', '-i', join(dir, 'sync.mp4'), '-c', 'copy', '-movflags', '+frag_keyframe+empty_moov+default_base_moof', '-frag_duration', '500000', fragmented]);
    const whole = await readFile(fragmented);
    // (top-level boxes only: the same name may turn up inside media data)
    const moofs: number[] = [];
    for (let at = 0; at + 8 <= whole.length; at += whole.readUInt32BE(at)) if (whole.toString('latin1', at + 4, at + 8) === 'moof') moofs.push(at);
    expect(moofs.length).toBeGreaterThanOrEqual(3);
    const decodes = (): string[] => {
      const out = spawnSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).stdout;
      return out.split('\n').filter((line) => /ffmpeg .*pipe:0.*-c:v pgm/.test(line));
    };
    const bytes = new PassThrough();
    const inspecting = inspectVideo(join(dir, 'watched-late.mp4'), { mouthBox: MOUTH, watching: { bytes, width: W, height: H, fps: FPS, audioPrimingSamples: 0, audioSampleRate: 48000 } });
    inspecting.catch(() => {});
    // the header and the first fragment whole, and the second's moof header cut in two
    bytes.write(whole.subarray(0, (moofs[1] as number) + 6));
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(decodes()).toEqual([]);
    bytes.write(whole.subarray((moofs[1] as number) + 6, (moofs[1] as number) + 20));
    for (let i = 0; i < 250 && decodes().length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(decodes()).toHaveLength(1);
    bytes.destroy(new Error('the encode failed'));
    expect(isAvatarError(await inspecting.then(() => undefined, (e: unknown) => e), 'AVATAR_ERR_INPUT_NOT_VIDEO')).toBe(true);
    for (let i = 0; i < 250 && decodes().length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(decodes()).toEqual([]);
  });

  it('refuses a watched stream that stops before the video is whole, and stops its decode', async () => {
    const bytes = new PassThrough();
    const whole = await readFile(join(dir, 'sync.mp4'));
    const inspecting = inspectVideo(join(dir, 'cut.mp4'), { mouthBox: MOUTH, watching: { bytes, width: W, height: H, fps: FPS, audioPrimingSamples: 1024, audioSampleRate: 48000 } });
    bytes.write(whole.subarray(0, 4000));
    setTimeout(() => bytes.destroy(new Error('the encode failed')), 50);
    const error = await inspecting.then(() => undefined, (e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_NOT_VIDEO')).toBe(true);
    expect(String((error as Error).message)).toMatch(/stopped before the video was whole/);
  });

  it('gives the same figures with the mouth crops kept in a file as in memory', async () => {
    const path = join(dir, 'sync.mp4');
    const inMemory = await inspectVideo(path, { mouthBox: MOUTH, faceBox: FACE });
    // room for a handful of crops: the rest go through the file
    const filed = await inspectVideo(path, { mouthBox: MOUTH, faceBox: FACE, cropMemoryBytes: 4096 });
    expect({ ...filed, elapsedSeconds: 0 }).toEqual({ ...inMemory, elapsedSeconds: 0 });
  });

  it('prints the figures', () => {
    for (const [name, r] of reports) {
      console.log(`${name}: lag ${r.sync.lagFrames} r=${r.sync.correlation.toFixed(2)} motion lag ${r.motionSync.lagFrames} r=${r.motionSync.correlation.toFixed(2)} ` +
        `still ${r.silence.stillnessRatio?.toFixed(3)} closed ${r.silence.closureRatio?.toFixed(3)} border ${r.borders.meanMotion.toFixed(3)}/${r.borders.maxMotion.toFixed(1)} ` +
        `sharp ${r.sharpness.ratio?.toFixed(2)} in ${(r.elapsedSeconds * 1000).toFixed(0)} ms`);
    }
  });
});

describe('PgmFrames', () => {
  const picture = (width: number, height: number, seed: number): Buffer =>
    Buffer.concat([Buffer.from(`P5\n${width} ${height}\n255\n`, 'latin1'), Buffer.from(Array.from({ length: width * height }, (_, i) => (i * 31 + seed * 7) & 255))]);

  it('splits a stream of pictures into frames wherever the chunks break', () => {
    const stream = Buffer.concat([picture(5, 3, 1), picture(5, 3, 2), picture(5, 3, 3)]);
    for (const size of [1, 2, 7, 19, 20, stream.length]) {
      const got: string[] = [];
      const frames = new PgmFrames((frame, width, height) => got.push(`${width}x${height}:${frame.toString('hex')}`));
      for (let at = 0; at < stream.length; at += size) frames.push(stream.subarray(at, at + size));
      expect(got).toEqual([1, 2, 3].map((seed) => `5x3:${picture(5, 3, seed).subarray(-15).toString('hex')}`));
    }
  });

  it('refuses what is not an 8-bit grey picture', () => {
    const frames = new PgmFrames(() => undefined);
    expect(() => frames.push(Buffer.from('P6\n4 4\n255\n' + 'x'.repeat(80), 'latin1'))).toThrow(/not PGM/);
    expect(() => new PgmFrames(() => undefined).push(Buffer.from('P5\n4 4\n65535\n', 'latin1'))).toThrow(/not 8-bit grey/);
  });
});

describe('the sound\'s power per frame, summed as it is decoded', () => {
  /** The levels the way they were taken from the whole sound kept. */
  function wholeLevels(samples: Float32Array, frames: number, fps: number, offset: number, rate: number): Float64Array {
    const levels = new Float64Array(frames);
    for (let i = 0; i < frames; i++) {
      const from = Math.max(0, Math.floor((i / fps + offset) * rate));
      const to = Math.min(samples.length, Math.floor(((i + 1) / fps + offset) * rate));
      let sum = 0;
      for (let j = from; j < to; j++) sum += (samples[j] as number) ** 2;
      levels[i] = to > from ? toDb(sum / (to - from)) : -120;
    }
    return levels;
  }

  it.each([[25, 0], [25, 0.021], [25, -0.08], [29.97, 0.3], [1e9, 0]])('equals the whole sound\'s, in chunks cut anywhere (through a float too), held until the timing is known (%s fps, offset %s s)', (fps, offset) => {
    const rate = 16000;
    const samples = Float32Array.from({ length: rate * 3 + 123 }, (_, i) => Math.sin(i / 7) * (0.2 + 0.8 * Math.abs(Math.sin(i / 4000))));
    const bytes = Buffer.from(samples.buffer);
    const energy = new FrameEnergy(rate);
    let at = 0;
    let seed = 7;
    let started = false;
    while (at < bytes.length) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const n = 1 + (seed % 5000);
      energy.push(bytes.subarray(at, Math.min(bytes.length, at + n)));
      at += n;
      if (!started && at > bytes.length / 3) {
        energy.start(fps, offset);
        started = true;
      }
    }
    const frames = 80;
    expect(energy.samples).toBe(samples.length);
    const expected = wholeLevels(samples, frames, fps, offset, rate);
    const got = energy.levels(frames);
    expect(Array.from(got)).toEqual(Array.from(expected));
    // (frames past the sound's end, before its start, or between two samples have none)
    if (fps === 25) expect(got.filter((l) => l === -120).length).toBeGreaterThanOrEqual(4);
  });
});
