import { describe, expect, it } from 'vitest';
import { alignSpeech, cepstra, warp } from './align.js';

/** Tones of rising pitch, each `seconds` long with 0.2 s of silence between, at 16 kHz. */
function tones(seconds: readonly number[]): { pcm: Int16Array; words: { word: string; start: number; end: number }[] } {
  const rate = 16000;
  const total = seconds.reduce((s, d) => s + d + 0.2, 0.2);
  const pcm = new Int16Array(Math.round(total * rate));
  const words: { word: string; start: number; end: number }[] = [];
  let t = 0.2;
  seconds.forEach((d, k) => {
    const f = 200 * (k + 1);
    for (let i = Math.round(t * rate); i < Math.round((t + d) * rate); i++) pcm[i] = Math.round(8000 * (Math.sin((2 * Math.PI * f * i) / rate) + 0.5 * Math.sin((6 * Math.PI * f * i) / rate)));
    words.push({ word: `w${k}`, start: t, end: t + d });
    t += d + 0.2;
  });
  return { pcm, words };
}

describe('transcript alignment', () => {
  it('maps a sequence onto itself along the diagonal', async () => {
    const { pcm } = tones([0.3, 0.4, 0.3]);
    const frames = cepstra({ pcm, sampleRate: 16000 });
    const { map, cost } = await warp(frames, frames, 20);
    expect(cost).toBeCloseTo(0, 5);
    expect([...map]).toEqual(frames.map((_, i) => i));
  });

  it('carries word times onto a slower rendition of the same sounds', async () => {
    const synthesis = tones([0.3, 0.4, 0.3, 0.5]);
    const slower = tones([0.45, 0.6, 0.45, 0.75]);
    const placed = await alignSpeech({ pcm: slower.pcm, sampleRate: 16000 }, { pcm: synthesis.pcm, sampleRate: 16000, words: synthesis.words });
    placed!.words.forEach((w, k) => expect(Math.abs(w.start - slower.words[k]!.start), w.word).toBeLessThan(0.05));
    expect(placed!.matches).toBe(true);
  });

  it('is not thrown off by seconds of silence before the recording speaks', async () => {
    const synthesis = tones([0.3, 0.4, 0.3, 0.5]);
    const slower = tones([0.45, 0.6, 0.45, 0.75]);
    const late = new Int16Array(slower.pcm.length + 5 * 16000);
    late.set(slower.pcm, 5 * 16000);
    const placed = await alignSpeech({ pcm: late, sampleRate: 16000 }, { pcm: synthesis.pcm, sampleRate: 16000, words: synthesis.words });
    placed!.words.forEach((w, k) => expect(Math.abs(w.start - (slower.words[k]!.start + 5)), w.word).toBeLessThan(0.05));
  });

  it('has nothing to say of a silent side, and stops when cancelled', async () => {
    const synthesis = tones([0.3, 0.4]);
    expect(await alignSpeech({ pcm: new Int16Array(32000), sampleRate: 16000 }, { pcm: synthesis.pcm, sampleRate: 16000, words: synthesis.words })).toBeUndefined();
    const long = tones(Array.from({ length: 40 }, () => 0.5));
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(alignSpeech({ pcm: long.pcm, sampleRate: 16000 }, { pcm: long.pcm, sampleRate: 16000, words: long.words }, { signal: controller.signal })).rejects.toThrow('stop');
  });
});
