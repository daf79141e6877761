import { describe, expect, it } from 'vitest';
import { buildCues, toSrt, toWebVtt, writtenWords } from './captions.js';
import type { WordTiming } from './captions.js';

/** Spoken words, each 0.3 s with 0.1 s between, and a longer pause after a sentence. */
function timed(words: string[]): WordTiming[] {
  let t = 0.2;
  return words.map((word) => {
    const w = { word, start: t, end: t + 0.3 };
    t += 0.4;
    return w;
  });
}

describe('captions', () => {
  it('puts the spoken words back onto the text as written', () => {
    const spoken = timed(['it', 'is', 'two', 'thirty', 'p', 'm', 'now', 'doctor', 'smith', 'said', 'so']);
    const words = writtenWords('It is 2:30pm now, Dr. Smith said — so.', spoken);
    expect(words.map((w) => w.text)).toEqual(['It', 'is', '2:30pm', 'now,', 'Dr.', 'Smith', 'said', '—', 'so.']);
    const at = (text: string) => words.find((w) => w.text === text)!;
    // "2:30pm" spans "two" .. "m"
    expect(at('2:30pm').start).toBeCloseTo(spoken[2]!.start);
    expect(at('2:30pm').end).toBeCloseTo(spoken[5]!.end);
    // an abbreviation's full stop ends no sentence
    expect(at('Dr.')).toMatchObject({ start: spoken[7]!.start, end: spoken[7]!.end, breakAfter: 'none' });
    expect(at('so.').breakAfter).toBe('sentence');
    // nothing is spoken for the dash: no time, at the previous word's end
    expect(at('—')).toMatchObject({ start: spoken[9]!.end, end: spoken[9]!.end, breakAfter: 'phrase' });
    expect(at('now,').breakAfter).toBe('phrase');
    // never back in time
    for (let k = 1; k < words.length; k++) expect(words[k]!.start).toBeGreaterThanOrEqual(words[k - 1]!.start);
  });

  it('copes with an engine that spoke words the text does not have, or skipped some', () => {
    const words = writtenWords('Hello there world.', timed(['hello', 'uh', 'world']));
    expect(words.map((w) => [w.text, Math.round(w.start * 10) / 10])).toEqual([['Hello', 0.2], ['there', 0.6], ['world.', 1.0]]);
    expect(writtenWords('', timed(['a']))).toEqual([]);
    expect(writtenWords('Unspoken words.', [])).toEqual([
      { text: 'Unspoken', start: 0, end: 0, breakAfter: 'none' },
      { text: 'words.', start: 0, end: 0, breakAfter: 'sentence' },
    ]);
  });

  it('puts a long text\'s words back window by window, every plain word on its own', () => {
    const tokens: string[] = [];
    const spoken: string[] = [];
    for (let k = 0; k < 3000; k++) {
      if (k % 97 === 50) {
        tokens.push('2:30pm');
        spoken.push('two', 'thirty', 'p', 'm');
      } else {
        tokens.push(`word${k}`);
        spoken.push(`word${k}`);
      }
    }
    const timing = timed(spoken);
    const words = writtenWords(tokens.join(' '), timing);
    expect(words.map((w) => w.text)).toEqual(tokens);
    const byWord = new Map(timing.map((w) => [w.word, w.start]));
    expect(words.every((w) => w.text === '2:30pm' || w.start === byWord.get(w.text))).toBe(true);
    for (let k = 1; k < words.length; k++) expect(words[k]!.start).toBeGreaterThanOrEqual(words[k - 1]!.end);
  });

  it('cuts cues at sentences and long phrases, two balanced lines at most, readable and never overlapping', () => {
    const text = 'This is the first sentence. The second one is rather longer, and it goes on with a phrase after a comma, then some more words to spill over.';
    const spoken = timed(text.replace(/[.,]/g, '').split(' '));
    const cues = buildCues(writtenWords(text, spoken));
    expect(cues[0]!.lines).toEqual(['This is the first sentence.']);
    for (const cue of cues) {
      expect(cue.lines.length).toBeLessThanOrEqual(2);
      for (const line of cue.lines) expect(line.length).toBeLessThanOrEqual(42);
    }
    for (let k = 1; k < cues.length; k++) expect(cues[k]!.start).toBeGreaterThanOrEqual(cues[k - 1]!.end);
    // every word shows, in order
    expect(cues.flatMap((c) => c.lines).join(' ')).toBe(text);
    // a cue that breaks at a comma ends its line there
    expect(cues.some((c) => c.lines.some((l) => l.endsWith('longer,')))).toBe(true);
    // a short cue stays up at least a second where the next one leaves room
    const short = buildCues(writtenWords('Hi. Bye.', [{ word: 'hi', start: 0, end: 0.2 }, { word: 'bye', start: 3, end: 3.2 }]));
    expect(short.map((c) => [c.start, c.end])).toEqual([[0, 1], [3, 4]]);
    const tight = buildCues(writtenWords('Hi. Bye.', [{ word: 'hi', start: 0, end: 0.2 }, { word: 'bye', start: 0.5, end: 0.7 }]));
    expect(tight[0]!.end).toBe(0.5);
  });

  it('writes WebVTT and SRT', () => {
    const cues = [{ start: 1.5, end: 3.25, lines: ['Fish & chips <now>', 'second line'] }, { start: 3661.001, end: 3662, lines: ['later'] }];
    expect(toWebVtt(cues)).toBe('WEBVTT\n\n00:00:01.500 --> 00:00:03.250\nFish &amp; chips &lt;now&gt;\nsecond line\n\n01:01:01.001 --> 01:01:02.000\nlater\n');
    expect(toSrt(cues)).toBe('1\n00:00:01,500 --> 00:00:03,250\nFish & chips <now>\nsecond line\n\n2\n01:01:01,001 --> 01:01:02,000\nlater\n');
  });
});
