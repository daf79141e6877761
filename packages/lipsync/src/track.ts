import type { PhonemeTiming, Speech } from '@avatar/core';
import { blockPower, butterworth, clamp, filter, quantile, speechGate, toDb } from './dsp.js';
import { REST, visemeFor } from './visemes.js';
import type { VisemeTarget } from './visemes.js';

/** Per-frame mouth parameters, one Float32Array per parameter (frame i shows time i/fps). */
export interface MouthTrack {
  fps: number;
  frameCount: number;
  durationSeconds: number;
  /** 0 closed .. 1 wide open */
  jawOpen: Float32Array;
  /** -1 rounded and narrow .. +1 spread; 0 relaxed */
  lipWidth: Float32Array;
  /**
   * 0..1 lip pressure; 1 = lips pressed together (p, b, m). The visible lip gap is
   * jawOpen x (1 - lipClosure), so a closure shuts the lips even while the jaw is still open.
   */
  lipClosure: Float32Array;
  /** 0..1 how much of the upper teeth shows */
  teethVisible: Float32Array;
  /** 0..1 lower lip tucked against the upper teeth (f, v) */
  lipToTeeth: Float32Array;
  /** 0..1 speech presence from the audio (0 = silence) */
  activity: Float32Array;
  /** what drove the shapes */
  source: 'audio' | 'audio+phonemes';
}

export const MOUTH_PARAMETERS = ['jawOpen', 'lipWidth', 'lipClosure', 'teethVisible', 'lipToTeeth'] as const;
export type MouthParameter = (typeof MOUTH_PARAMETERS)[number];
export type MouthPose = Record<MouthParameter, number>;

export interface MouthTrackOptions {
  fps: number;
  /** scales jaw opening and lip width (0..2); 1 = natural */
  expressiveness?: number;
  /** ignore the engine's phoneme timings even when present (audio only) */
  audioOnly?: boolean;
}

export type SpeechAudio = Pick<Speech, 'pcm' | 'sampleRate'> & { phonemes?: readonly PhonemeTiming[] | undefined };

/** Analysis step: 5 ms resolves p/b/m closures (40-100 ms) with room to spare at 60 fps. */
const HOP_SECONDS = 0.005;

/**
 * Smoothing time constants, seconds: `rise` while the value grows, `fall` while it shrinks. Fast rises
 * let short events (a 40 ms closure, a brief vowel) reach their target; slower falls make the return
 * gentle. Both passes of the zero-phase smoother use them, so the mouth anticipates a shape as much
 * as it lingers after it, and the track has no net lag against the audio.
 */
const SMOOTHING: Readonly<Record<MouthParameter, { rise: number; fall: number }>> = {
  jawOpen: { rise: 0.022, fall: 0.045 },
  lipWidth: { rise: 0.045, fall: 0.045 },
  lipClosure: { rise: 0.01, fall: 0.03 },
  teethVisible: { rise: 0.03, fall: 0.045 },
  lipToTeeth: { rise: 0.012, fall: 0.03 },
};

/** Lips start closing this long before the acoustic closure of p/b/m and f/v (anticipation). */
const CLOSURE_LEAD_SECONDS = 0.02;
/** A closure shorter than this in the engine's timing is stretched, so it is visible at 25 fps. */
const CLOSURE_MIN_SECONDS = 0.06;
/** Targets fade in over the first and out over the last this many seconds. */
const EDGE_TAPER_SECONDS = 0.08;

interface Features {
  /** 0..1 loudness above the speech gate */
  level: Float32Array;
  /** share of the power below 900 Hz (vowels, nasals: high; s, sh, f: low) */
  sonority: Float32Array;
  /** share of the power above 3.5 kHz (frication) */
  frication: Float32Array;
  /** -1..1 power at 1.8-3 kHz (F2 of spread vowels) against 0.5-1.2 kHz, normalised over the clip */
  spread: Float32Array;
}

function analyse(pcm: Int16Array, sampleRate: number, blocks: number, hop: number): Features {
  const x = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) x[i] = (pcm[i] as number) / 32768;
  const low = butterworth('low', 900, sampleRate);
  const high = butterworth('high', 3500, sampleRate);
  const pTotal = blockPower(x, hop, blocks);
  const pLow = blockPower(filter(x, [low, low]), hop, blocks);
  const pHigh = blockPower(filter(x, [high, high]), hop, blocks);
  // F2 of spread vowels (iy, ey) sits at 1.8-3 kHz; rounding lowers every formant, so the lips'
  // shape shows as the balance between that band and the F1 region (500-1200 Hz).
  const hi2 = butterworth('high', 1800, sampleRate);
  const pF2 = blockPower(filter(x, [hi2, hi2, butterworth('low', 3000, sampleRate)]), hop, blocks);
  const pF1 = blockPower(filter(x, [butterworth('high', 500, sampleRate), butterworth('low', 1200, sampleRate)]), hop, blocks);

  // 15 ms analysis window centred on each block
  const win = (p: Float64Array, k: number): number =>
    ((p[k - 1] ?? p[k] ?? 0) + (p[k] ?? 0) + (p[k + 1] ?? p[k] ?? 0)) / 3;
  const levelDb = new Float32Array(blocks);
  for (let k = 0; k < blocks; k++) levelDb[k] = toDb(win(pTotal, k));
  const gate = speechGate(levelDb);
  const span = Math.max(1, gate.peak - gate.threshold);

  const level = new Float32Array(blocks);
  const sonority = new Float32Array(blocks);
  const frication = new Float32Array(blocks);
  const spreadDb = new Float32Array(blocks);
  for (let k = 0; k < blocks; k++) {
    const total = win(pTotal, k) + 1e-12;
    level[k] = gate.hasSpeech ? clamp(((levelDb[k] as number) - gate.threshold) / span, 0, 1) : 0;
    sonority[k] = clamp(win(pLow, k) / total, 0, 1);
    frication[k] = clamp(win(pHigh, k) / total, 0, 1);
    spreadDb[k] = toDb(win(pF2, k)) - toDb(win(pF1, k));
  }

  // Spread is judged against this speaker's own vowels: median and spread over the clearly voiced frames.
  const voiced: number[] = [];
  for (let k = 0; k < blocks; k++) if ((level[k] as number) > 0.3 && (sonority[k] as number) > 0.5) voiced.push(spreadDb[k] as number);
  const spread = new Float32Array(blocks);
  if (voiced.length >= 10) {
    const median = quantile(voiced, 0.5);
    const scale = Math.max(3, (quantile(voiced, 0.85) - quantile(voiced, 0.15)) / 2);
    for (let k = 0; k < blocks; k++) spread[k] = clamp(((spreadDb[k] as number) - median) / scale, -1, 1);
  }
  return { level, sonority, frication, spread };
}

const smoothstep = (v: number, lo: number, hi: number): number => {
  const u = clamp((v - lo) / (hi - lo), 0, 1);
  return u * u * (3 - 2 * u);
};

/** Mouth targets from the audio alone, per analysis block. */
function audioTargets(f: Features, blocks: number): Record<MouthParameter, Float32Array> {
  const out = emptyTargets(blocks);
  for (let k = 0; k < blocks; k++) {
    const level = f.level[k] as number;
    const sonority = f.sonority[k] as number;
    // Frication (s, sh, f, th) narrows the jaw; vowels and nasals keep the loudness-driven opening.
    const fric = smoothstep(f.frication[k] as number, 0.15, 0.5) * (1 - sonority);
    const jaw = Math.pow(level, 1.3) * (0.3 + 0.7 * sonority);
    const voicedness = smoothstep(sonority, 0.3, 0.7) * Math.min(1, level * 3);
    const width = 0.6 * (f.spread[k] as number) * voicedness + 0.25 * fric;
    out.jawOpen[k] = jaw;
    out.lipWidth[k] = width;
    out.teethVisible[k] = clamp(0.9 * fric * Math.min(1, level * 3) + 0.5 * jaw * clamp(0.4 + width, 0, 1), 0, 1);
  }
  return out;
}

function emptyTargets(blocks: number): Record<MouthParameter, Float32Array> {
  return {
    jawOpen: new Float32Array(blocks),
    lipWidth: new Float32Array(blocks),
    lipClosure: new Float32Array(blocks),
    teethVisible: new Float32Array(blocks),
    lipToTeeth: new Float32Array(blocks),
  };
}

/**
 * Targets from the engine's phone timings, per analysis block. Transparent values (null in the
 * viseme table) are interpolated between the neighbouring phones that do constrain them; p/b/m and
 * f/v segments start a little early and last at least CLOSURE_MIN_SECONDS.
 */
function phonemeTargets(phonemes: readonly PhonemeTiming[], blocks: number, hop: number): Record<MouthParameter, Float32Array> | undefined {
  const segs = phonemes
    .map((p) => ({ start: p.start, end: p.end, target: visemeFor(p.phoneme)?.[1] }))
    .filter((s) => s.end > s.start);
  if (segs.length === 0) return undefined;
  const known = segs.filter((s) => s.target !== undefined).length;
  // Symbols from another phone set (espeak's, say) would make a meaningless track: use audio alone.
  if (known < segs.length * 0.8) return undefined;
  const out = emptyTargets(blocks);
  const centre = (s: (typeof segs)[number]): number => (s.start + s.end) / 2;

  // value of a transparent parameter at time t: linear between the nearest constraining phones
  const resolve = (i: number, key: 'width' | 'teeth', time: number): number => {
    let prev = i - 1;
    while (prev >= 0 && segs[prev]?.target?.[key] == null) prev--;
    let next = i + 1;
    while (next < segs.length && segs[next]?.target?.[key] == null) next++;
    const pv = prev >= 0 ? (segs[prev]?.target?.[key] ?? 0) : 0;
    const nv = next < segs.length ? (segs[next]?.target?.[key] ?? 0) : 0;
    const pt = prev >= 0 ? centre(segs[prev] as (typeof segs)[number]) : 0;
    const nt = next < segs.length ? centre(segs[next] as (typeof segs)[number]) : time + 1;
    return nt > pt ? pv + ((nv - pv) * clamp((time - pt) / (nt - pt), 0, 1)) : pv;
  };

  let seg = 0;
  for (let k = 0; k < blocks; k++) {
    const time = (k + 0.5) * hop;
    while (seg < segs.length - 1 && (segs[seg]?.end ?? 0) <= time) seg++;
    const s = segs[seg];
    const target: VisemeTarget = s && time >= s.start && time < s.end ? (s.target ?? REST) : REST;
    out.jawOpen[k] = target.jaw;
    out.lipWidth[k] = target.width ?? resolve(seg, 'width', time);
    out.teethVisible[k] = target.teeth ?? resolve(seg, 'teeth', time);
  }
  // closures and lip-to-teeth: stretched, with anticipation
  for (const s of segs) {
    const tg = s.target;
    if (!tg || (tg.closure === 0 && tg.lipToTeeth === 0)) continue;
    const start = s.start - CLOSURE_LEAD_SECONDS;
    const end = Math.max(s.end, start + CLOSURE_MIN_SECONDS);
    const from = Math.max(0, Math.floor(start / hop));
    const to = Math.min(blocks, Math.ceil(end / hop));
    for (let k = from; k < to; k++) {
      out.lipClosure[k] = Math.max(out.lipClosure[k] as number, tg.closure);
      out.lipToTeeth[k] = Math.max(out.lipToTeeth[k] as number, tg.lipToTeeth);
      if (tg.closure > 0) out.jawOpen[k] = Math.min(out.jawOpen[k] as number, Math.max(tg.jaw, 0.15));
    }
  }
  return out;
}

/**
 * Zero-phase asymmetric smoothing: a one-pole filter forward then backward, each starting from rest,
 * each with its own coefficient for rising and falling values. The kernel is positive, so the result
 * never overshoots its targets (no popping), and the two passes cancel each other's delay.
 */
function smooth(values: Float32Array, rest: number, rise: number, fall: number, hop: number): void {
  const aRise = 1 - Math.exp(-hop / rise);
  const aFall = 1 - Math.exp(-hop / fall);
  let y = rest;
  for (let k = 0; k < values.length; k++) {
    const x = values[k] as number;
    y += (x > y ? aRise : aFall) * (x - y);
    values[k] = y;
  }
  y = rest;
  for (let k = values.length - 1; k >= 0; k--) {
    const x = values[k] as number;
    y += (x > y ? aRise : aFall) * (x - y);
    values[k] = y;
  }
}

/** Box-averages the analysis blocks that fall inside each video frame's display interval. */
function toFrames(values: Float32Array, frameCount: number, fps: number, hop: number): Float32Array {
  const out = new Float32Array(frameCount);
  for (let i = 0; i < frameCount; i++) {
    const from = Math.floor(i / fps / hop);
    const to = Math.max(from + 1, Math.floor((i + 1) / fps / hop));
    let sum = 0;
    let n = 0;
    for (let k = from; k < to && k < values.length; k++) { sum += values[k] as number; n++; }
    out[i] = n ? sum / n : 0;
  }
  return out;
}

/** How many frames the track of this speech has at `fps` (known before the track is computed). */
export function trackFrameCount(speech: Pick<SpeechAudio, 'pcm' | 'sampleRate'>, fps: number): number {
  if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`fps must be above 0 (got ${fps})`);
  if (!(speech.sampleRate > 0)) throw new RangeError(`sampleRate must be above 0 (got ${speech.sampleRate})`);
  return Math.max(0, Math.ceil((speech.pcm.length / speech.sampleRate) * fps - 1e-9));
}

/**
 * The mouth-shape track for a speech clip: frame i of the video (shown at i/fps) gets one value per
 * parameter. Driven by the audio (loudness, band balance, frication), so it works for any language
 * and any recording; the engine's phone timings, when given, sharpen the shapes (closures, rounding,
 * lip-to-teeth). Deterministic: the same input gives the same numbers.
 */
export function computeMouthTrack(speech: SpeechAudio, options: MouthTrackOptions): MouthTrack {
  const { fps } = options;
  const frameCount = trackFrameCount(speech, fps);
  const expressiveness = clamp(options.expressiveness ?? 1, 0, 2);
  const durationSeconds = speech.pcm.length / speech.sampleRate;
  const hopSamples = Math.max(1, Math.round(speech.sampleRate * HOP_SECONDS));
  const hop = hopSamples / speech.sampleRate;
  const blocks = Math.max(1, Math.ceil(speech.pcm.length / hopSamples));

  const features = analyse(speech.pcm, speech.sampleRate, blocks, hopSamples);
  const audio = audioTargets(features, blocks);
  const phon = options.audioOnly || !speech.phonemes ? undefined : phonemeTargets(speech.phonemes, blocks, hop);
  const targets = audio;
  if (phon) {
    for (let k = 0; k < blocks; k++) {
      const level = features.level[k] as number;
      // The table gives the shape; the audio scales it (quiet speech opens less) and gates it, so a
      // phone the engine placed over silence cannot open the mouth.
      const gateOpen = Math.min(1, level * 4);
      targets.jawOpen[k] = 0.6 * (phon.jawOpen[k] as number) * (0.55 + 0.45 * level) * gateOpen + 0.4 * (audio.jawOpen[k] as number);
      targets.lipWidth[k] = (0.75 * (phon.lipWidth[k] as number) + 0.25 * (audio.lipWidth[k] as number)) * Math.min(1, level * 6 + (phon.lipClosure[k] as number));
      targets.teethVisible[k] = (0.7 * (phon.teethVisible[k] as number) + 0.3 * (audio.teethVisible[k] as number)) * gateOpen;
      targets.lipClosure[k] = phon.lipClosure[k] as number;
      targets.lipToTeeth[k] = phon.lipToTeeth[k] as number;
    }
  }
  // A recording that starts or ends mid-word still starts and ends closed: taper the targets in.
  const taperBlocks = Math.round(EDGE_TAPER_SECONDS / hop);
  for (let k = 0; k < blocks; k++) {
    const edge = Math.min(1, Math.min(k, blocks - 1 - k) / taperBlocks);
    if (edge < 1) for (const p of MOUTH_PARAMETERS) targets[p][k] = (targets[p][k] as number) * edge;
    targets.jawOpen[k] = clamp((targets.jawOpen[k] as number) * expressiveness, 0, 1);
    targets.lipWidth[k] = clamp((targets.lipWidth[k] as number) * expressiveness, -1, 1);
  }

  const track = { fps, frameCount, durationSeconds, source: phon ? 'audio+phonemes' : 'audio' } as MouthTrack;
  for (const p of MOUTH_PARAMETERS) {
    const values = targets[p];
    smooth(values, 0, SMOOTHING[p].rise, SMOOTHING[p].fall, hop);
    const frames = toFrames(values, frameCount, fps, hop);
    // The first and last frames show the mouth at rest, whatever the audio does there.
    if (frameCount > 0) { frames[0] = 0; frames[frameCount - 1] = 0; }
    track[p] = frames;
  }
  const activity = Float32Array.from(features.level, (v) => Math.min(1, v * 3));
  smooth(activity, 0, 0.02, 0.08, hop);
  track.activity = toFrames(activity, frameCount, fps, hop);
  return track;
}

/** The pose of one frame (frames past either end are at rest). */
export function poseAt(track: MouthTrack, frame: number): MouthPose {
  const at = (a: Float32Array): number => a[frame] ?? 0;
  return {
    jawOpen: at(track.jawOpen),
    lipWidth: at(track.lipWidth),
    lipClosure: at(track.lipClosure),
    teethVisible: at(track.teethVisible),
    lipToTeeth: at(track.lipToTeeth),
  };
}

/** The visible lip gap, 0..1: jaw opening less what the lip closure takes away. */
export function lipGap(track: MouthTrack, frame: number): number {
  return (track.jawOpen[frame] ?? 0) * (1 - (track.lipClosure[frame] ?? 0));
}
