import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@avatar/core';
import type { PhonemeTiming, RunContext, Speech } from '@avatar/core';
import { plugins as ttsPlugins } from '@avatar/tts';
import { BlockSeries, pearson } from './dsp.js';
import { computeMouthTrack, lipGap, MOUTH_PARAMETERS, MouthTracker } from './track.js';
import type { MouthTrack, SpeechAudio } from './track.js';

let dir = '';
const speeches = new Map<string, Speech>();

async function speak(engine: string, voice: string, text: string): Promise<Speech> {
  const plugin = ttsPlugins.find((p) => p.name === engine && p.stage === 'tts');
  if (!plugin || plugin.stage !== 'tts') throw new Error(`no ${engine} plugin`);
  const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  const ctx: RunContext = { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: dir };
  try {
    return await loaded.run(
      { text, voice: { engine, voice, language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(dir, `${engine}-${speeches.size}.wav`), maxSeconds: 60 },
      ctx,
    );
  } finally {
    await loaded.unload();
  }
}

const TEXT = 'Bob moves to the blue moon. Maybe five happy people will pop by, and we shall see.';

/** a + `gap` seconds of digital silence + b, phone timings shifted to match */
function concat(a: Speech, b: Speech, gap: number): SpeechAudio {
  const rate = a.sampleRate;
  const gapSamples = Math.round(gap * rate);
  const pcm = new Int16Array(a.pcm.length + gapSamples + b.pcm.length);
  pcm.set(a.pcm, 0);
  pcm.set(b.pcm, a.pcm.length + gapSamples);
  const offset = (a.pcm.length + gapSamples) / rate;
  const phonemes: PhonemeTiming[] = [
    ...(a.phonemes ?? []),
    { phoneme: 'pau', start: a.durationSeconds, end: offset },
    ...(b.phonemes ?? []).map((p) => ({ ...p, start: p.start + offset, end: p.end + offset })),
  ];
  return { pcm, sampleRate: rate, phonemes };
}

/** Deterministic pseudo-random noise (no Math.random: the test must repeat exactly). */
function noise(length: number, amplitude: number, seed = 1): Int16Array {
  let s = seed;
  const out = new Int16Array(length);
  for (let i = 0; i < length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = Math.round(((s / 2 ** 32) * 2 - 1) * amplitude);
  }
  return out;
}

/** RMS level in dB per video frame, computed here independently of the track's own analysis. */
function frameLevelsDb(audio: SpeechAudio, fps: number, frames: number): Float64Array {
  const out = new Float64Array(frames);
  for (let i = 0; i < frames; i++) {
    const from = Math.floor((i / fps) * audio.sampleRate);
    const to = Math.min(audio.pcm.length, Math.floor(((i + 1) / fps) * audio.sampleRate));
    let sum = 0;
    for (let j = from; j < to; j++) sum += ((audio.pcm[j] ?? 0) / 32768) ** 2;
    out[i] = Math.max(-60, 10 * Math.log10(sum / Math.max(1, to - from) + 1e-12));
  }
  return out;
}

const framesOf = (track: MouthTrack, from: number, to: number): number[] => {
  const out: number[] = [];
  for (let i = Math.max(0, Math.floor(from * track.fps)); i < Math.min(track.frameCount, Math.ceil(to * track.fps)); i++) out.push(i);
  return out;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const maxStep = (a: Float32Array): number => {
  let m = 0;
  for (let i = 1; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (a[i - 1] as number)));
  return m;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-lipsync-'));
  const [flite, festival, espeak, second] = await Promise.all([
    speak('flite', 'slt', TEXT),
    speak('festival', 'cmu_us_slt_arctic_hts', TEXT),
    speak('espeak-ng', 'en-us', TEXT),
    speak('flite', 'slt', 'We knew you would choose the blue shoes.'),
  ]);
  speeches.set('flite', flite);
  speeches.set('festival', festival);
  speeches.set('espeak-ng', espeak);
  speeches.set('second', second);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const speech = (name: string): Speech => {
  const s = speeches.get(name);
  if (!s) throw new Error(`no ${name} speech`);
  return s;
};

describe.each(['flite', 'festival', 'espeak-ng'])('mouth track from %s speech', (engine) => {
  it('has ceil(duration x fps) frames, closed first and last frames, and rest in the leading and trailing silence', () => {
    const s = speech(engine);
    for (const fps of [24, 25, 30]) {
      const track = computeMouthTrack(s, { fps });
      expect(track.frameCount).toBe(Math.ceil(s.durationSeconds * fps));
      expect(track.jawOpen.length).toBe(track.frameCount);
      expect(track.source).toBe(engine === 'espeak-ng' ? 'audio' : 'audio+phonemes');
      expect(track.jawOpen[0]).toBe(0);
      expect(track.jawOpen[track.frameCount - 1]).toBe(0);
      // every frame before the first and after the last loud one is at rest
      const levels = frameLevelsDb(s, fps, track.frameCount);
      const first = levels.findIndex((l) => l > -50);
      const last = track.frameCount - 1 - [...levels].reverse().findIndex((l) => l > -50);
      for (let i = 0; i < track.frameCount; i++) {
        if (i < first - 2 || i > last + 2) expect(lipGap(track, i), `frame ${i}`).toBeLessThan(0.05);
      }
      expect(maxStep(track.jawOpen.subarray(0, 4))).toBeLessThan(0.45);
      expect(Math.max(...track.jawOpen)).toBeGreaterThan(0.5);
    }
  });

  it('opens the jaw with the loudness of the audio', () => {
    const s = speech(engine);
    const track = computeMouthTrack(s, { fps: 25 });
    const levels = frameLevelsDb(s, 25, track.frameCount);
    const r = pearson(track.jawOpen, levels);
    expect(r).toBeGreaterThan(0.7);
    const audioOnly = computeMouthTrack(s, { fps: 25, audioOnly: true });
    expect(pearson(audioOnly.jawOpen, levels)).toBeGreaterThan(0.7);
  });

  it('moves smoothly: bounded frame-to-frame steps, no jitter', () => {
    const track = computeMouthTrack(speech(engine), { fps: 25 });
    expect(maxStep(track.jawOpen)).toBeLessThan(0.5);
    expect(maxStep(track.lipWidth)).toBeLessThan(0.5);
    expect(maxStep(track.teethVisible)).toBeLessThan(0.5);
    // jitter: a step up immediately followed by a step down (or the reverse), both visible
    let reversals = 0;
    const j = track.jawOpen;
    for (let i = 2; i < j.length; i++) {
      const a = (j[i - 1] as number) - (j[i - 2] as number);
      const b = (j[i] as number) - (j[i - 1] as number);
      if (a * b < 0 && Math.min(Math.abs(a), Math.abs(b)) > 0.15) reversals++;
    }
    expect(reversals).toBeLessThanOrEqual(Math.ceil(track.frameCount * 0.02));
  });

  it('is deterministic', () => {
    const a = computeMouthTrack(speech(engine), { fps: 30 });
    const b = computeMouthTrack(speech(engine), { fps: 30 });
    expect(Buffer.from(a.jawOpen.buffer).equals(Buffer.from(b.jawOpen.buffer))).toBe(true);
    expect(Buffer.from(a.lipWidth.buffer).equals(Buffer.from(b.lipWidth.buffer))).toBe(true);
    expect(Buffer.from(a.lipClosure.buffer).equals(Buffer.from(b.lipClosure.buffer))).toBe(true);
  });
});

describe.each(['flite', 'festival'])('phoneme-driven shapes (%s)', (engine) => {
  const phonesOf = (s: Speech, names: string[]): PhonemeTiming[] => (s.phonemes ?? []).filter((p) => names.includes(p.phoneme));

  it('presses the lips on p, b, m and keeps them apart on open vowels', () => {
    const s = speech(engine);
    const track = computeMouthTrack(s, { fps: 25 });
    const bilabials = phonesOf(s, ['p', 'b', 'm']);
    expect(bilabials.length).toBeGreaterThanOrEqual(6);
    for (const p of bilabials) {
      const frames = framesOf(track, p.start - 0.02, p.end + 0.02);
      expect(Math.max(...frames.map((i) => track.lipClosure[i] ?? 0)), `${p.phoneme} at ${p.start}`).toBeGreaterThan(0.7);
      expect(Math.min(...frames.map((i) => lipGap(track, i))), `${p.phoneme} at ${p.start}`).toBeLessThan(0.12);
    }
    const open = phonesOf(s, ['aa', 'ae', 'ay', 'ah']).filter((p) => p.end - p.start > 0.08);
    expect(open.length).toBeGreaterThan(0);
    const centres = open.map((p) => Math.floor(((p.start + p.end) / 2) * 25));
    expect(mean(centres.map((i) => lipGap(track, i)))).toBeGreaterThan(0.35);
  });

  it("rounds the lips on 'oo' and 'w', spreads them on 'ee'", () => {
    const s = speech(engine);
    const track = computeMouthTrack(s, { fps: 25 });
    const at = (p: PhonemeTiming): number => track.lipWidth[Math.floor(((p.start + p.end) / 2) * 25)] ?? 0;
    const rounded = phonesOf(s, ['uw', 'w']);
    const spread = phonesOf(s, ['iy', 'ey']);
    expect(rounded.length).toBeGreaterThanOrEqual(3);
    expect(spread.length).toBeGreaterThanOrEqual(3);
    expect(mean(rounded.map(at))).toBeLessThan(-0.3);
    expect(mean(spread.map(at))).toBeGreaterThan(0.15);
  });

  it('brings the lip to the teeth on f and v', () => {
    const s = speech(engine);
    const track = computeMouthTrack(s, { fps: 25 });
    for (const p of phonesOf(s, ['f', 'v'])) {
      const frames = framesOf(track, p.start - 0.02, p.end + 0.02);
      expect(Math.max(...frames.map((i) => track.lipToTeeth[i] ?? 0))).toBeGreaterThan(0.6);
    }
  });
});

describe('audio-only shapes', () => {
  it("rounds 'oo' more than 'ee' from the spectrum alone (phones used only to find them)", () => {
    const s = speech('second');
    const track = computeMouthTrack(s, { fps: 25, audioOnly: true });
    expect(track.source).toBe('audio');
    const at = (names: string[]): number =>
      mean((s.phonemes ?? []).filter((p) => names.includes(p.phoneme)).map((p) => track.lipWidth[Math.floor(((p.start + p.end) / 2) * 25)] ?? 0));
    // a weak cue (a few dB of band balance), so only the direction is asserted
    expect(at(['uw', 'w'])).toBeLessThan(at(['iy']));
  });

  it('closes the mouth in a pause between two sentences, also under background noise', () => {
    const joined = concat(speech('flite'), speech('second'), 1.2);
    const pauseFrom = speech('flite').durationSeconds + 0.15;
    const pauseTo = pauseFrom + 0.9;
    for (const audioOnly of [false, true]) {
      const track = computeMouthTrack(joined, { fps: 25, audioOnly });
      const pause = framesOf(track, pauseFrom, pauseTo);
      expect(Math.max(...pause.map((i) => track.jawOpen[i] ?? 1))).toBeLessThan(0.02);
      expect(Math.max(...pause.map((i) => Math.abs(track.lipWidth[i] ?? 1)))).toBeLessThan(0.02);
      expect(Math.max(...pause.map((i) => track.activity[i] ?? 1))).toBeLessThan(0.05);
    }
    // steady hiss 35 dB below the speech peaks: the pause still stays shut, speech still opens
    const hiss = noise(joined.pcm.length, 300, 7);
    const noisy = Int16Array.from(joined.pcm, (v, i) => Math.max(-32768, Math.min(32767, v + (hiss[i] as number))));
    const track = computeMouthTrack({ pcm: noisy, sampleRate: joined.sampleRate }, { fps: 25 });
    const pause = framesOf(track, pauseFrom, pauseTo);
    expect(Math.max(...pause.map((i) => track.jawOpen[i] ?? 1))).toBeLessThan(0.05);
    expect(Math.max(...track.jawOpen)).toBeGreaterThan(0.5);
  });

  it('keeps the mouth (nearly) still for a steady tone, steady noise and digital silence', () => {
    const rate = 16000;
    const tone = Int16Array.from({ length: rate * 3 }, (_, i) => Math.round(8000 * Math.sin((2 * Math.PI * 220 * i) / rate)));
    for (const pcm of [tone, noise(rate * 3, 6000), new Int16Array(rate * 3)]) {
      const track = computeMouthTrack({ pcm, sampleRate: rate }, { fps: 25 });
      expect(track.frameCount).toBe(75);
      expect(Math.max(...track.jawOpen)).toBeLessThan(0.05);
      expect(maxStep(track.jawOpen)).toBeLessThan(0.02);
    }
  });

  it('computes the track for two minutes of audio', () => {
    const s = speech('festival');
    const seconds = 120;
    const pcm = new Int16Array(seconds * s.sampleRate);
    for (let o = 0; o < pcm.length; o += s.pcm.length) pcm.set(s.pcm.subarray(0, Math.min(s.pcm.length, pcm.length - o)), o);
    const started = performance.now();
    const track = computeMouthTrack({ pcm, sampleRate: s.sampleRate }, { fps: 30 });
    const ms = performance.now() - started;
    expect(track.frameCount).toBe(3600);
    // speed is reported, not asserted: figures come from the benchmark scripts
    console.log(`mouth track: ${seconds} s of ${s.sampleRate} Hz audio in ${ms.toFixed(0)} ms`);
  });

  it('gives an empty track for empty audio', () => {
    const track = computeMouthTrack({ pcm: new Int16Array(0), sampleRate: 16000 }, { fps: 25 });
    expect(track.frameCount).toBe(0);
    expect(track.jawOpen.length).toBe(0);
  });

  it('refuses a zero or negative fps', () => {
    expect(() => computeMouthTrack(speech('flite'), { fps: 0 })).toThrow(RangeError);
  });
});

describe('the mouth track as the audio arrives', () => {
  /** Deterministic piece lengths between 1 sample and about 0.3 s. */
  function pieces(length: number, seed: number): number[] {
    const out: number[] = [];
    let s = seed;
    for (let at = 0; at < length;) {
      s = (s * 1664525 + 1013904223) >>> 0;
      const n = Math.min(length - at, 1 + (s % 9000));
      out.push(n);
      at += n;
    }
    return out;
  }

  /** Pushes the speech in the given pieces, each with the phones that start in it; checks what is final on the way. */
  function fed(s: SpeechAudio, sizes: number[], options: { audioOnly?: boolean } = {}): { track: MouthTrack; lagSeconds: number; changed: number } {
    const tracker = new MouthTracker({ fps: 25, sampleRate: s.sampleRate, phonemes: s.phonemes !== undefined, ...options });
    const phones = s.phonemes ?? [];
    const seen: number[] = [];
    let at = 0;
    let lagSeconds = 0;
    for (const n of sizes) {
      const from = at / s.sampleRate;
      at += n;
      const to = at / s.sampleRate;
      tracker.push(s.pcm.subarray(at - n, at), phones.filter((p) => p.start >= from && p.start < to));
      // once a second is in, frames are final within 0.8 s of the audio pushed
      if (to >= 1) lagSeconds = Math.max(lagSeconds, to - tracker.ready / 25);
      for (let i = seen.length; i < tracker.ready; i++) seen.push(tracker.poseAt(i).jawOpen);
    }
    tracker.finish();
    const track = tracker.track();
    const changed = seen.filter((v, i) => v !== track.jawOpen[i]).length;
    return { track, lagSeconds, changed };
  }

  const same = (a: MouthTrack, b: MouthTrack): boolean =>
    a.frameCount === b.frameCount && a.source === b.source &&
    [...MOUTH_PARAMETERS, 'activity' as const].every((p) => Buffer.from(a[p].buffer, a[p].byteOffset, a[p].byteLength).equals(Buffer.from(b[p].buffer, b[p].byteOffset, b[p].byteLength)));

  it.each(['flite', 'festival', 'espeak-ng'])('gives the same frames whole or in pieces of any size, each final within 0.8 s of audio (%s)', (engine) => {
    const s = speech(engine);
    for (const audioOnly of [false, true]) {
      const whole = computeMouthTrack(s, { fps: 25, audioOnly });
      for (const seed of [1, 2]) {
        const { track, lagSeconds, changed } = fed(s, pieces(s.pcm.length, seed), { audioOnly });
        expect(same(track, whole), `${engine} seed ${seed} audioOnly ${audioOnly}`).toBe(true);
        expect(lagSeconds).toBeLessThan(0.8);
        expect(changed).toBe(0);
      }
    }
    // one sample at a time, for the first two seconds (blocks and filters straddle every boundary)
    const head: SpeechAudio = { pcm: s.pcm.subarray(0, 2 * s.sampleRate), sampleRate: s.sampleRate, phonemes: (s.phonemes ?? []).filter((p) => p.start < 2) };
    expect(same(fed(head, Array.from({ length: head.pcm.length }, () => 1)).track, computeMouthTrack(head, { fps: 25 }))).toBe(true);
  });

  it('keeps only the blocks it will read again: a long clip fed in pieces or whole holds as little as a short one, with the same frames', () => {
    // three minutes of real speech: a sentence over and over, 0.3 s apart
    const one = speech('flite');
    const gap = Math.round(0.3 * one.sampleRate);
    const times = Math.ceil((180 * one.sampleRate) / (one.pcm.length + gap));
    const pcm = new Int16Array(times * (one.pcm.length + gap));
    const phonemes: PhonemeTiming[] = [];
    for (let t = 0; t < times; t++) {
      const at = t * (one.pcm.length + gap);
      pcm.set(one.pcm, at);
      for (const p of one.phonemes ?? []) phonemes.push({ ...p, start: p.start + at / one.sampleRate, end: p.end + at / one.sampleRate });
    }
    const long: SpeechAudio = { pcm, sampleRate: one.sampleRate, phonemes };
    const tracker = new MouthTracker({ fps: 25, sampleRate: long.sampleRate, phonemes: true });
    const heldBy: number[] = []; // the most held within each minute
    let at = 0;
    let phone = 0;
    for (const n of pieces(pcm.length, 3)) {
      const to = (at + n) / long.sampleRate;
      const first = phone;
      while (phone < phonemes.length && (phonemes[phone] as PhonemeTiming).start < to) phone++;
      tracker.push(pcm.subarray(at, at + n), phonemes.slice(first, phone));
      at += n;
      const minute = Math.floor(to / 60);
      heldBy[minute] = Math.max(heldBy[minute] ?? 0, tracker.heldBlocks);
    }
    tracker.finish();
    // pushed whole (as a file run and a recording are), the series never hold it all either: watched on
    // every value any of them takes
    let mostHeld = 0;
    const push = BlockSeries.prototype.push;
    BlockSeries.prototype.push = function (this: BlockSeries<unknown>, value: unknown) {
      push.call(this, value);
      mostHeld = Math.max(mostHeld, this.held);
    };
    let whole: MouthTrack;
    try {
      whole = computeMouthTrack(long, { fps: 25 });
    } finally {
      BlockSeries.prototype.push = push;
    }
    expect(mostHeld).toBeGreaterThan(0);
    expect(mostHeld).toBeLessThan(10 / 0.005);
    expect(same(tracker.track(), whole)).toBe(true);
    // two dozen series of 5 ms blocks (kept whole, 36,000 each): under 10 s of each, in the first minute as in the third
    expect(Math.max(...heldBy) / 24).toBeLessThan(10 / 0.005);
    expect(heldBy[2]).toBeLessThanOrEqual((heldBy[0] as number) * 1.1);
  });

  it('two sentences synthesised apart and pushed one after the other give the track of the joined audio', () => {
    const joined = concat(speech('flite'), speech('second'), 0.3);
    const cut = speech('flite').pcm.length;
    const { track } = fed(joined, [cut, joined.pcm.length - cut]);
    expect(same(track, computeMouthTrack(joined, { fps: 25 }))).toBe(true);
  });

  it('fed the speech engine\'s parts as they are made, gives the track of the whole speech; frames are out after the first sentences', async () => {
    const plugin = ttsPlugins.find((p) => p.name === 'flite' && p.stage === 'tts');
    if (!plugin || plugin.stage !== 'tts') throw new Error('no flite plugin');
    const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const tracker = new MouthTracker({ fps: 25, sampleRate: 16000, phonemes: true });
    const readyAfter: number[] = [];
    const text = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.';
    const whole = await loaded.run({
      text, voice: { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(dir, 'parts.wav'), maxSeconds: 60,
      onPart: (part) => {
        expect(part.sampleRate).toBe(16000);
        tracker.push(part.pcm, part.phonemes);
        readyAfter.push(tracker.ready);
      },
    }, { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: dir });
    await loaded.unload();
    tracker.finish();
    expect(readyAfter.length).toBe(3);
    // after "Hello!" and "I am Grace." (1.6 s of speech) the first frames are final
    expect(readyAfter[1]).toBeGreaterThan(10);
    const track = tracker.track();
    expect(same(track, computeMouthTrack(whole, { fps: 25 }))).toBe(true);
  });

  it('holds back the last frame (at rest) until the end, and refuses audio after it', () => {
    const s = speech('flite');
    const tracker = new MouthTracker({ fps: 25, sampleRate: s.sampleRate });
    tracker.push(s.pcm);
    expect(tracker.frameCount).toBeUndefined();
    const count = Math.ceil(s.durationSeconds * 25);
    expect(tracker.ready).toBeLessThan(count);
    tracker.finish();
    expect(tracker.frameCount).toBe(count);
    expect(tracker.poseAt(count - 1).jawOpen).toBe(0);
    expect(() => tracker.push(new Int16Array(10))).toThrow(/finished/);
    expect(() => new MouthTracker({ fps: 25, sampleRate: 0 })).toThrow(RangeError);
  });
});
