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

/** Runs a cascade of biquads over `input`, returning a new array. */
export function filter(input: Float32Array, stages: readonly Biquad[]): Float32Array {
  let x = input;
  for (const f of stages) {
    const y = new Float32Array(x.length);
    let x1 = 0, x2 = 0, y1 = 0, y2 = 0;
    for (let i = 0; i < x.length; i++) {
      const xi = x[i] as number;
      const yi = f.b0 * xi + f.b1 * x1 + f.b2 * x2 - f.a1 * y1 - f.a2 * y2;
      x2 = x1; x1 = xi; y2 = y1; y1 = yi;
      y[i] = yi;
    }
    x = y;
  }
  return x;
}

/** Mean square of `x` over consecutive blocks of `hop` samples (the last block may be short). */
export function blockPower(x: Float32Array, hop: number, blocks: number): Float64Array {
  const out = new Float64Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const from = b * hop;
    const to = Math.min(x.length, from + hop);
    let sum = 0;
    for (let i = from; i < to; i++) {
      const v = x[i] as number;
      sum += v * v;
    }
    out[b] = to > from ? sum / (to - from) : 0;
  }
  return out;
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
export function speechGate(levelsDb: ArrayLike<number>, absoluteFloorDb = -70): { floor: number; peak: number; threshold: number; hasSpeech: boolean } {
  const floor = Math.max(absoluteFloorDb, quantile(levelsDb, 0.1));
  const peak = Math.max(floor, quantile(levelsDb, 0.95));
  const range = peak - floor;
  const threshold = floor + Math.max(6, 0.3 * range);
  return { floor, peak, threshold, hasSpeech: range >= 12 };
}
