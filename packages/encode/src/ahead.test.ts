import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryLogger, QUALITY_PRESETS, type EncodeInput, type EncodeSettings, type RunContext } from '@avatar/core';
import { spareProcess } from './ahead.js';
import { ffmpegPlugin } from './plugin.js';
import { probeMedia } from './probe.js';

// ffmpeg started ahead of a live encode (ahead.ts): taken by the encode that spawns the same command
// line, stopped when it is not (another command line, the run's end, the idle limit).
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-ahead-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const W = 160, H = 120, RATE = 16000;
const settings: EncodeSettings = { format: 'mp4', ...QUALITY_PRESETS.low, fps: 25, preset: 'veryfast' };

function liveInput(outputPath: string, overrides: Partial<EncodeSettings> = {}): EncodeInput {
  async function* frames(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 25; i++) yield new Uint8Array((W * H * 3) / 2).fill(20 + i * 4);
  }
  async function* sound(): AsyncGenerator<Int16Array> {
    yield Int16Array.from({ length: RATE }, (_, i) => Math.round(6000 * Math.sin((2 * Math.PI * 330 * i) / RATE)));
  }
  return {
    kind: 'frames', frames: { width: W, height: H, fps: 25, frameCount: 0, frames: frames(), pixelFormat: 'yuv420p', ring: 2 },
    audioPath: join(dir, 'none.wav'), audioStream: { sampleRate: RATE, chunks: sound() }, outputPath, settings: { ...settings, ...overrides },
    live: new Writable({ write: (_chunk, _encoding, callback) => callback() }),
  };
}

function ctx(): RunContext {
  return { signal: new AbortController().signal, progress: () => {}, log: new MemoryLogger(), workDir: dir };
}

async function encode(input: EncodeInput) {
  const loaded = await ffmpegPlugin.load({ log: new MemoryLogger(), storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run(input, ctx());
  } finally {
    await loaded.unload();
  }
}

/** The ffmpeg started ahead, once it runs (its spawn comes a few turns of the event loop after the call). */
async function startedAhead(signal: AbortSignal, plan: Partial<Parameters<NonNullable<typeof ffmpegPlugin.encodeAhead>>[0]> = {}): Promise<ChildProcess | undefined> {
  await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal, ...plan });
  for (let i = 0; i < 100 && !spareProcess()?.pid; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  return spareProcess();
}

const ended = (proc: ChildProcess): Promise<void> =>
  proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((resolve) => proc.once('exit', () => resolve()));

describe('ffmpeg started ahead of a live encode', () => {
  it('is taken by the live encode that spawns the same command line, which then encodes with it', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const outputPath = join(dir, 'taken.mp4');
    const video = await encode(liveInput(outputPath));
    run.abort();
    await ended(spare as ChildProcess);
    // it encoded the video and exited on its own; nothing else is kept
    expect(spare?.exitCode).toBe(0);
    expect(spareProcess()).toBeUndefined();
    expect(Math.abs(video.durationSeconds - 1)).toBeLessThan(0.1);
    const info = await probeMedia(outputPath);
    expect(info.streams.map((s) => s.codec).sort()).toEqual(['aac', 'h264']);
  });

  it('is stopped when the encode spawns another command line (here another crf), which encodes as usual', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const video = await encode(liveInput(join(dir, 'other.mp4'), { crf: settings.crf + 2 }));
    await ended(spare as ChildProcess);
    expect(spare?.signalCode).toBe('SIGKILL');
    expect(spareProcess()).toBeUndefined();
    expect(Math.abs(video.durationSeconds - 1)).toBeLessThan(0.1);
    run.abort();
  });

  it('is stopped when its run ends without taking it, and writes nothing', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const before = await readdir(dir);
    run.abort();
    await ended(spare as ChildProcess);
    expect(spare?.signalCode).toBe('SIGKILL');
    expect(spareProcess()).toBeUndefined();
    expect(await readdir(dir)).toEqual(before);
  });

  it('starts nothing for what it cannot know ahead: a file encode, sound from a file, WebM, a rate that is not a whole number', async () => {
    const run = new AbortController();
    for (const plan of [{ live: false }, { audioStream: undefined }, { settings: { ...settings, format: 'webm' as const } }, { settings: { ...settings, fps: 29.97 } }]) {
      await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: run.signal, ...plan });
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(spareProcess(), JSON.stringify(plan)).toBeUndefined();
    }
    run.abort();
    // and none for a run already over
    const over = new AbortController();
    over.abort();
    await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: over.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(spareProcess()).toBeUndefined();
  });
});
