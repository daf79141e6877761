/**
 * Captions from the speech's own word timings: the words an engine spoke (normalised: "two thirty p m")
 * put back onto the text as it was written ("2:30pm"), grouped into cues at phrase boundaries, at most
 * two lines each, shown long enough to be read, written as WebVTT and SRT.
 */

/** A word as spoken, with its times in seconds from the start of the audio. */
export interface WordTiming {
  word: string;
  start: number;
  end: number;
}

/** A piece of the text as written (a whitespace-separated token), with when it is spoken. */
export interface CaptionWord {
  text: string;
  start: number;
  end: number;
  /** what follows it: the end of a sentence, of a phrase (a comma, a colon, a dash), or nothing */
  breakAfter: 'sentence' | 'phrase' | 'none';
}

export interface Cue {
  start: number;
  end: number;
  lines: string[];
}

export interface CueOptions {
  /** characters on one line (42: the common broadcast and web limit) */
  maxLineChars: number;
  maxLines: number;
  /** reading speed: a cue stays up at least its characters over this (when the next cue leaves room) */
  maxCharsPerSecond: number;
  /** a cue never spans more speech than this */
  maxSeconds: number;
  /** nor is it shown shorter than this, room allowing */
  minSeconds: number;
}

export const DEFAULT_CUE_OPTIONS: Readonly<CueOptions> = { maxLineChars: 42, maxLines: 2, maxCharsPerSecond: 20, maxSeconds: 6, minSeconds: 1 };

/**
 * Characters a line may hold on a picture of this shape: 42 on a wide one; fewer on a square or tall
 * one, where a line of caption text a twentieth of the picture's height tall (what players and the
 * burnt-in style draw) runs out of width sooner.
 */
export function lineCharsFor(width: number, height: number): number {
  return Math.max(16, Math.min(42, Math.floor((0.9 * width) / (0.55 * 0.052 * height))));
}

/** What a word is compared by: lower case, letters and digits only ("World." and "world" agree). */
function key(word: string): string {
  return word.toLowerCase().normalize('NFKD').replace(/[^\p{L}\p{N}]/gu, '');
}

/** Abbreviations whose full stop ends no sentence ("Dr. Smith"). */
const ABBREVIATION = /^(?:mr|mrs|ms|dr|prof|st|jr|sr|inc|ltd|co|vs|etc|e\.g|i\.e|no|approx|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|ave|fig|vol)\.$/iu;

function breakAfter(token: string): CaptionWord['breakAfter'] {
  const bare = token.replace(/["'”’)\]}»]+$/u, '');
  if (ABBREVIATION.test(bare)) return 'none';
  if (/[.!?…]$/u.test(bare)) return 'sentence';
  if (/[,;:–—-]$/u.test(bare)) return 'phrase';
  return 'none';
}

/** Tokens aligned at once: memory grows with its square (an hour of text is some 9,000 tokens). */
const ANCHOR_WINDOW = 400;

/**
 * The tokens and spoken words that read the same, as pairs of indices in order: a longest common
 * subsequence, found window by window (each window's pairs kept up to the last one in its first half,
 * the next window starting after it), so memory stays bounded however long the text.
 */
function anchors(a: readonly string[], b: readonly string[]): [number, number][] {
  const pairs: [number, number][] = [];
  let i0 = 0;
  let j0 = 0;
  while (i0 < a.length && j0 < b.length) {
    const i1 = Math.min(a.length, i0 + ANCHOR_WINDOW);
    // a token may be read as several words ("1,234" -> "one thousand two hundred thirty four")
    const j1 = Math.min(b.length, j0 + 4 * ANCHOR_WINDOW);
    const local = lcsPairs(a, b, i0, i1, j0, j1);
    if (i1 === a.length) {
      pairs.push(...local);
      break;
    }
    const half = i0 + ANCHOR_WINDOW / 2;
    const kept = local.filter(([i]) => i < half);
    const cut = kept[kept.length - 1] ?? local[local.length - 1];
    if (!cut) {
      // nothing reads the same here: the window's tokens share its words (see writtenWords)
      i0 = i1;
      j0 = j1;
      continue;
    }
    pairs.push(...(kept.length > 0 ? kept : local));
    i0 = cut[0] + 1;
    j0 = cut[1] + 1;
  }
  return pairs;
}

/** The longest common subsequence of a[i0..i1) and b[j0..j1), as index pairs. */
function lcsPairs(a: readonly string[], b: readonly string[], i0: number, i1: number, j0: number, j1: number): [number, number][] {
  const n = i1 - i0;
  const m = j1 - j0;
  const width = m + 1;
  const lcs = new Uint16Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const x = a[i0 + i] as string;
      lcs[i * width + j] = x !== '' && x === b[j0 + j] ? lcs[(i + 1) * width + j + 1]! + 1 : Math.max(lcs[(i + 1) * width + j]!, lcs[i * width + j + 1]!);
    }
  }
  const pairs: [number, number][] = [];
  for (let i = 0, j = 0; i < n && j < m;) {
    const x = a[i0 + i] as string;
    if (x !== '' && x === b[j0 + j]) pairs.push([i0 + i++, j0 + j++]);
    else if (lcs[(i + 1) * width + j]! >= lcs[i * width + j + 1]!) i++;
    else j++;
  }
  return pairs;
}

/**
 * The written text's tokens, each timed by the spoken words it became. Tokens and spoken words that read
 * the same anchor the match (a longest common subsequence); between two anchors, the tokens share the
 * spoken words in order ("2:30pm" takes "two thirty p m"). A token nothing was spoken for (a lone dash)
 * takes no time, at the previous word's end.
 */
export function writtenWords(text: string, spoken: readonly WordTiming[]): CaptionWord[] {
  const tokens = text.split(/\s+/u).filter((t) => t.length > 0);
  const a = tokens.map(key);
  const b = spoken.map((w) => key(w.word));
  const n = a.length;
  const m = b.length;
  const pairs = anchors(a, b);
  pairs.push([n, m]);
  const out: CaptionWord[] = [];
  let last = spoken[0]?.start ?? 0;
  const place = (token: string, words: readonly WordTiming[]): void => {
    const start = words[0]?.start ?? last;
    const end = words[words.length - 1]?.end ?? last;
    out.push({ text: token, start, end: Math.max(start, end), breakAfter: breakAfter(token) });
    last = Math.max(last, end);
  };
  let i = 0;
  let j = 0;
  for (const [pi, pj] of pairs) {
    // the tokens i..pi share the words j..pj in order
    const count = pi - i;
    const words = pj - j;
    for (let k = 0; k < count; k++) {
      const from = j + Math.floor((k * words) / count);
      const to = j + Math.floor(((k + 1) * words) / count);
      place(tokens[i + k] as string, spoken.slice(from, to));
    }
    if (pi < n) place(tokens[pi] as string, [spoken[pj] as WordTiming]);
    i = pi + 1;
    j = pj + 1;
  }
  return out;
}

/** Splits a cue's text into at most two lines of similar length, preferring a break after punctuation. */
function wrap(words: readonly string[], options: CueOptions): string[] {
  const text = words.join(' ');
  if (text.length <= options.maxLineChars || options.maxLines < 2 || words.length < 2) return [text];
  let best: [string, string] = [text, ''];
  let bestScore = Infinity;
  for (let k = 1; k < words.length; k++) {
    const first = words.slice(0, k).join(' ');
    const second = words.slice(k).join(' ');
    const longer = Math.max(first.length, second.length);
    // balanced lines; a break after a comma or a full stop is worth a few characters
    const last = words[k - 1] as string;
    const score = longer + (/[,;:.!?]$/u.test(last) && !ABBREVIATION.test(last) ? -6 : 0) + (longer > options.maxLineChars ? 1000 : 0);
    if (score < bestScore) {
      bestScore = score;
      best = [first, second];
    }
  }
  return best;
}

/**
 * Groups timed words into cues: a cue ends at the end of a sentence, at a phrase boundary once it holds
 * a fair amount, or when the next word would not fit its two lines or its span; each stays up long
 * enough to be read (its characters at `maxCharsPerSecond`, at least `minSeconds`) when the next leaves
 * room, and never overlaps it.
 */
export function buildCues(words: readonly CaptionWord[], options: Partial<CueOptions> = {}): Cue[] {
  const o = { ...DEFAULT_CUE_OPTIONS, ...options };
  const capacity = o.maxLineChars * o.maxLines;
  const groups: CaptionWord[][] = [];
  let current: CaptionWord[] = [];
  const length = (ws: readonly CaptionWord[]): number => ws.reduce((s, w) => s + w.text.length, 0) + Math.max(0, ws.length - 1);
  for (const word of words) {
    const next = [...current, word];
    const tooLong = length(next) > capacity - 2 || wrap(next.map((w) => w.text), o).some((l) => l.length > o.maxLineChars);
    if (current.length > 0 && (tooLong || word.end - (current[0] as CaptionWord).start > o.maxSeconds)) {
      groups.push(current);
      current = [word];
    } else {
      current = next;
    }
    const held = length(current);
    if (word.breakAfter === 'sentence' || (word.breakAfter === 'phrase' && held >= capacity / 2)) {
      groups.push(current);
      current = [];
    }
  }
  if (current.length > 0) groups.push(current);
  const cues: Cue[] = groups.map((g) => ({ start: (g[0] as CaptionWord).start, end: (g[g.length - 1] as CaptionWord).end, lines: wrap(g.map((w) => w.text), o) }));
  for (let k = 0; k < cues.length; k++) {
    const cue = cues[k] as Cue;
    const limit = cues[k + 1]?.start ?? Infinity;
    const chars = cue.lines.join(' ').length;
    const wanted = cue.start + Math.max(o.minSeconds, chars / o.maxCharsPerSecond);
    cue.end = Math.max(cue.end, Math.min(wanted, limit));
    if (cue.end > limit) cue.end = limit;
  }
  return cues.filter((c) => c.end > c.start && c.lines.join('').trim() !== '');
}

function stamp(seconds: number, separator: '.' | ','): string {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor(ms / 60_000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  const pad = (v: number, w = 2): string => String(v).padStart(w, '0');
  return `${pad(h)}:${pad(m)}:${pad(s)}${separator}${pad(ms % 1000, 3)}`;
}

/** WebVTT: the web's caption format (and the one WebM carries). */
export function toWebVtt(cues: readonly Cue[]): string {
  const escape = (line: string): string => line.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  return `WEBVTT\n\n${cues.map((c) => `${stamp(c.start, '.')} --> ${stamp(c.end, '.')}\n${c.lines.map(escape).join('\n')}\n`).join('\n')}`;
}

/** SubRip: what most players and editors read. */
export function toSrt(cues: readonly Cue[]): string {
  return cues.map((c, k) => `${k + 1}\n${stamp(c.start, ',')} --> ${stamp(c.end, ',')}\n${c.lines.join('\n')}\n`).join('\n');
}

/** A rough English syllable count: vowel groups, a silent final e dropped, at least one per word. */
export function countSyllables(word: string): number {
  const w = word.toLowerCase().replace(/[^a-z\p{L}]/gu, '');
  if (!w) return 0;
  if (!/[a-z]/.test(w)) return Math.max(1, [...w].length);
  const groups = w.replace(/(?:[^laeiouy]es|[^laeiouy]ed|[^laeiouy]e)$/, '').match(/[aeiouy]+/g);
  return Math.max(1, groups?.length ?? 1);
}

/** The words of a spoken text, as an engine is given them: whitespace-separated, outer punctuation off. */
export function spokenWords(text: string): string[] {
  return text
    .split(/\s+/u)
    .map((t) => t.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ''))
    .filter((t) => t.length > 0);
}

/**
 * Word times for an engine that gives none (espeak-ng on the command line): the audio's voiced stretches
 * (10 ms frames above a fifth of the loud frames' level, gaps under 150 ms bridged) are shared among the
 * words in order, each taking time in proportion to its syllables. Pauses thus fall between words, but
 * a word's edges are only as good as that proportion: typically within a syllable (100-200 ms).
 */
export function estimateWords(words: readonly string[], pcm: Int16Array, sampleRate: number): WordTiming[] {
  const frame = Math.max(1, Math.round(sampleRate / 100));
  const levels = frameLevels(pcm, frame);
  const loud = loudLevel(levels);
  const voiced = Array.from(levels, (l) => l > loud * 0.2 && l > 0);
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

/** The mean absolute sample of each `hop` samples (the last frame by its own length). */
export function frameLevels(pcm: Int16Array, hop: number): Float64Array {
  const levels = new Float64Array(Math.ceil(pcm.length / hop));
  for (let f = 0; f < levels.length; f++) {
    const end = Math.min(pcm.length, (f + 1) * hop);
    let sum = 0;
    for (let k = f * hop; k < end; k++) sum += Math.abs(pcm[k] as number);
    levels[f] = sum / (end - f * hop);
  }
  return levels;
}

/** How loud a recording's loud frames are: the 90th percentile of its frame levels. */
export function loudLevel(levels: ArrayLike<number>): number {
  return Array.from(levels).sort((x, y) => x - y)[Math.floor(levels.length * 0.9)] ?? 0;
}
