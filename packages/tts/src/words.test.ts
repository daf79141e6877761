import { describe, expect, it } from 'vitest';
import { alignWords, estimateWords, parseFestivalWords, parseFliteWordGroups, spokenWords } from './words.js';

describe('word timings', () => {
  it('takes the words of a spoken text as an engine is given them', () => {
    expect(spokenWords('Hello, world. It is two thirty p m — "now"!')).toEqual(['Hello', 'world', 'It', 'is', 'two', 'thirty', 'p', 'm', 'now']);
  });

  it('reads flite\'s words said one per sentence as phoneme groups between pauses', () => {
    expect(parseFliteWordGroups('pau hh ax l ow pau w er l d pau\n')).toEqual([['hh', 'ax', 'l', 'ow'], ['w', 'er', 'l', 'd']]);
  });

  it('times each word by the utterance\'s phonemes its own align to, a changed or dropped phoneme moving nothing else', () => {
    const phones = ['pau', 'hh', 'ax', 'l', 'ow', 'w', 'er', 'l', 'pau', 'dh', 'ah', 'k', 'ae', 't'];
    const timed = phones.map((phoneme, k) => ({ phoneme, start: k * 0.1, end: (k + 1) * 0.1 }));
    // "world" lost its d in context; "the" said alone is "dh ax", in the utterance "dh ah"
    const words = alignWords(timed, [
      { word: 'hello', phones: ['hh', 'ax', 'l', 'ow'] },
      { word: 'world', phones: ['w', 'er', 'l', 'd'] },
      { word: 'the', phones: ['dh', 'ax'] },
      { word: 'cat', phones: ['k', 'ae', 't'] },
    ]);
    const round = (v: number): number => Math.round(v * 100) / 100;
    expect(words.map((w) => [w.word, round(w.start), round(w.end)])).toEqual([['hello', 0.1, 0.5], ['world', 0.5, 0.8], ['the', 0.9, 1.1], ['cat', 1.1, 1.4]]);
    // a word with nothing to align takes no time, at the previous word's end
    const silent = alignWords(timed.slice(0, 5), [{ word: 'hello', phones: ['hh', 'ax', 'l', 'ow'] }, { word: 'uh', phones: [] }]);
    expect(silent[1]).toEqual({ word: 'uh', start: silent[0]!.end, end: silent[0]!.end });
  });

  it('aligns a long speech window by window, every word where it is said', () => {
    const words = Array.from({ length: 1000 }, (_, k) => ({ word: `w${k}`, phones: [`a${k % 7}`, `b${k % 5}`, `c${k % 3}`] }));
    const phonemes: { phoneme: string; start: number; end: number }[] = [];
    let t = 0;
    words.forEach((w, k) => {
      if (k % 10 === 0) phonemes.push({ phoneme: 'pau', start: t, end: (t += 0.2) });
      for (const phoneme of w.phones) phonemes.push({ phoneme, start: t, end: (t += 0.05) });
    });
    const timed = alignWords(phonemes, words);
    const expected = words.map((_, k) => 0.2 * (Math.floor(k / 10) + 1) + 0.15 * k);
    expect(timed.every((w, k) => Math.abs(w.start - expected[k]!) < 1e-6 && Math.abs(w.end - (expected[k]! + 0.15)) < 1e-6)).toBe(true);
  });

  it('reads festival\'s word list', () => {
    expect(parseFestivalWords('Hello\t0.165\t0.4\nworld\t0.4\t0.865\n\nbroken\tx\n')).toEqual([{ word: 'Hello', start: 0.165, end: 0.4 }, { word: 'world', start: 0.4, end: 0.865 }]);
  });

  it('estimates words along the voiced stretches, pauses falling between words', () => {
    const rate = 16000;
    // 0.5 s of sound, 0.5 s of silence, 0.5 s of sound
    const pcm = new Int16Array(rate * 1.5);
    for (let k = 0; k < pcm.length; k++) if (k < rate * 0.5 || k >= rate) pcm[k] = Math.round(8000 * Math.sin(k / 5));
    const words = estimateWords(['one', 'two'], pcm, rate);
    expect(words[0]!.start).toBeCloseTo(0, 1);
    expect(words[0]!.end).toBeCloseTo(0.5, 1);
    expect(words[1]!.start).toBeCloseTo(1.0, 1);
    expect(words[1]!.end).toBeCloseTo(1.5, 1);
  });
});
