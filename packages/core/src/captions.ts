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
  // lcs[i][j]: the longest common run of tokens i.. and words j..
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    const row = lcs[i] as Uint32Array;
    const below = lcs[i + 1] as Uint32Array;
    for (let j = m - 1; j >= 0; j--) {
      row[j] = a[i] !== '' && a[i] === b[j] ? (below[j + 1] as number) + 1 : Math.max(below[j] as number, row[j + 1] as number);
    }
  }
  const pairs: [number, number][] = [];
  for (let i = 0, j = 0; i < n && j < m;) {
    if (a[i] !== '' && a[i] === b[j]) pairs.push([i++, j++]);
    else if ((lcs[i + 1] as Uint32Array)[j]! >= (lcs[i] as Uint32Array)[j + 1]!) i++;
    else j++;
  }
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
