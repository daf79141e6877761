import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryLogger, QUALITY_PRESETS, type EncodeInput, type EncodeSettings, type RunContext } from '@avatar/core';
import { spareProcesses } from './ahead.js';
import { ffmpegPlugin } from './plugin.js';
import { probeMedia } from './probe.js';

// ffmpeg started ahead of a live encode (ahead.ts): taken by the encode that spawns the same command
// line, stopped when its run ends without taking it.
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

async function encode(input: EncodeInput, log = new MemoryLogger()) {
  const loaded = await ffmpegPlugin.load({ log, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run(input, { ...ctx(), log });
  } finally {
    await loaded.unload();
  }
}

/** The ffmpeg started ahead, once it runs (its spawn comes a few turns of the event loop after the call). */
async function startedAhead(signal: AbortSignal, standby = false): Promise<ChildProcess | undefined> {
  const before = new Set(spareProcesses());
  await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal, standby });
  for (let i = 0; i < 200; i++) {
    const started = spareProcesses().find((proc) => !before.has(proc) && proc.pid);
    if (started) return started;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return undefined;
}

const ended = (proc: ChildProcess): Promise<void> =>
  proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((resolve) => proc.once('exit', () => resolve()));

describe('ffmpeg started ahead of a live encode', () => {
  it('is taken by the live encode that spawns the same command line, which then encodes with it', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const outputPath = join(dir, 'taken.mp4');
    const log = new MemoryLogger();
    const video = await encode(liveInput(outputPath), log);
    expect(log.entries.find((e) => e.message === 'ffmpeg started ahead of the encode taken')?.fields?.pid).toBe(spare?.pid);
    run.abort();
    await ended(spare as ChildProcess);
    // it encoded the video and exited on its own; nothing else is kept
    expect(spare?.exitCode).toBe(0);
    expect(spareProcesses()).toEqual([]);
    expect(Math.abs(video.durationSeconds - 1)).toBeLessThan(0.1);
    const info = await probeMedia(outputPath);
    expect(info.streams.map((s) => s.codec).sort()).toEqual(['aac', 'h264']);
  });

  it('is left alone by an encode of another command line (here another crf), which starts its own; its run\'s end stops it', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const log = new MemoryLogger();
    const video = await encode(liveInput(join(dir, 'other.mp4'), { crf: settings.crf + 2 }), log);
    expect(Math.abs(video.durationSeconds - 1)).toBeLessThan(0.1);
    expect(log.entries.some((e) => e.message.startsWith('ffmpeg started ahead'))).toBe(false);
    expect(spareProcesses()).toEqual([spare]);
    run.abort();
    await ended(spare as ChildProcess);
    expect(spare?.signalCode).toBe('SIGKILL');
    expect(spareProcesses()).toEqual([]);
  });

  it('runs side by side keep one each: each live encode takes one', async () => {
    const runs = [new AbortController(), new AbortController()];
    const kept = [await startedAhead(runs[0]!.signal), await startedAhead(runs[1]!.signal)];
    expect(new Set(spareProcesses())).toEqual(new Set(kept));
    await Promise.all([encode(liveInput(join(dir, 'side-a.mp4'))), encode(liveInput(join(dir, 'side-b.mp4')))]);
    for (const run of runs) run.abort();
    for (const proc of kept) await ended(proc as ChildProcess);
    expect(kept.map((proc) => proc?.exitCode)).toEqual([0, 0]);
  });

  it('is stopped when its run ends without taking it, and writes nothing', async () => {
    const run = new AbortController();
    const spare = await startedAhead(run.signal);
    expect(spare?.pid).toBeGreaterThan(0);
    const before = await readdir(dir);
    run.abort();
    await ended(spare as ChildProcess);
    expect(spare?.signalCode).toBe('SIGKILL');
    expect(spareProcesses()).toEqual([]);
    expect(await readdir(dir)).toEqual(before);
  });

  it('a service\'s standby serves a run: the run starts none of its own, and its end leaves the standby to the service', async () => {
    const standby = new AbortController();
    const run = new AbortController();
    const waiting = await startedAhead(standby.signal, true);
    expect(waiting?.pid).toBeGreaterThan(0);
    await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: run.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(spareProcesses()).toEqual([waiting]);
    // the run's end leaves the standby alone; the service's end stops it
    run.abort();
    expect(spareProcesses()).toEqual([waiting]);
    standby.abort();
    await ended(waiting as ChildProcess);
    expect(spareProcesses()).toEqual([]);
  });

  it('a standby serves one run at a time: a run asking beside the one it is reserved for starts its own', async () => {
    const standby = new AbortController();
    const [a, b] = [new AbortController(), new AbortController()];
    const waiting = await startedAhead(standby.signal, true);
    await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: a.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(spareProcesses()).toEqual([waiting]);
    const own = await startedAhead(b.signal);
    expect(own?.pid).toBeGreaterThan(0);
    expect(spareProcesses()).toEqual([waiting, own]);
    for (const run of [a, b, standby]) run.abort();
    for (const proc of [waiting, own]) await ended(proc as ChildProcess);
    expect(spareProcesses()).toEqual([]);
  });

  it('starts nothing for what it cannot know ahead: a file encode, sound from a file, WebM, a rate that is not a whole number', async () => {
    const run = new AbortController();
    for (const plan of [{ live: false }, { audioStream: undefined }, { settings: { ...settings, format: 'webm' as const } }, { settings: { ...settings, fps: 29.97 } }]) {
      await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: run.signal, ...plan });
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(spareProcesses(), JSON.stringify(plan)).toEqual([]);
    }
    run.abort();
    // and none for a run already over
    const over = new AbortController();
    over.abort();
    await ffmpegPlugin.encodeAhead?.({ settings, live: true, audioStream: { sampleRate: RATE }, signal: over.signal });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(spareProcesses()).toEqual([]);
  });
});
