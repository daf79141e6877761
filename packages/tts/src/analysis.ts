/**
 * Speech measurements used to match a voice and to test the engines: pitch per frame (YIN),
 * voiced time, and syllable nuclei (peaks of the energy envelope in voiced stretches).
 */

export interface PitchTrack {
  /** seconds between frames */
  hop: number;
  /** Hz per frame, 0 where unvoiced or silent */
  f0: Float32Array;
  /** frame energy in dB (RMS relative to full scale) */
  energyDb: Float32Array;
}

export interface SpeechAnalysis {
  durationSeconds: number;
  /** frames with pitch, in seconds */
  voicedSeconds: number;
  /** frames louder than the silence threshold, in seconds */
  speechSeconds: number;
  medianPitchHz: number;
  p10PitchHz: number;
  p90PitchHz: number;
  syllables: number;
  /** syllable nuclei per second of speech (pauses excluded) */
  syllablesPerSecond: number;
}

const MIN_F0 = 60;
const MAX_F0 = 500;
const YIN_THRESHOLD = 0.15;
/** a frame counts as voiced only when the best YIN dip is this clear */
const MAX_APERIODICITY = 0.3;

function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const at = Math.min(sorted.length - 1, Math.max(0, (sorted.length - 1) * p));
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  const a = sorted[lo] ?? 0;
  const b = sorted[hi] ?? 0;
  return a + (b - a) * (at - lo);
}

/** Averages to a lower rate, so pitch tracking costs the same whatever the engine's native rate. */
export function resample(samples: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return samples;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(samples.length / ratio));
  for (let i = 0; i < out.length; i++) {
    // box filter over the source span: crude anti-aliasing, enough for pitch and energy
    const start = i * ratio;
    const end = start + ratio;
    let sum = 0;
    let n = 0;
    for (let j = Math.floor(start); j < Math.ceil(end) && j < samples.length; j++) {
      sum += samples[j] ?? 0;
      n++;
    }
    out[i] = n > 0 ? sum / n : 0;
  }
  return out;
}

/** YIN pitch per 10 ms frame (de Cheveigné & Kawahara 2002), with an energy gate. */
export function trackPitch(samples: Float32Array, sampleRate: number): PitchTrack {
  const rate = 16000;
  const x = resample(samples, sampleRate, rate);
  const hop = Math.round(rate * 0.01);
  const window = Math.round(rate * 0.025);
  const tauMin = Math.floor(rate / MAX_F0);
  const tauMax = Math.ceil(rate / MIN_F0);
  const frames = Math.max(0, Math.floor((x.length - window - tauMax) / hop) + 1);
  const f0 = new Float32Array(frames);
  const energyDb = new Float32Array(frames);
  const d = new Float64Array(tauMax + 1);
  for (let f = 0; f < frames; f++) {
    const start = f * hop;
    let energy = 0;
    for (let i = 0; i < window; i++) {
      const v = x[start + i] ?? 0;
      energy += v * v;
    }
    energyDb[f] = 10 * Math.log10(energy / window + 1e-12);
    // difference function and its cumulative-mean normalisation
    let running = 0;
    d[0] = 1;
    for (let tau = 1; tau <= tauMax; tau++) {
      let sum = 0;
      for (let i = 0; i < window; i++) {
        const diff = (x[start + i] ?? 0) - (x[start + i + tau] ?? 0);
        sum += diff * diff;
      }
      running += sum;
      d[tau] = running > 0 ? (sum * tau) / running : 1;
    }
    let best = -1;
    for (let tau = tauMin; tau <= tauMax; tau++) {
      if ((d[tau] ?? 1) < YIN_THRESHOLD) {
        while (tau + 1 <= tauMax && (d[tau + 1] ?? 1) < (d[tau] ?? 1)) tau++;
        best = tau;
        break;
      }
    }
    if (best < 0) {
      let min = Infinity;
      for (let tau = tauMin; tau <= tauMax; tau++) {
        if ((d[tau] ?? 1) < min) {
          min = d[tau] ?? 1;
          best = tau;
        }
      }
      if (min > MAX_APERIODICITY) best = -1;
    }
    if (best > tauMin && best < tauMax) {
      // parabolic interpolation around the dip for sub-sample precision
      const a = d[best - 1] ?? 0;
      const b = d[best] ?? 0;
      const c = d[best + 1] ?? 0;
      const denom = a - 2 * b + c;
      const shift = denom !== 0 ? (0.5 * (a - c)) / denom : 0;
      f0[f] = rate / (best + Math.max(-1, Math.min(1, shift)));
    } else {
      f0[f] = 0;
    }
  }
  // silence gate: frames far below the loud part of the recording are not speech, whatever YIN says
  const loud = percentile(Float32Array.from(energyDb).sort(), 0.95);
  const floor = Math.max(loud - 35, -70);
  for (let f = 0; f < frames; f++) if ((energyDb[f] ?? -120) < floor) f0[f] = 0;
  return { hop: hop / rate, f0, energyDb };
}

/** Removes isolated voiced frames and octave jumps that YIN occasionally makes. */
function cleanVoiced(track: PitchTrack): number[] {
  const { f0 } = track;
  const values: number[] = [];
  for (let i = 0; i < f0.length; i++) {
    const v = f0[i] ?? 0;
    if (v <= 0) continue;
    // require a voiced neighbour: a single voiced frame is usually noise
    if ((f0[i - 1] ?? 0) <= 0 && (f0[i + 1] ?? 0) <= 0) continue;
    values.push(v);
  }
  return values;
}

/** Counts syllable nuclei: energy peaks in voiced stretches that stand out from the dips around them. */
function countNuclei(track: PitchTrack): { nuclei: number; speechFrames: number } {
  const { energyDb, f0 } = track;
  const n = energyDb.length;
  // smooth the envelope over ~50 ms so a nucleus gives one peak
  const smooth = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    let c = 0;
    for (let j = i - 2; j <= i + 2; j++) {
      if (j >= 0 && j < n) {
        s += energyDb[j] ?? 0;
        c++;
      }
    }
    smooth[i] = s / c;
  }
  const loud = percentile(Float32Array.from(smooth).sort(), 0.95);
  const silence = Math.max(loud - 30, -70);
  let speechFrames = 0;
  for (let i = 0; i < n; i++) if ((smooth[i] ?? -120) > silence) speechFrames++;
  const voicedDb: number[] = [];
  for (let i = 0; i < n; i++) if ((f0[i] ?? 0) > 0) voicedDb.push(smooth[i] ?? 0);
  voicedDb.sort((a, b) => a - b);
  const threshold = Math.max(percentile(voicedDb, 0.5) - 6, silence);
  const minDip = 2; // dB a peak must rise above the lowest point since the previous peak
  let nuclei = 0;
  let lastPeak = -Infinity;
  let dipSinceLast = Infinity;
  let lastPeakIndex = -100;
  for (let i = 1; i < n - 1; i++) {
    const v = smooth[i] ?? -120;
    dipSinceLast = Math.min(dipSinceLast, v);
    const isPeak = v >= (smooth[i - 1] ?? -120) && v > (smooth[i + 1] ?? -120);
    if (!isPeak || v < threshold || (f0[i] ?? 0) <= 0) continue;
    if (nuclei === 0 || (lastPeak - dipSinceLast >= minDip && v - dipSinceLast >= minDip && i - lastPeakIndex >= 8)) {
      nuclei++;
      lastPeak = v;
      lastPeakIndex = i;
      dipSinceLast = v;
    } else if (v > lastPeak) {
      // a higher top of the same nucleus
      lastPeak = v;
      lastPeakIndex = i;
      dipSinceLast = v;
    }
  }
  return { nuclei, speechFrames };
}

export function analyzeSpeech(samples: Float32Array, sampleRate: number): SpeechAnalysis {
  const track = trackPitch(samples, sampleRate);
  const voiced = cleanVoiced(track).sort((a, b) => a - b);
  const { nuclei, speechFrames } = countNuclei(track);
  const speechSeconds = speechFrames * track.hop;
  return {
    durationSeconds: samples.length / sampleRate,
    voicedSeconds: voiced.length * track.hop,
    speechSeconds,
    medianPitchHz: percentile(voiced, 0.5),
    p10PitchHz: percentile(voiced, 0.1),
    p90PitchHz: percentile(voiced, 0.9),
    syllables: nuclei,
    syllablesPerSecond: speechSeconds > 0 ? nuclei / speechSeconds : 0,
  };
}

/** Spread of the voiced pitch in semitones (10th to 90th percentile); 0 for a monotone voice. */
export function pitchSpreadSemitones(a: Pick<SpeechAnalysis, 'p10PitchHz' | 'p90PitchHz'>): number {
  return a.p10PitchHz > 0 ? 12 * Math.log2(a.p90PitchHz / a.p10PitchHz) : 0;
}
