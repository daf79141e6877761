/** Small signal helpers shared by the mouth track and the inspector. */

/** Second-order filter coefficients (normalised, a0 = 1). */
export interface Biquad {
  b0: number;
  b1: number;
  b2: number;
  a1: number;
  a2: number;
}

/** Butterworth-Q low- or high-pass (RBJ cookbook), cheap enough to run over minutes of audio. */
export function butterworth(kind: 'low' | 'high', cutoffHz: number, sampleRate: number): Biquad {
  const w = (2 * Math.PI * Math.min(cutoffHz, sampleRate * 0.45)) / sampleRate;
  const cos = Math.cos(w);
  const alpha = Math.sin(w) / (2 * Math.SQRT1_2);
  const a0 = 1 + alpha;
  const b1 = kind === 'low' ? 1 - cos : -(1 + cos);
  const b0 = kind === 'low' ? (1 - cos) / 2 : (1 + cos) / 2;
  return { b0: b0 / a0, b1: b1 / a0, b2: b0 / a0, a1: (-2 * cos) / a0, a2: (1 - alpha) / a0 };
}

/**
 * A cascade of biquads that keeps its state between calls, so audio can be filtered as it arrives:
 * running it over a clip in pieces gives the same samples as running it over the whole clip.
 */
export class Cascade {
  private readonly state: Float64Array;
  constructor(private readonly stages: readonly Biquad[]) {
    this.state = new Float64Array(stages.length * 4);
  }

  /** Filters the next samples; returns a new array. */
  run(input: Float32Array): Float32Array {
    let x = input;
    for (let s = 0; s < this.stages.length; s++) x = this.stage(s, x);
    return x;
  }

  private stage(s: number, x: Float32Array): Float32Array {
    const { b0, b1, b2, a1, a2 } = this.stages[s] as Biquad;
    const st = this.state;
    const y = new Float32Array(x.length);
    let x1 = st[s * 4] as number, x2 = st[s * 4 + 1] as number, y1 = st[s * 4 + 2] as number, y2 = st[s * 4 + 3] as number;
    for (let i = 0; i < x.length; i++) {
      const xi = x[i] as number;
      const yi = b0 * xi + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1; x1 = xi; y2 = y1; y1 = yi;
      y[i] = yi;
    }
    st[s * 4] = x1; st[s * 4 + 1] = x2; st[s * 4 + 2] = y1; st[s * 4 + 3] = y2;
    return y;
  }
}

/**
 * Values indexed by their position since the start (a 5 ms block of a clip), of which only the recent
 * ones are kept: whoever reads them says, with `forget`, which it will never read again. The mouth track
 * reads each block within a second of making it; kept whole, its two dozen series held 23 MB for a
 * 7-minute clip, growing with the clip.
 */
export class BlockSeries<T = number> {
  private values: T[] = [];
  private first = 0;

  /** How many values were pushed since the start (forgotten ones included). */
  get length(): number {
    return this.first + this.values.length;
  }

  /** How many values are held. */
  get held(): number {
    return this.values.length;
  }

  push(value: T): void {
    this.values.push(value);
  }

  /** The value at position k, which must not be forgotten; undefined past the end. */
  at(k: number): T | undefined {
    if (k < this.first) throw new RangeError(`block ${k} was forgotten (kept from ${this.first})`);
    return this.values[k - this.first];
  }

  /**
   * The held values from position k on, for a loop over many: value j is `values[j - offset]` (what
   * `at` costs per value, checked once).
   */
  from(k: number): { values: readonly T[]; offset: number } {
    if (k < this.first) throw new RangeError(`block ${k} was forgotten (kept from ${this.first})`);
    return { values: this.values, offset: this.first };
  }

  /** Lets go of the values before position k (in batches, so that the dropping costs O(1) a value). */
  forget(k: number): void {
    const n = Math.min(k, this.length) - this.first;
    if (n < FORGET_BATCH || n < this.values.length / 2) return;
    this.values = this.values.slice(n);
    this.first += n;
  }
}
const FORGET_BATCH = 1024;

/**
 * Mean square over consecutive blocks of `hop` samples, fed in pieces of any length: a block is
 * complete once its last sample has come; `flush` closes a last, shorter one.
 */
export class BlockPowers {
  readonly blocks = new BlockSeries();
  private sum = 0;
  private count = 0;
  constructor(private readonly hop: number) {}

  add(x: Float32Array): void {
    const hop = this.hop;
    let sum = this.sum;
    let count = this.count;
    for (let i = 0; i < x.length; i++) {
      const v = x[i] as number;
      sum += v * v;
      if (++count === hop) {
        this.blocks.push(sum / count);
        sum = 0;
        count = 0;
      }
    }
    this.sum = sum;
    this.count = count;
  }

  flush(): void {
    if (this.count > 0) this.close();
  }

  private close(): void {
    this.blocks.push(this.sum / this.count);
    this.sum = 0;
    this.count = 0;
  }
}

/**
 * Quantiles of a growing set of values, on a grid of `step` (a Fenwick tree of counts per bin): the
 * mouth track asks for them every 40 ms of audio over everything heard so far, which sorting the
 * values each time would make quadratic in the clip's length (minutes of audio: seconds of sorting).
 */
export class RunningQuantiles {
  private readonly tree: Int32Array;
  private readonly bins: number;
  private readonly top: number;
  count = 0;
  constructor(private readonly lo: number, hi: number, private readonly step: number) {
    this.bins = Math.ceil((hi - lo) / step) + 1;
    this.tree = new Int32Array(this.bins + 1);
    this.top = 2 ** Math.floor(Math.log2(this.bins));
  }

  add(value: number): void {
    const bin = Math.min(this.bins - 1, Math.max(0, Math.round((value - this.lo) / this.step)));
    for (let i = bin + 1; i <= this.bins; i += i & -i) this.tree[i] = (this.tree[i] as number) + 1;
    this.count++;
  }

  /** The q-quantile (0..1), interpolated between neighbouring ranks as `quantile` does; NaN when empty. */
  quantile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const pos = Math.min(this.count - 1, Math.max(0, q * (this.count - 1)));
    const lo = Math.floor(pos);
    const a = this.ranked(lo);
    const b = this.ranked(Math.min(this.count - 1, lo + 1));
    return a + (b - a) * (pos - lo);
  }

  /** The value of rank r (0 = smallest): the first bin whose running count passes r. */
  private ranked(r: number): number {
    let pos = 0;
    let rest = r;
    for (let step = this.top; step > 0; step >>= 1) {
      const next = pos + step;
      if (next <= this.bins && (this.tree[next] as number) <= rest) {
        pos = next;
        rest -= this.tree[next] as number;
      }
    }
    return this.lo + pos * this.step;
  }
}

export function toDb(power: number): number {
  return 10 * Math.log10(power + 1e-12);
}

/** The q-quantile (0..1) of the values, by sorting a copy. */
export function quantile(values: ArrayLike<number>, q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const pos = Math.min(sorted.length - 1, Math.max(0, q * (sorted.length - 1)));
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return (sorted[lo] as number) + ((sorted[hi] as number) - (sorted[lo] as number)) * (pos - lo);
}

export const clamp = (v: number, lo: number, hi: number): number => (v < lo ? lo : v > hi ? hi : v);

/** Pearson correlation of two equally long series; 0 when either is constant. */
export function pearson(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  if (n < 2) return 0;
  let ma = 0, mb = 0;
  for (let i = 0; i < n; i++) { ma += a[i] as number; mb += b[i] as number; }
  ma /= n; mb /= n;
  let sab = 0, saa = 0, sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = (a[i] as number) - ma;
    const db = (b[i] as number) - mb;
    sab += da * db; saa += da * da; sbb += db * db;
  }
  return saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
}

/**
 * Speech activity gate from a level track in dB: the noise floor is a low percentile (a steady hum
 * or hiss sits there, so it never counts as speech), the speech level a high one. Returns the
 * threshold in dB, and whether the clip holds anything that rises far enough above its floor.
 */
export function speechGate(levelsDb: ArrayLike<number>, absoluteFloorDb = -70): SpeechGate {
  return gateFrom((q) => quantile(levelsDb, q), absoluteFloorDb);
}

export interface SpeechGate {
  floor: number;
  peak: number;
  threshold: number;
  hasSpeech: boolean;
}

/** The gate from a quantile function of the levels (sorted values or running ones). */
export function gateFrom(quantileOf: (q: number) => number, absoluteFloorDb = -70): SpeechGate {
  const floor = Math.max(absoluteFloorDb, quantileOf(0.1));
  const peak = Math.max(floor, quantileOf(0.95));
  const range = peak - floor;
  const threshold = floor + Math.max(6, 0.3 * range);
  return { floor, peak, threshold, hasSpeech: range >= 12 };
}
