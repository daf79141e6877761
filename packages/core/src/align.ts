/**
 * Words of a transcript placed on a recording: the transcript is synthesized (where each word falls is
 * then known), both are turned into cepstral frames (MFCCs every 20 ms, each normalised over its own
 * recording so two voices compare), and dynamic time warping maps the synthesized frames onto the
 * recording's; each word's times follow the map. The cost along the map says whether the transcript
 * matches the recording at all.
 */
import { frameLevels, loudLevel } from './captions.js';
import type { WordTiming } from './captions.js';

const HOP_SECONDS = 0.02;
const WINDOW_SECONDS = 0.025;
const MEL_BANDS = 26;
// c1..c5 only: the envelope's broad shape, which says what is said; higher coefficients say more about
// whose voice it is (with 12, another voice saying the transcript scored 0.95 against 0.99 for another text)
const COEFFICIENTS = 5;
/** recordings longer than this are not aligned: each warping table grows with length times band (600 s: 150 MB, two at once) */
export const MAX_ALIGN_SECONDS = 600;
/** how far (frames either side of the diagonal) the warp may stray: pauses of 2 to 10 s differ */
const MIN_BAND = 100;
const MAX_BAND = 500;

export interface SpeechSamples {
  pcm: Int16Array;
  sampleRate: number;
}

/** 5 MFCCs (c1..c5) per 20 ms frame, each coefficient normalised to zero mean and unit variance. */
export function cepstra(voice: SpeechSamples): Float32Array[] {
  const { pcm, sampleRate } = voice;
  const hop = Math.round(sampleRate * HOP_SECONDS);
  const window = Math.round(sampleRate * WINDOW_SECONDS);
  let size = 1;
  while (size < window) size *= 2;
  const hann = Float64Array.from({ length: window }, (_, k) => 0.5 - 0.5 * Math.cos((2 * Math.PI * k) / (window - 1)));
  // triangular filters evenly spaced on the mel scale, 100 Hz to 7 kHz (or Nyquist)
  const mel = (f: number): number => 2595 * Math.log10(1 + f / 700);
  const hz = (m: number): number => 700 * (10 ** (m / 2595) - 1);
  const top = Math.min(7000, sampleRate / 2);
  const edges = Array.from({ length: MEL_BANDS + 2 }, (_, k) => hz(mel(100) + ((mel(top) - mel(100)) * k) / (MEL_BANDS + 1)));
  const bin = (f: number): number => (f * size) / sampleRate;
  const frames: Float32Array[] = [];
  const re = new Float64Array(size);
  const im = new Float64Array(size);
  const energies = new Float64Array(MEL_BANDS);
  for (let at = 0; at + window <= pcm.length; at += hop) {
    re.fill(0);
    im.fill(0);
    for (let k = 0; k < window; k++) re[k] = ((pcm[at + k] as number) / 32768) * (hann[k] as number);
    fft(re, im);
    for (let b = 0; b < MEL_BANDS; b++) {
      const lo = bin(edges[b] as number), mid = bin(edges[b + 1] as number), hi = bin(edges[b + 2] as number);
      let sum = 0;
      for (let k = Math.ceil(lo); k <= Math.floor(hi) && k < size / 2; k++) {
        const w = k <= mid ? (k - lo) / (mid - lo) : (hi - k) / (hi - mid);
        sum += w * ((re[k] as number) ** 2 + (im[k] as number) ** 2);
      }
      energies[b] = Math.log(sum + 1e-10);
    }
    const c = new Float32Array(COEFFICIENTS);
    for (let n = 1; n <= COEFFICIENTS; n++) {
      let sum = 0;
      for (let b = 0; b < MEL_BANDS; b++) sum += (energies[b] as number) * Math.cos((Math.PI * n * (b + 0.5)) / MEL_BANDS);
      c[n - 1] = sum;
    }
    frames.push(c);
  }
  for (let n = 0; n < COEFFICIENTS; n++) {
    let mean = 0;
    for (const f of frames) mean += f[n] as number;
    mean /= Math.max(1, frames.length);
    let variance = 0;
    for (const f of frames) variance += ((f[n] as number) - mean) ** 2;
    const sd = Math.sqrt(variance / Math.max(1, frames.length)) || 1;
    for (const f of frames) f[n] = ((f[n] as number) - mean) / sd;
  }
  return frames;
}

/** In-place radix-2 FFT (size a power of two). */
function fft(re: Float64Array, im: Float64Array): void {
  const n = re.length;
  for (let i = 1, j = 0; i < n; i++) {
    let bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j] as number, re[i] as number];
      [im[i], im[j]] = [im[j] as number, im[i] as number];
    }
  }
  for (let len = 2; len <= n; len <<= 1) {
    const angle = (-2 * Math.PI) / len;
    for (let i = 0; i < n; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(angle * k), wi = Math.sin(angle * k);
        const a = i + k, b = i + k + len / 2;
        const xr = (re[b] as number) * wr - (im[b] as number) * wi;
        const xi = (re[b] as number) * wi + (im[b] as number) * wr;
        re[b] = (re[a] as number) - xr;
        im[b] = (im[a] as number) - xi;
        re[a] = (re[a] as number) + xr;
        im[a] = (im[a] as number) + xi;
      }
    }
  }
}

/**
 * Dynamic time warping of `a` onto `b` within a band around the diagonal (the lengths' ratio): for each
 * frame of `a`, the first and last frames of `b` it maps to, and the path's cost per frame of the longer one.
 */
export async function warp(a: readonly Float32Array[], b: readonly Float32Array[], bandFrames: number, signal?: AbortSignal): Promise<{ map: Int32Array; until: Int32Array; cost: number }> {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return { map: new Int32Array(n), until: new Int32Array(n), cost: Infinity };
  const width = 2 * bandFrames + 1;
  const center = (i: number): number => Math.round((i * (m - 1)) / Math.max(1, n - 1));
  const acc = new Float32Array(n * width).fill(Infinity);
  const from = new Uint8Array(n * width); // 0 diagonal, 1 from above (i-1), 2 from the left (j-1)
  const distance = (i: number, j: number): number => {
    const x = a[i] as Float32Array, y = b[j] as Float32Array;
    let d = 0;
    for (let k = 0; k < x.length; k++) d += ((x[k] as number) - (y[k] as number)) ** 2;
    return Math.sqrt(d);
  };
  const cell = (i: number, j: number): number => {
    const o = j - center(i) + bandFrames;
    return o >= 0 && o < width ? i * width + o : -1;
  };
  for (let i = 0; i < n; i++) {
    // a long warp takes seconds: the event loop (a worker's lease, a cancel) gets a turn every 500 rows
    if (i % 500 === 499) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal?.throwIfAborted();
    }
    const c = center(i);
    for (let j = Math.max(0, c - bandFrames); j <= Math.min(m - 1, c + bandFrames); j++) {
      const here = cell(i, j);
      const d = distance(i, j);
      if (i === 0 && j === 0) {
        acc[here] = d;
        continue;
      }
      let best = Infinity, dir = 0;
      // diagonal, from above, from the left, in that order of preference on a tie (an unreached cell is Infinity)
      const take = (prev: number, way: number): void => {
        if (prev >= 0 && (acc[prev] as number) < best) {
          best = acc[prev] as number;
          dir = way;
        }
      };
      if (i > 0 && j > 0) take(cell(i - 1, j - 1), 0);
      if (i > 0) take(cell(i - 1, j), 1);
      if (j > 0) take(cell(i, j - 1), 2);
      if (!Number.isFinite(best)) continue;
      acc[here] = best + d;
      from[here] = dir;
    }
  }
  const end = cell(n - 1, m - 1);
  if (end < 0 || !Number.isFinite(acc[end] as number)) {
    const diagonal = Int32Array.from({ length: n }, (_, i) => center(i));
    return { map: diagonal, until: diagonal, cost: Infinity };
  }
  // a frame of `a` may span several of `b` (a pause held longer): where that span starts and ends
  const map = new Int32Array(n);
  const until = new Int32Array(n).fill(-1);
  for (let i = n - 1, j = m - 1; ;) {
    if (until[i] === -1) until[i] = j;
    map[i] = j;
    if (i === 0 && j === 0) break;
    const dir = from[cell(i, j)];
    if (dir === 0) { i--; j--; } else if (dir === 1) i--; else j--;
  }
  // per frame of the longer one: a path has between max(n, m) and n + m steps
  return { map, until, cost: (acc[end] as number) / Math.max(n, m) };
}

/**
 * The warping cost, as a share of the cost onto the recording played backwards, above which the
 * transcript is taken not to be what was said. Measured with a flite synthesis against recordings by
 * other voices (festival, flite's male voice, espeak-ng): 0.42-0.85 saying the transcript, 0.995-1.00
 * saying another text. Noisy human recordings may score higher: then the captions come with a warning.
 */
export const MISMATCH_RATIO = 0.92;

/**
 * The transcript's words placed on the recording, from a synthesis of it with its own word times;
 * undefined when there is nothing to warp (no sound on one side) or no path. `matches` is false when the warping cost says the recording says something else; `cost` is that ratio.
 */
export async function alignSpeech(
  recording: SpeechSamples,
  synthesis: SpeechSamples & { words: readonly WordTiming[] },
  options: { signal?: AbortSignal } = {},
): Promise<{ words: WordTiming[]; cost: number; matches: boolean } | undefined> {
  // silence before the first sound and after the last is left out of the warp (its length is the
  // speaker's, not the text's, and would pull the band off the diagonal) and added back
  const a = voiced(synthesis, cepstra(synthesis));
  const b = voiced(recording, cepstra(recording));
  if (a.frames.length < 2 || b.frames.length < 2) return undefined;
  // the speeds may differ by a third, and pauses by seconds
  const band = Math.min(MAX_BAND, Math.max(MIN_BAND, Math.round(0.15 * Math.max(a.frames.length, b.frames.length))));
  const { map, until, cost } = await warp(a.frames, b.frames, band, options.signal);
  // does the transcript say what the recording says? Against warping onto the recording played
  // backwards (the same voice and sounds, no order), a match costs clearly less (measured below)
  const chance = (await warp(a.frames, [...b.frames].reverse(), band, options.signal)).cost;
  if (!Number.isFinite(cost) || !(chance > 0)) return undefined;
  const ratio = cost / chance;
  // the frame of b (in the whole recording) where a's frame at `seconds` (in the whole synthesis) goes
  const at = (seconds: number, frames: Int32Array): number => {
    const i = Math.min(frames.length - 1, Math.max(0, Math.round(seconds / HOP_SECONDS) - a.first));
    return ((frames[i] ?? 0) + b.first) * HOP_SECONDS;
  };
  let last = 0;
  const words = synthesis.words.map((w) => {
    // a word starts where its first frame's span starts, and ends where its last frame's ends
    const start = Math.max(last, at(w.start, map));
    const end = Math.max(start, at(w.end - HOP_SECONDS, until) + HOP_SECONDS);
    last = end;
    return { word: w.word, start, end };
  });
  return { words, cost: ratio, matches: ratio <= MISMATCH_RATIO };
}

/** The frames from the first to the last sound (above a tenth of the loud level), and where they start. */
function voiced(voice: SpeechSamples, frames: Float32Array[]): { frames: Float32Array[]; first: number } {
  const levels = frameLevels(voice.pcm, Math.round(voice.sampleRate * HOP_SECONDS)).subarray(0, frames.length);
  const loud = loudLevel(levels);
  const first = levels.findIndex((l) => l > loud * 0.1);
  let last = levels.length - 1;
  while (last > first && (levels[last] as number) <= loud * 0.1) last--;
  return first < 0 ? { frames: [], first: 0 } : { frames: frames.slice(first, last + 1), first };
}
