// When each word is spoken, for captions: from the engine's own timings where it gives them (festival's
// Word relation; flite's phoneme timings with each word's phonemes), else estimated from the audio.
import type { PhonemeTiming, WordTiming } from '@avatar/core';

export { estimateWords, spokenWords } from '@avatar/core';

const PAUSES = new Set(['pau', 'sil', 'h#', '_', '#']);

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

/** Words aligned at once: the table grows with the square of their phonemes (an hour of speech has 35,000). */
const ALIGN_WINDOW = 120;

/**
 * Each word's time span from the utterance's timed phonemes and each word's phonemes said alone: the
 * two phoneme sequences are aligned (edit distance, so a phoneme changed, added or dropped in context
 * moves nothing else) and a word spans the phonemes its own were aligned to. Aligned window by window
 * (each window's first half of words kept, the next starting after their last phoneme), so memory stays
 * bounded however long the speech. A word left with none takes no time, at the previous word's end.
 */
export function alignWords(phonemes: readonly PhonemeTiming[], words: readonly { word: string; phones: readonly string[] }[]): WordTiming[] {
  const a = phonemes.filter((p) => !PAUSES.has(p.phoneme));
  const spans: { start: number; end: number }[] = words.map(() => ({ start: Infinity, end: -Infinity }));
  let w0 = 0;
  let a0 = 0;
  while (w0 < words.length) {
    const w1 = Math.min(words.length, w0 + ALIGN_WINDOW);
    const last = w1 === words.length;
    const b: { phone: string; word: number }[] = [];
    for (let k = w0; k < w1; k++) for (const phone of (words[k] as { phones: readonly string[] }).phones) b.push({ phone, word: k });
    const a1 = last ? a.length : Math.min(a.length, a0 + Math.ceil(b.length * 1.5) + 20);
    const keep = last ? w1 : w0 + Math.ceil(ALIGN_WINDOW / 2);
    let next = a0;
    for (const [i, j] of editPairs(a, b, a0, a1)) {
      const word = (b[j] as { word: number }).word;
      if (word >= keep) continue;
      const p = a[i] as PhonemeTiming;
      const span = spans[word] as { start: number; end: number };
      span.start = Math.min(span.start, p.start);
      span.end = Math.max(span.end, p.end);
      next = Math.max(next, i + 1);
    }
    w0 = keep;
    a0 = next;
  }
  let previous = a[0]?.start ?? 0;
  return words.map((w, k) => {
    const span = spans[k] as { start: number; end: number };
    const start = Number.isFinite(span.start) ? Math.max(span.start, previous) : previous;
    const end = Number.isFinite(span.end) ? Math.max(span.end, start) : start;
    previous = end;
    return { word: w.word, start, end };
  });
}

/** An edit-distance alignment of a[a0..a1) to all of b: the pairs (index in a, index in b) matched or substituted. */
function editPairs(a: readonly PhonemeTiming[], b: readonly { phone: string }[], a0: number, a1: number): [number, number][] {
  const n = a1 - a0;
  const m = b.length;
  const width = m + 1;
  const cost = new Uint32Array((n + 1) * width);
  for (let i = 0; i <= n; i++) cost[i * width] = i;
  for (let j = 0; j <= m; j++) cost[j] = j;
  const same = (i: number, j: number): number => ((a[a0 + i - 1] as PhonemeTiming).phoneme === (b[j - 1] as { phone: string }).phone ? 0 : 1);
  for (let i = 1; i <= n; i++) {
    for (let j = 1; j <= m; j++) {
      cost[i * width + j] = Math.min(cost[(i - 1) * width + j - 1]! + same(i, j), cost[(i - 1) * width + j]! + 1, cost[i * width + j - 1]! + 1);
    }
  }
  const pairs: [number, number][] = [];
  for (let i = n, j = m; i > 0 && j > 0;) {
    const here = cost[i * width + j]!;
    if (here === cost[(i - 1) * width + j - 1]! + same(i, j)) {
      pairs.push([a0 + i - 1, j - 1]);
      i--;
      j--;
    } else if (here === cost[(i - 1) * width + j]! + 1) {
      i--;
    } else {
      j--;
    }
  }
  return pairs.reverse();
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

