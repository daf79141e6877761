import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AvatarError,
  MemoryLogger,
  QUALITY_PRESETS,
  type EncodeInput,
  type EncodeSettings,
  type EncodingPreset,
  type FrameStream,
  type RunContext,
  type WatchedVideo,
} from '@avatar/core';
import { encodeVideo, plugins } from './index.js';
import { createFfmpegPlugin, ffmpegPlugin } from './plugin.js';
import { probeMedia } from './probe.js';

const run = promisify(execFile);
let dir: string;
let image: string;
let speech: string;
let twoSeconds: string;
let longAudio: string;
const AUDIO_SECONDS = 2.337;

async function ffmpegGen(...args: string[]): Promise<void> {
  await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-encode-'));
  image = join(dir, 'portrait.png');
  speech = join(dir, 'speech.wav');
  twoSeconds = join(dir, 'two.wav');
  longAudio = join(dir, 'long.wav');
  await Promise.all([
    ffmpegGen('-f', 'lavfi', '-i', 'testsrc2=size=640x480', '-frames:v', '1', image),
    ffmpegGen('-f', 'lavfi', '-i', `sine=frequency=220:sample_rate=22050:duration=${AUDIO_SECONDS}`, speech),
    ffmpegGen('-f', 'lavfi', '-i', 'sine=frequency=330:sample_rate=16000:duration=2', twoSeconds),
    ffmpegGen('-f', 'lavfi', '-i', 'anoisesrc=sample_rate=16000:amplitude=0.1:duration=60', longAudio),
  ]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ctx(signal = new AbortController().signal, progress: (f: number, d?: string) => void = () => {}): RunContext {
  return { signal, progress, log: new MemoryLogger(), workDir: dir };
}

async function encode(input: EncodeInput, context: RunContext = ctx(), plugin = ffmpegPlugin) {
  const loaded = await plugin.load({ log: context.log, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run(input, context);
  } finally {
    await loaded.unload();
  }
}

async function rejection(promise: Promise<unknown>): Promise<AvatarError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(AvatarError);
  return error as AvatarError;
}

/** Output path absent and no partial file left beside it. */
async function expectNothingWritten(name: string): Promise<void> {
  const files = await readdir(dir);
  expect(files).not.toContain(name);
  expect(files.filter((f) => f.includes('.partial-'))).toEqual([]);
}

const low: EncodeSettings = { format: 'mp4', ...QUALITY_PRESETS.low };

/** A mono 16-bit PCM WAV file's bytes. */
function wavOf(pcm: Int16Array, rate: number): Buffer {
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(36 + pcm.byteLength, 4);
  header.write('WAVEfmt ', 8, 'latin1');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'latin1');
  header.writeUInt32LE(pcm.byteLength, 40);
  return Buffer.concat([header, Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)]);
}

/** Top-level MP4 box types in file order. */
function topLevelBoxes(data: Buffer): string[] {
  const boxes: string[] = [];
  let offset = 0;
  while (offset + 8 <= data.length) {
    let size = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    if (size === 1) size = Number(data.readBigUInt64BE(offset + 8));
    if (size === 0) size = data.length - offset;
    boxes.push(type);
    if (size < 8) break;
    offset += size;
  }
  return boxes;
}

/** Decodes frame `n` of a video to grey pixels. */
async function decodeFrame(path: string, n: number): Promise<Buffer> {
  const { stdout } = await run(
    'ffmpeg',
    ['-v', 'error', '-i', path, '-vf', `select=eq(n\\,${n})`, '-fps_mode', 'passthrough', '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'],
    { encoding: 'buffer', maxBuffer: 1 << 24 },
  );
  return stdout;
}

/** Horizontal centre of the bright pixels in a grey frame. */
function brightCentreX(grey: Buffer, width: number): number {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < grey.length; i += 1) {
    if ((grey[i] ?? 0) > 128) {
      sum += i % width;
      count += 1;
    }
  }
  return count ? sum / count : -1;
}

const W = 160;
const H = 120;
const BOX = 24;
/** The square's left edge in frame i: it moves 2 px a frame. */
const boxX = (i: number): number => (i * 2) % (W - BOX);

/**
 * A white square moving right on a dark background, drawn into ONE reused buffer, so a frame the
 * encoder had not finished taking would show up as the wrong picture when decoded.
 */
function movingSquare(count: number, opts: { wrongSizeAt?: number; onFrame?: (i: number) => void } = {}): FrameStream {
  const buffer = new Uint8Array(W * H * 4);
  async function* frames(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < count; i += 1) {
      opts.onFrame?.(i);
      if (i === opts.wrongSizeAt) {
        yield new Uint8Array(W * H * 3);
        continue;
      }
      buffer.fill(0);
      for (let p = 3; p < buffer.length; p += 4) buffer[p] = 255;
      const x0 = boxX(i);
      for (let y = 48; y < 48 + BOX; y += 1) {
        for (let x = x0; x < x0 + BOX; x += 1) {
          const o = (y * W + x) * 4;
          buffer[o] = 255; buffer[o + 1] = 255; buffer[o + 2] = 255;
        }
      }
      yield buffer;
    }
  }
  return { width: W, height: H, fps: 25, frameCount: count, frames: frames() };
}

describe('ffmpeg encode plugin', () => {
  it('is exported for the registry', () => {
    expect(plugins).toContain(ffmpegPlugin);
    expect(ffmpegPlugin).toMatchObject({ name: 'ffmpeg', stage: 'encode', apiVersion: 1 });
  });

  it('check() reports versions and the encoders it finds, without claiming NVENC', async () => {
    const result = await ffmpegPlugin.check!();
    expect(result.ok).toBe(true);
    expect(result.detail).toMatch(/ffmpeg \S+ at .*ffprobe \S+ at/);
    expect(result.detail).toContain('libx264 yes, aac yes, libvpx-vp9 yes, libopus yes');
    expect(result.detail).not.toMatch(/nvenc (available|usable)/i);
  });

  it('still image -> MP4: H.264 yuv420p + AAC, audio-long, preset size, faststart', async () => {
    const outputPath = join(dir, 'still.mp4');
    const progress: number[] = [];
    const video = await encode(
      { kind: 'still', imagePath: image, audioPath: speech, outputPath, settings: low },
      ctx(undefined, (f) => progress.push(f)),
    );
    expect(video).toMatchObject({ outputPath, format: 'mp4', width: 256, height: 192, fps: 20 });
    const info = await probeMedia(outputPath);
    expect(info.formatName).toContain('mp4');
    const v = info.streams.find((s) => s.type === 'video');
    const a = info.streams.find((s) => s.type === 'audio');
    expect(v).toMatchObject({ codec: 'h264', pixFmt: 'yuv420p', width: 256, height: 192, fps: 20 });
    expect(a?.codec).toBe('aac');
    for (const d of [info.durationSeconds, v?.durationSeconds, a?.durationSeconds, video.durationSeconds]) {
      expect(Math.abs((d ?? 0) - AUDIO_SECONDS)).toBeLessThan(0.05);
    }
    expect(video.bytes).toBe(info.sizeBytes);
    const boxes = topLevelBoxes(await readFile(outputPath));
    expect(boxes.indexOf('moov')).toBeGreaterThanOrEqual(0);
    expect(boxes.indexOf('moov')).toBeLessThan(boxes.indexOf('mdat'));
    expect(progress.at(-1)).toBe(1);
    await expectNothingWritten('never.mp4');
  });

  it('still image -> WebM: VP9 + Opus, audio-long', async () => {
    const outputPath = join(dir, 'still.webm');
    const settings: EncodeSettings = { ...low, format: 'webm', preset: 'ultrafast' };
    const video = await encode({ kind: 'still', imagePath: image, audioPath: speech, outputPath, settings });
    expect(video).toMatchObject({ format: 'webm', width: 256, height: 192 });
    const info = await probeMedia(outputPath);
    expect(info.formatName).toContain('webm');
    const v = info.streams.find((s) => s.type === 'video');
    const a = info.streams.find((s) => s.type === 'audio');
    expect(v).toMatchObject({ codec: 'vp9', pixFmt: 'yuv420p', width: 256, height: 192 });
    expect(a?.codec).toBe('opus');
    for (const d of [info.durationSeconds, v?.durationSeconds, a?.durationSeconds]) {
      expect(Math.abs((d ?? 0) - AUDIO_SECONDS)).toBeLessThan(0.05);
    }
  });

  it('streamed frames -> MP4: every frame arrives, in order, with the audio muxed in', async () => {
    const outputPath = join(dir, 'frames.mp4');
    const progress: number[] = [];
    const settings: EncodeSettings = { ...low, fps: 25, crf: 18, preset: 'ultrafast' };
    const video = await encode(
      { kind: 'frames', frames: movingSquare(50), audioPath: twoSeconds, outputPath, settings },
      ctx(undefined, (f) => progress.push(f)),
    );
    expect(video).toMatchObject({ width: W, height: H, fps: 25 });
    const info = await probeMedia(outputPath);
    const v = info.streams.find((s) => s.type === 'video');
    const a = info.streams.find((s) => s.type === 'audio');
    expect(v).toMatchObject({ codec: 'h264', pixFmt: 'yuv420p', frameCount: 50, fps: 25 });
    expect(Math.abs((v?.durationSeconds ?? 0) - 2)).toBeLessThan(0.05);
    expect(Math.abs((a?.durationSeconds ?? 0) - 2)).toBeLessThan(0.05);
    expect(a?.codec).toBe('aac');
    // The square really moves, and each decoded frame shows the picture that was yielded for it.
    for (const n of [5, 40]) {
      const x = brightCentreX(await decodeFrame(outputPath, n), W);
      expect(Math.abs(x - (boxX(n) + BOX / 2 - 0.5))).toBeLessThan(1.5);
    }
    expect(progress.filter((f) => f < 1).length).toBeGreaterThan(10);
    expect(progress.at(-1)).toBe(1);
  });

  it('live output: fragmented MP4 reaches the stream while frames are still being drawn, the same bytes as the file', async () => {
    const outputPath = join(dir, 'live.mp4');
    let drawn = 0;
    let drawnAtFirstFragment = -1;
    const chunks: Buffer[] = [];
    const live = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (drawnAtFirstFragment < 0 && chunk.includes('moof')) drawnAtFirstFragment = drawn;
        chunks.push(chunk);
        callback();
      },
    });
    const settings: EncodeSettings = { ...low, fps: 25, preset: 'ultrafast' };
    const frames = movingSquare(250, { onFrame: (i) => { drawn = i + 1; } });
    const tenSeconds = join(dir, 'ten.wav');
    await ffmpegGen('-f', 'lavfi', '-i', 'sine=frequency=200:sample_rate=16000:duration=10', tenSeconds);
    const video = await encode({ kind: 'frames', frames, audioPath: tenSeconds, outputPath, settings, live });
    expect(ffmpegPlugin.liveOutput).toBe(true);
    // (a fragment per second: the first is out long before the tenth second is drawn)
    expect(drawnAtFirstFragment).toBeGreaterThan(0);
    expect(drawnAtFirstFragment).toBeLessThan(150);
    const streamed = Buffer.concat(chunks);
    expect(streamed.equals(await readFile(outputPath))).toBe(true);
    const boxes = topLevelBoxes(streamed);
    expect(boxes.slice(0, 2)).toEqual(['ftyp', 'moov']);
    expect(boxes.filter((b) => b === 'moof').length).toBeGreaterThanOrEqual(9);
    expect(Math.abs(video.durationSeconds - 10)).toBeLessThan(0.1);
    const info = await probeMedia(outputPath);
    // (a fragmented MP4 lists no frame count: its length says the frames are all there)
    const v = info.streams.find((x) => x.type === 'video');
    expect(v?.codec).toBe('h264');
    expect(Math.abs((v?.durationSeconds ?? 0) - 10)).toBeLessThan(0.1);
    expect(info.streams.find((x) => x.type === 'audio')?.codec).toBe('aac');
  });

  it('live output starts its video with its audio (no B-frames to delay it: a fragmented MP4 has no edit list)', async () => {
    const outputPath = join(dir, 'live-sync.mp4');
    const live = new Writable({ write: (_c, _e, callback) => callback() });
    await encode({ kind: 'frames', frames: movingSquare(50), audioPath: twoSeconds, outputPath, settings: { ...low, fps: 25, preset: 'veryfast' }, live });
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,start_time', '-of', 'csv=p=0', outputPath]);
    expect(stdout.trim().split('\n').sort()).toEqual(['audio,0.000000', 'video,0.000000']);
    // the first fragment is half a second (out sooner), the next ones a second each
    const keys = await run('ffprobe', ['-v', 'error', '-select_streams', 'v', '-skip_frame', 'nokey', '-show_entries', 'frame=pts_time', '-of', 'csv=p=0', outputPath]);
    // (times of the file, whose first video sample ffmpeg lengthens by the audio's priming, 1024 samples at 48 kHz)
    const times = keys.stdout.split('\n').map((line) => Number.parseFloat(line)).filter((t) => Number.isFinite(t));
    expect(times.length).toBe(3);
    expect(times[0]).toBe(0);
    expect(times[1]).toBeCloseTo(12 / 25 + 1024 / 48_000, 3);
    expect((times[2] as number) - (times[1] as number)).toBeCloseTo(1, 3);
  });

  it('live output whose reader goes away: AVATAR_ERR_LIVE_OUTPUT_CLOSED, ffmpeg stopped, nothing left', async () => {
    const outputPath = join(dir, 'live-closed.mp4');
    let taken = 0;
    const live = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        taken += chunk.byteLength;
        // as a pipe whose reader closed: the write fails with EPIPE
        callback(taken > 20_000 ? Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }) : null);
      },
    });
    live.on('error', () => {});
    const error = await rejection(encode({ kind: 'frames', frames: movingSquare(100_000), audioPath: longAudio, outputPath, settings: { ...low, preset: 'ultrafast' }, live }));
    expect(error.code).toBe('AVATAR_ERR_LIVE_OUTPUT_CLOSED');
    expect(error.message).toMatch(/reader went away after \d+ bytes/);
    await expectNothingWritten('live-closed.mp4');
  });

  /** Decodes a video's frames (grey, in order) and its sound (16 kHz mono, priming dropped at 48 kHz), from a file or bytes. */
  async function decodedBoth(source: string | Buffer, primingSamples = 0): Promise<{ frames: string; sound: string }> {
    const decode = (args: string[]): Promise<string> => new Promise((resolve, reject) => {
      const child = execFile('ffmpeg', ['-v', 'error', '-i', typeof source === 'string' ? source : 'pipe:0', ...args, '-f', 'md5', '-'], (error, out) => (error ? reject(error) : resolve(out.trim())));
      if (typeof source !== 'string') child.stdin?.end(source);
    });
    const [frames, sound] = await Promise.all([
      decode(['-map', '0:v:0', '-fps_mode', 'passthrough', '-pix_fmt', 'gray', '-f', 'rawvideo']),
      decode(['-map', '0:a:0', ...(primingSamples ? ['-af', `atrim=start_sample=${primingSamples}`] : []), '-ac', '1', '-ar', '16000', '-f', 'f32le']),
    ]);
    return { frames, sound };
  }

  /** A watcher that takes every byte (slowly, to test the pace) and keeps them. */
  function watcher(): { watch: (video: WatchedVideo) => void; seen: Promise<{ video: WatchedVideo; bytes: Buffer }> } {
    let resolveSeen: (v: { video: WatchedVideo; bytes: Buffer }) => void = () => {};
    const seen = new Promise<{ video: WatchedVideo; bytes: Buffer }>((resolve) => { resolveSeen = resolve; });
    return {
      watch(video) {
        const chunks: Buffer[] = [];
        video.bytes.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          video.bytes.pause();
          setTimeout(() => video.bytes.resume(), 1);
        });
        video.bytes.on('end', () => resolveSeen({ video, bytes: Buffer.concat(chunks) }));
      },
      seen,
    };
  }

  it('hands the video to a watcher as it is encoded: fragmented MP4, the frames and (past its priming) the sound of the file', async () => {
    expect(ffmpegPlugin.watchOutput).toBe(true);
    for (const live of [undefined, new Writable({ write: (_c, _e, callback) => callback() })]) {
      const outputPath = join(dir, live ? 'watched-live.mp4' : 'watched.mp4');
      const { watch, seen } = watcher();
      // veryfast has B-frames: the watched copy's video starts late, its frames are still the file's
      await encode({ kind: 'frames', frames: movingSquare(60), audioPath: twoSeconds, outputPath, settings: { ...low, fps: 25, preset: 'veryfast' }, watch, ...(live && { live }) });
      const { video, bytes } = await seen;
      expect({ width: video.width, height: video.height, fps: video.fps, rate: video.audioSampleRate }).toEqual({ width: 160, height: 120, fps: 25, rate: 48000 });
      expect(topLevelBoxes(bytes).slice(0, 2)).toEqual(['ftyp', 'moov']);
      expect(topLevelBoxes(bytes)).toContain('moof');
      // a fragment a second, key frame or not (x264 puts none in these 2.4 s after the first): a watcher
      // can measure the video while it is encoded, rather than from one fragment at its end
      if (!live) expect(topLevelBoxes(bytes).filter((box) => box === 'moof').length).toBeGreaterThanOrEqual(2);
      const file = await decodedBoth(outputPath, live ? video.audioPrimingSamples : 0);
      expect(await decodedBoth(bytes, video.audioPrimingSamples), live ? 'live' : 'file').toEqual(file);
      // without dropping the priming the sound differs: the stream does need it dropped
      if (!live) expect((await decodedBoth(bytes)).sound).not.toBe(file.sound);
    }
  });

  it('hands a live video\'s bytes to the watcher once the live stream has taken them', async () => {
    const outputPath = join(dir, 'watched-after-live.mp4');
    const order: string[] = [];
    let chunks = 0;
    // a live stream that takes its time with each chunk, as one that writes files does
    const live = new Writable({
      write: (_chunk, _encoding, callback) => {
        const n = chunks++;
        order.push(`live ${n} in`);
        setTimeout(() => {
          order.push(`live ${n} taken`);
          callback();
        }, 30);
      },
    });
    const watch = (video: WatchedVideo): void => {
      let n = 0;
      video.bytes.on('data', () => order.push(`watcher ${n++}`));
    };
    await encode({ kind: 'frames', frames: movingSquare(30), audioPath: twoSeconds, outputPath, settings: { ...low, fps: 25, preset: 'ultrafast' }, watch, live });
    expect(chunks).toBeGreaterThan(0);
    for (let n = 0; n < chunks; n++) expect(order.indexOf(`watcher ${n}`), `chunk ${n}: ${order.join(', ')}`).toBeGreaterThan(order.indexOf(`live ${n} taken`));
  });

  it('a watcher that goes away, also while a write waits on it, costs the encode nothing', async () => {
    for (const live of [undefined, new Writable({ write: (_c, _e, callback) => callback() })]) {
      const outputPath = join(dir, live ? 'watcher-gone-live.mp4' : 'watcher-gone.mp4');
      let taken = 0;
      const watch = (video: WatchedVideo): void => {
        video.bytes.on('data', (chunk: Buffer) => {
          taken += chunk.byteLength;
          // it stops reading (writes wait on it), then goes away
          if (taken > 2000) {
            video.bytes.pause();
            setTimeout(() => video.bytes.destroy(), 200);
          }
        });
      };
      const encoded = await encode({ kind: 'frames', frames: movingSquare(200), audioPath: twoSeconds, outputPath, settings: { ...low, fps: 25, preset: 'ultrafast' }, watch, ...(live && { live }) });
      expect(taken).toBeGreaterThan(2000);
      // all 200 frames (8 s at 25 fps) are in the file
      const video = (await probeMedia(outputPath)).streams.find((x) => x.type === 'video');
      expect(Math.abs((video?.durationSeconds ?? 0) - 8)).toBeLessThan(0.1);
      expect(encoded.durationSeconds).toBeGreaterThan(7.9);
    }
  });

  it('a failed encode closes the watched stream before its end, not as if the video were whole', async () => {
    for (const [how, live] of [['cancel', undefined], ['renderer', undefined], ['renderer', new Writable({ write: (_c, _e, callback) => callback() })]] as const) {
      const outputPath = join(dir, 'watched-fails.mp4');
      let ended = false;
      let closed = false;
      const watch = (video: WatchedVideo): void => {
        video.bytes.on('data', () => {});
        video.bytes.on('end', () => { ended = true; });
        video.bytes.on('close', () => { closed = true; });
      };
      const controller = new AbortController();
      // a cancel, or a renderer that fails after 60 frames (ffmpeg itself ends its output cleanly then)
      const square = movingSquare(100_000, { onFrame: (i) => { if (how === 'cancel' && i === 50) controller.abort(); } });
      async function* failing(): AsyncGenerator<Uint8Array> {
        let n = 0;
        for await (const frame of square.frames) {
          if (++n > 60) throw new Error('the renderer failed');
          yield frame;
        }
      }
      const frames = how === 'cancel' ? square : { ...square, frames: failing() };
      const error = await encode({ kind: 'frames', frames, audioPath: longAudio, outputPath, settings: { ...low, preset: 'ultrafast' }, watch, ...(live && { live }) }, ctx(controller.signal)).then(() => undefined, (e: unknown) => e);
      expect(error, `${how} ${live ? 'live' : 'file'}`).toBeDefined();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(closed, `${how} ${live ? 'live' : 'file'}`).toBe(true);
      expect(ended, `${how} ${live ? 'live' : 'file'}`).toBe(false);
      await expectNothingWritten('watched-fails.mp4');
    }
  });

  it('a watcher that attaches nothing to the stream does not crash a failing encode', async () => {
    const outputPath = join(dir, 'watched-ignored.mp4');
    const controller = new AbortController();
    const frames = movingSquare(100_000, { onFrame: (i) => { if (i === 5) controller.abort(); } });
    const error = await rejection(encode({ kind: 'frames', frames, audioPath: longAudio, outputPath, settings: { ...low, preset: 'ultrafast' }, watch: () => {} }, ctx(controller.signal)));
    expect(error.code).toBe('AVATAR_ERR_CANCELLED');
    await expectNothingWritten('watched-ignored.mp4');
  });

  it('takes the sound as it is made (audioStream): the same sound as from the file, and a failing stream fails the encode', async () => {
    expect(ffmpegPlugin.audioStream).toBe(true);
    const rate = 16000;
    const pcm = Int16Array.from({ length: 3 * rate }, (_, i) => Math.round(9000 * Math.sin((2 * Math.PI * (220 + 110 * Math.floor(i / rate)) * i) / rate)));
    const wav = join(dir, 'streamed-source.wav');
    await writeFile(wav, wavOf(pcm, rate));
    async function* chunks(failAt?: number): AsyncGenerator<Int16Array> {
      for (let at = 0, k = 0; at < pcm.length; at += 4000, k++) {
        if (k === failAt) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'test', reason: 'it stopped halfway' });
        await new Promise((resolve) => setTimeout(resolve, 5));
        yield pcm.subarray(at, Math.min(pcm.length, at + 4000));
      }
    }
    const settings = { ...low, fps: 25, preset: 'veryfast' } as const;
    const fromFile = join(dir, 'sound-from-file.mp4');
    const fromStream = join(dir, 'sound-from-stream.mp4');
    await encode({ kind: 'frames', frames: movingSquare(75), audioPath: wav, outputPath: fromFile, settings });
    const video = await encode({ kind: 'frames', frames: { ...movingSquare(75), frameCount: 0 }, audioPath: join(dir, 'not-there-yet.wav'), audioStream: { sampleRate: rate, chunks: chunks() }, outputPath: fromStream, settings });
    expect(Math.abs(video.durationSeconds - 3)).toBeLessThan(0.05);
    expect(await decodedBoth(fromStream)).toEqual(await decodedBoth(fromFile));
    const failing = join(dir, 'sound-fails.mp4');
    const error = await rejection(encode({ kind: 'frames', frames: movingSquare(100_000), audioPath: wav, audioStream: { sampleRate: rate, chunks: chunks(5) }, outputPath: failing, settings }));
    expect(error.code).toBe('AVATAR_ERR_TTS_FAILED');
    await expectNothingWritten('sound-fails.mp4');
  });

  it('a live encode with the sound as it is made puts out its first fragment once the first second of sound is in', async () => {
    // (ffmpeg reads 2-3 s of a raw sound input before it takes a frame unless told there is nothing to
    // find out about it: a live run's first fragment would wait for later sentences)
    const rate = 16000;
    let moof = false;
    let heldBack = true;
    let moofWhileHeldBack = false;
    let fragmentSeen: () => void = () => {};
    const fragment = new Promise<void>((resolve) => { fragmentSeen = resolve; });
    const live = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        if (!moof && chunk.includes('moof')) {
          moof = true;
          moofWhileHeldBack = heldBack;
          fragmentSeen();
        }
        callback();
      },
    });
    async function* sound(): AsyncGenerator<Int16Array> {
      yield Int16Array.from({ length: rate }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / rate)));
      // the rest comes only once a fragment is out, or after 20 s (the test then fails)
      await Promise.race([fragment, new Promise((resolve) => setTimeout(resolve, 20_000))]);
      heldBack = false;
      yield new Int16Array(rate);
    }
    // I420 frames, as the renderer draws them
    const I420 = (W * H * 3) / 2;
    async function* frames(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 50; i++) yield new Uint8Array(I420).fill(16 + ((i * 5) % 200));
    }
    const outputPath = join(dir, 'live-first-second.mp4');
    await encode({
      kind: 'frames', frames: { width: W, height: H, fps: 25, frameCount: 0, frames: frames(), pixelFormat: 'yuv420p', ring: 1 },
      audioPath: join(dir, 'not-there.wav'), audioStream: { sampleRate: rate, chunks: sound() }, outputPath, settings: { ...low, fps: 25, preset: 'veryfast' }, live,
    });
    expect(moofWhileHeldBack).toBe(true);
    const info = await probeMedia(outputPath);
    expect(Math.abs((info.streams.find((x) => x.type === 'video')?.durationSeconds ?? 0) - 2)).toBeLessThan(0.1);
  }, 40_000);

  it('a frame stream with no frames fails as such, RGBA or I420, and leaves nothing', async () => {
    for (const pixelFormat of ['rgba', 'yuv420p'] as const) {
      const outputPath = join(dir, `no-frames-${pixelFormat}.mp4`);
      async function* none(): AsyncGenerator<Uint8Array> {}
      const error = await rejection(encode({ kind: 'frames', frames: { width: W, height: H, fps: 25, frameCount: 0, frames: none(), pixelFormat }, audioPath: twoSeconds, outputPath, settings: low }));
      expect(error.code, pixelFormat).toBe('AVATAR_ERR_ENCODE_FAILED');
      expect(String(error.params.reason), pixelFormat).toBe('the frame stream had no frames');
      await expectNothingWritten(`no-frames-${pixelFormat}.mp4`);
    }
  });

  it('live output is MP4: WebM is refused before ffmpeg starts', async () => {
    const outputPath = join(dir, 'live.webm');
    const live = new Writable({ write: (_c, _e, callback) => callback() });
    const error = await rejection(encode({ kind: 'frames', frames: movingSquare(10), audioPath: twoSeconds, outputPath, settings: { ...low, format: 'webm' }, live }));
    expect(error.code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(error.message).toMatch(/mp4 for live output/);
    await expectNothingWritten('live.webm');
  });

  it('abort mid-stream kills ffmpeg and leaves nothing at the output path', async () => {
    const outputPath = join(dir, 'aborted.mp4');
    const controller = new AbortController();
    const stream = movingSquare(100_000, { onFrame: (i) => { if (i === 20) controller.abort(); } });
    const error = await rejection(encode({ kind: 'frames', frames: stream, audioPath: longAudio, outputPath, settings: low }, ctx(controller.signal)));
    expect(error.code).toBe('AVATAR_ERR_CANCELLED');
    await expectNothingWritten('aborted.mp4');
  });

  it('abort during a still encode leaves nothing either', async () => {
    const outputPath = join(dir, 'aborted-still.mp4');
    const controller = new AbortController();
    const settings: EncodeSettings = { ...low, preset: 'veryslow', size: 512 };
    const error = await rejection(encode(
      { kind: 'still', imagePath: image, audioPath: longAudio, outputPath, settings },
      ctx(controller.signal, (f) => { if (f > 0) controller.abort(); }),
    ));
    expect(error.code).toBe('AVATAR_ERR_CANCELLED');
    await expectNothingWritten('aborted-still.mp4');
  });

  it('a frame of the wrong size fails clearly and writes nothing', async () => {
    const outputPath = join(dir, 'wrong-size.mp4');
    const error = await rejection(encode({ kind: 'frames', frames: movingSquare(10, { wrongSizeAt: 3 }), audioPath: twoSeconds, outputPath, settings: low }));
    expect(error.code).toBe('AVATAR_ERR_ENCODE_FAILED');
    expect(error.message).toContain(`frame 4 has ${W * H * 3} bytes; a ${W}x${H} RGBA frame has ${W * H * 4}`);
    await expectNothingWritten('wrong-size.mp4');
  });

  it('a frame producer that fails passes its own error through and writes nothing', async () => {
    const outputPath = join(dir, 'producer-failed.mp4');
    const stream = movingSquare(50, { onFrame: (i) => { if (i === 5) throw new Error('renderer broke at frame 5'); } });
    const error = await encode({ kind: 'frames', frames: stream, audioPath: twoSeconds, outputPath, settings: low }).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('renderer broke at frame 5');
    await expectNothingWritten('producer-failed.mp4');
  });

  it('a text file named .png is refused from its first bytes, before any decoder sees it', async () => {
    const fake = join(dir, 'fake.png');
    await writeFile(fake, 'this is not a picture\n');
    const error = await rejection(encode({ kind: 'still', imagePath: fake, audioPath: speech, outputPath: join(dir, 'fake.mp4'), settings: low }));
    expect(error.code).toBe('AVATAR_ERR_INPUT_NOT_IMAGE');
    expect(error.message).toContain('not a JPEG, PNG or WebP header');
    await expectNothingWritten('fake.mp4');
  });

  it('ffmpeg\'s own error text reaches the user', async () => {
    // Settings that skipped config validation: libx264 refuses the preset name.
    const settings = { ...low, preset: 'sluggish' as EncodingPreset };
    const error = await rejection(encode({ kind: 'still', imagePath: image, audioPath: speech, outputPath: join(dir, 'bad-preset.mp4'), settings }));
    expect(error.code).toBe('AVATAR_ERR_ENCODE_FAILED');
    expect(error.message).toMatch(/libx264: Error setting preset\/tune sluggish/);
    await expectNothingWritten('bad-preset.mp4');
  });

  it('missing inputs and output folders are reported before ffmpeg runs', async () => {
    const missingAudio = await rejection(encode({ kind: 'still', imagePath: image, audioPath: join(dir, 'nope.wav'), outputPath: join(dir, 'x.mp4'), settings: low }));
    expect(missingAudio.code).toBe('AVATAR_ERR_INPUT_FILE_MISSING');
    const noFolder = await rejection(encode({ kind: 'still', imagePath: image, audioPath: speech, outputPath: join(dir, 'no', 'x.mp4'), settings: low }));
    expect(noFolder.code).toBe('AVATAR_ERR_OUTPUT_DIR_MISSING');
    const notAudio = await rejection(encode({ kind: 'still', imagePath: image, audioPath: image, outputPath: join(dir, 'x.mp4'), settings: low }));
    expect(notAudio.code).toBe('AVATAR_ERR_INPUT_NOT_AUDIO');
  });

  it('a missing ffmpeg binary is AVATAR_ERR_TOOL_MISSING with the install command', async () => {
    const missing = createFfmpegPlugin({ ffmpegPath: join(dir, 'no-such-ffmpeg') });
    const input: EncodeInput = { kind: 'still', imagePath: image, audioPath: speech, outputPath: join(dir, 'nobin.mp4'), settings: low };
    const error = await rejection(encode(input, ctx(), missing));
    expect(error.code).toBe('AVATAR_ERR_TOOL_MISSING');
    expect(error.message).toContain('no-such-ffmpeg');
    expect(error.hint).toContain('apt-get install -y ffmpeg');
    expect(await missing.check!()).toMatchObject({ ok: false, install: 'sudo apt-get install -y ffmpeg' });

    const saved = process.env.AVATAR_FFMPEG;
    process.env.AVATAR_FFMPEG = join(dir, 'also-missing');
    try {
      const viaEnv = await rejection(encode(input));
      expect(viaEnv.code).toBe('AVATAR_ERR_TOOL_MISSING');
    } finally {
      if (saved === undefined) delete process.env.AVATAR_FFMPEG;
      else process.env.AVATAR_FFMPEG = saved;
    }
    await expectNothingWritten('nobin.mp4');

    // called directly, after other encodes filled fluent-ffmpeg's per-process lists (which it then
    // trusts without running ffmpeg): still a clear error, not a crash of the process
    const direct = await rejection(encodeVideo(input, { ffmpegPath: join(dir, 'gone-ffmpeg') }));
    expect(direct.code).toBe('AVATAR_ERR_TOOL_MISSING');
    await expectNothingWritten('nobin.mp4');
  });
});
