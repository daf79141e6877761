// When each word is spoken, for captions: from the engine's own timings where it gives them (festival's
// Word relation; flite's phoneme timings with each word's phonemes), else estimated from the audio.
import type { PhonemeTiming, WordTiming } from '@avatar/core';
import { countSyllables } from './text.js';

const PAUSES = new Set(['pau', 'sil', 'h#', '_', '#']);

/** The words of a spoken text, as an engine is given them: whitespace-separated, outer punctuation off. */
export function spokenWords(text: string): string[] {
  return text
    .split(/\s+/u)
    .map((t) => t.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ''))
    .filter((t) => t.length > 0);
}

/** flite -ps over words said one per sentence: each word's phonemes, between pauses. */
export function parseFliteWordGroups(stdout: string): string[][] {
  const groups: string[][] = [];
  let current: string[] = [];
  for (const phone of stdout.split(/\s+/u).filter(Boolean)) {
    if (PAUSES.has(phone)) {
      if (current.length > 0) groups.push(current);
      current = [];
    } else {
      current.push(phone);
    }
  }
  if (current.length > 0) groups.push(current);
  return groups;
}

/**
 * Each word's time span from the utterance's timed phonemes and each word's phonemes said alone: the
 * two phoneme sequences are aligned (edit distance, so a phoneme changed, added or dropped in context
 * moves nothing else) and a word spans the phonemes its own were aligned to. A word left with none
 * takes no time, at the previous word's end.
 */
export function alignWords(phonemes: readonly PhonemeTiming[], words: readonly { word: string; phones: readonly string[] }[]): WordTiming[] {
  const a = phonemes.filter((p) => !PAUSES.has(p.phoneme));
  const b: { phone: string; word: number }[] = words.flatMap((w, k) => w.phones.map((phone) => ({ phone, word: k })));
  const n = a.length;
  const m = b.length;
  const width = m + 1;
  const cost = new Uint32Array((n + 1) * width);
  for (let i = 0; i <= n; i++) cost[i * width] = i;
  for (let j = 0; j <= m; j++) cost[j] = j;
  for (let i = 1; i <= n; i++) {
    for (let j = 1; j <= m; j++) {
      const same = (a[i - 1] as PhonemeTiming).phoneme === (b[j - 1] as { phone: string }).phone ? 0 : 1;
      cost[i * width + j] = Math.min(cost[(i - 1) * width + j - 1]! + same, cost[(i - 1) * width + j]! + 1, cost[i * width + j - 1]! + 1);
    }
  }
  const spans: { start: number; end: number }[] = words.map(() => ({ start: Infinity, end: -Infinity }));
  for (let i = n, j = m; i > 0 && j > 0;) {
    const here = cost[i * width + j]!;
    const same = (a[i - 1] as PhonemeTiming).phoneme === (b[j - 1] as { phone: string }).phone ? 0 : 1;
    if (here === cost[(i - 1) * width + j - 1]! + same) {
      const p = a[i - 1] as PhonemeTiming;
      const span = spans[(b[j - 1] as { word: number }).word] as { start: number; end: number };
      span.start = Math.min(span.start, p.start);
      span.end = Math.max(span.end, p.end);
      i--;
      j--;
    } else if (here === cost[(i - 1) * width + j]! + 1) {
      i--;
    } else {
      j--;
    }
  }
  let last = a[0]?.start ?? 0;
  return words.map((w, k) => {
    const span = spans[k] as { start: number; end: number };
    const start = Number.isFinite(span.start) ? Math.max(span.start, last) : last;
    const end = Number.isFinite(span.end) ? Math.max(span.end, start) : start;
    last = end;
    return { word: w.word, start, end };
  });
}

/** festival's words, one per line: name, start and end in seconds (see the festival engine's script). */
export function parseFestivalWords(text: string): WordTiming[] {
  const out: WordTiming[] = [];
  for (const line of text.split('\n')) {
    const [word, start, end] = line.split('\t');
    if (!word || start === undefined || end === undefined) continue;
    const s = Number(start);
    const e = Number(end);
    if (Number.isFinite(s) && Number.isFinite(e)) out.push({ word, start: s, end: Math.max(s, e) });
  }
  return out;
}

/**
 * Word times for an engine that gives none (espeak-ng on the command line): the audio's voiced stretches
 * (10 ms frames above a fifth of the loud frames' level, gaps under 150 ms bridged) are shared among the
 * words in order, each taking time in proportion to its syllables. Pauses thus fall between words, but
 * a word's edges are only as good as that proportion: typically within a syllable (100-200 ms).
 */
export function estimateWords(words: readonly string[], pcm: Int16Array, sampleRate: number): WordTiming[] {
  const frame = Math.max(1, Math.round(sampleRate / 100));
  const levels: number[] = [];
  for (let at = 0; at < pcm.length; at += frame) {
    let sum = 0;
    const end = Math.min(pcm.length, at + frame);
    for (let k = at; k < end; k++) sum += Math.abs(pcm[k] as number);
    levels.push(sum / (end - at));
  }
  const sorted = [...levels].sort((x, y) => x - y);
  const loud = sorted[Math.floor(sorted.length * 0.9)] ?? 0;
  const voiced = levels.map((l) => l > loud * 0.2 && l > 0);
  const stretches: [number, number][] = [];
  for (let k = 0; k < voiced.length; k++) {
    if (!voiced[k]) continue;
    const last = stretches[stretches.length - 1];
    if (last && k - last[1] <= 15) last[1] = k + 1;
    else stretches.push([k, k + 1]);
  }
  const total = stretches.reduce((s, [a, b]) => s + (b - a), 0);
  const weights = words.map((w) => Math.max(1, countSyllables(w)));
  const sum = weights.reduce((s, w) => s + w, 0);
  // a point along the voiced stretches, laid end to end, back to seconds
  const toSeconds = (voicedFrames: number): number => {
    let left = voicedFrames;
    for (const [a, b] of stretches) {
      if (left <= b - a) return ((a + left) * frame) / sampleRate;
      left -= b - a;
    }
    const end = stretches[stretches.length - 1]?.[1] ?? 0;
    return (end * frame) / sampleRate;
  };
  let done = 0;
  return words.map((word, k) => {
    const from = (done / sum) * total;
    done += weights[k] as number;
    const to = (done / sum) * total;
    // a word that starts at a stretch's end starts at the next one's beginning
    const start = toSeconds(from + 1e-9);
    return { word, start, end: Math.max(start, toSeconds(to)) };
  });
}
