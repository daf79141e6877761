import type { PhonemeTiming, Speech } from '@avatar/core';
import { BlockPowers, BlockSeries, Cascade, RunningQuantiles, butterworth, clamp, gateFrom, toDb } from './dsp.js';
import type { Biquad } from './dsp.js';
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
 * Smoothing time constants, seconds: `rise` while the value grows, `fall` while it shrinks. Both
 * passes of the zero-phase smoother use them, so the track has no net lag against the audio.
 */
const SMOOTHING: Readonly<Record<MouthParameter, { rise: number; fall: number }>> = {
  jawOpen: { rise: 0.022, fall: 0.045 },
  lipWidth: { rise: 0.045, fall: 0.045 },
  lipClosure: { rise: 0.01, fall: 0.03 },
  teethVisible: { rise: 0.03, fall: 0.045 },
  lipToTeeth: { rise: 0.012, fall: 0.03 },
};
const ACTIVITY_SMOOTHING = { rise: 0.02, fall: 0.08 };

/** Lips start closing this long before the acoustic closure of p/b/m and f/v (anticipation). */
const CLOSURE_LEAD_SECONDS = 0.02;
/** A closure shorter than this in the engine's timing is stretched, so it is visible at 25 fps. */
const CLOSURE_MIN_SECONDS = 0.06;
/** Targets fade in over the first and out over the last this many seconds. */
const EDGE_TAPER_SECONDS = 0.08;

/**
 * The track is computed as the audio arrives (sentence by sentence from a speech engine), so each value
 * depends only on what came before it and a fixed stretch after it; feeding a clip whole or in pieces of
 * any size gives the same frames. The stretches after a block it needs (all counted in audio):
 *  - the loudness gate and the speaker's vowel balance: statistics over everything heard so far, at least
 *    STATS_MIN_SECONDS, plus STATS_AHEAD_SECONDS, renewed every GROUP_BLOCKS (40 ms);
 *  - the engine's phones: PHONES_AHEAD_SECONDS (closures start early; a tongue consonant takes its lips'
 *    shape from the next phone that has one);
 *  - the backward smoothing pass: SETTLE_SECONDS (its kernel has decayed below 0.1 % by then).
 * So a frame is final about 0.7 s of audio after it, and the first once about a second is in.
 */
const GROUP_BLOCKS = 8;
const STATS_MIN_SECONDS = 0.5;
const STATS_AHEAD_SECONDS = 0.1;
const PHONES_AHEAD_SECONDS = 0.3;
const SETTLE_SECONDS = 0.35;
/** Whether the engine's phones are from the table's set is judged on those that start this early. */
const PHONES_JUDGED_SECONDS = 0.5;

const smoothstep = (v: number, lo: number, hi: number): number => {
  const u = clamp((v - lo) / (hi - lo), 0, 1);
  return u * u * (3 - 2 * u);
};

interface Segment {
  start: number;
  end: number;
  target: VisemeTarget | undefined;
}

/** A p/b/m or f/v phone's reach in analysis blocks: it starts early and lasts at least CLOSURE_MIN_SECONDS. */
interface Closure {
  from: number;
  to: number;
  target: VisemeTarget;
}

type Series = Record<MouthParameter | 'activity', BlockSeries>;
const SERIES = [...MOUTH_PARAMETERS, 'activity'] as const;
const emptySeries = (): Series => ({
  jawOpen: new BlockSeries(), lipWidth: new BlockSeries(), lipClosure: new BlockSeries(),
  teethVisible: new BlockSeries(), lipToTeeth: new BlockSeries(), activity: new BlockSeries(),
});

/** Samples taken through the band filters at once. */
const FILTER_PIECE = 16_384;

/** Grows a Float32Array by doubling: the frames of a clip whose length is not known yet. */
class FrameValues {
  data = new Float32Array(256);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.length++] = v;
  }
}

export interface MouthTrackerOptions extends MouthTrackOptions {
  sampleRate: number;
  /** phone timings come with the audio (`push`'s second argument); ignored with `audioOnly` */
  phonemes?: boolean;
}

/**
 * Computes the mouth track as the audio arrives: `push` audio (and its phones, times from the start of
 * the clip) as it is made, read the frames that are final (`ready`, `poseAt`), `finish` at the end.
 * Driven by the audio (loudness, band balance, frication), so it works for any language and any
 * recording; the engine's phone timings, when given, sharpen the shapes (closures, rounding, lip to
 * teeth). Deterministic, and independent of how the audio is cut into pieces.
 */
export class MouthTracker {
  readonly fps: number;
  readonly sampleRate: number;
  private readonly expressiveness: number;
  private readonly hopSamples: number;
  private readonly hop: number;
  private samples = 0;
  private finished = false;
  private total = Number.POSITIVE_INFINITY;

  // the audio front end: band powers per 5 ms block
  private readonly bands: Record<'all' | 'low' | 'high' | 'f2' | 'f1', { filter: Cascade | undefined; power: BlockPowers }>;
  // per block: features, then the statistics' verdicts, then targets, then the two smoothing passes
  // (each kept only as far back as it is still read: see forgetBehind)
  private readonly levelDb = new BlockSeries();
  private readonly sonority = new BlockSeries();
  private readonly frication = new BlockSeries();
  private readonly spreadDb = new BlockSeries();
  private readonly levelStats = new RunningQuantiles(-125, 15, 0.01);
  private readonly spreadStats = new RunningQuantiles(-145, 145, 0.01);
  private levelsCounted = 0;
  private spreadsCounted = 0;
  private readonly level = new BlockSeries();
  private readonly voiced = new BlockSeries<boolean>();
  private readonly spread = new BlockSeries();
  private readonly forward = emptySeries();
  private readonly forwardState = { jawOpen: 0, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0, activity: 0 };
  private readonly settled = emptySeries();
  /** the smoother's per-block coefficients while a value rises and while it falls */
  private readonly coefficients: Record<MouthParameter | 'activity', { rise: number; fall: number }>;

  // the engine's phones
  private phones: 'judging' | 'used' | 'ignored';
  private readonly segments: Segment[] = [];
  private readonly closures: Closure[] = [];
  private segmentAt = 0;
  private closureFrom = 0;

  private readonly frames: Record<MouthParameter | 'activity', FrameValues> = {
    jawOpen: new FrameValues(), lipWidth: new FrameValues(), lipClosure: new FrameValues(),
    teethVisible: new FrameValues(), lipToTeeth: new FrameValues(), activity: new FrameValues(),
  };

  constructor(options: MouthTrackerOptions) {
    const { fps, sampleRate } = options;
    if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`fps must be above 0 (got ${fps})`);
    if (!(sampleRate > 0)) throw new RangeError(`sampleRate must be above 0 (got ${sampleRate})`);
    this.fps = fps;
    this.sampleRate = sampleRate;
    this.expressiveness = clamp(options.expressiveness ?? 1, 0, 2);
    this.hopSamples = Math.max(1, Math.round(sampleRate * HOP_SECONDS));
    this.hop = this.hopSamples / sampleRate;
    this.phones = options.phonemes && !options.audioOnly ? 'judging' : 'ignored';
    const per = ({ rise, fall }: { rise: number; fall: number }): { rise: number; fall: number } => ({ rise: 1 - Math.exp(-this.hop / rise), fall: 1 - Math.exp(-this.hop / fall) });
    this.coefficients = {
      jawOpen: per(SMOOTHING.jawOpen), lipWidth: per(SMOOTHING.lipWidth), lipClosure: per(SMOOTHING.lipClosure),
      teethVisible: per(SMOOTHING.teethVisible), lipToTeeth: per(SMOOTHING.lipToTeeth), activity: per(ACTIVITY_SMOOTHING),
    };
    const band = (stages?: Biquad[]): { filter: Cascade | undefined; power: BlockPowers } => ({ filter: stages && new Cascade(stages), power: new BlockPowers(this.hopSamples) });
    const low = butterworth('low', 900, sampleRate);
    const high = butterworth('high', 3500, sampleRate);
    // F2 of spread vowels (iy, ey) sits at 1.8-3 kHz; rounding lowers every formant, so the lips'
    // shape shows as the balance between that band and the F1 region (500-1200 Hz).
    const hi2 = butterworth('high', 1800, sampleRate);
    this.bands = {
      all: band(),
      low: band([low, low]),
      high: band([high, high]),
      f2: band([hi2, hi2, butterworth('low', 3000, sampleRate)]),
      f1: band([butterworth('high', 500, sampleRate), butterworth('low', 1200, sampleRate)]),
    };
  }

  /** Frames final so far (0..ready-1); all of them once finished. */
  get ready(): number {
    return this.frames.jawOpen.length;
  }

  /** The clip's frame count, known once finished. */
  get frameCount(): number | undefined {
    return this.finished ? this.frames.jawOpen.length : undefined;
  }

  /** What drove the shapes (settled once the first frames are out). */
  get source(): MouthTrack['source'] {
    return this.phones === 'used' ? 'audio+phonemes' : 'audio';
  }

  /** The pose of a final frame (frames not final yet, or past the end, are at rest). */
  poseAt(frame: number): MouthPose {
    const at = (p: MouthParameter): number => (frame < this.ready ? (this.frames[p].data[frame] ?? 0) : 0);
    return { jawOpen: at('jawOpen'), lipWidth: at('lipWidth'), lipClosure: at('lipClosure'), teethVisible: at('teethVisible'), lipToTeeth: at('lipToTeeth') };
  }

  /** Adds the next audio, and the phones that start in it (times from the start of the clip). */
  push(pcm: Int16Array, phonemes?: readonly PhonemeTiming[]): void {
    if (this.finished) throw new Error('the mouth track is finished');
    for (const p of phonemes ?? []) {
      if (!(p.end > p.start)) continue;
      const target = visemeFor(p.phoneme)?.[1];
      this.segments.push({ start: p.start, end: p.end, target });
      if (target && (target.closure > 0 || target.lipToTeeth > 0)) {
        const start = p.start - CLOSURE_LEAD_SECONDS;
        const end = Math.max(p.end, start + CLOSURE_MIN_SECONDS);
        this.closures.push({ from: Math.max(0, Math.floor(start / this.hop)), to: Math.ceil(end / this.hop), target });
      }
    }
    // Through the filters a piece at a time, which they are made for (a whole clip at once made each
    // filter stage a copy of it, 2 minutes of speech some 40 MB of arrays at once), and each piece taken
    // as far as it goes before the next: every step then lets go of the blocks it has used, so a long
    // clip pushed whole never holds all of them (7 minutes of speech took the heap to 65 MB). The same
    // frames either way: the track does not depend on how its audio is cut.
    for (let at = 0; at < pcm.length; at += FILTER_PIECE) {
      const piece = pcm.subarray(at, Math.min(pcm.length, at + FILTER_PIECE));
      const x = new Float32Array(piece.length);
      for (let i = 0; i < piece.length; i++) x[i] = (piece[i] as number) / 32768;
      for (const band of Object.values(this.bands)) band.power.add(band.filter ? band.filter.run(x) : x);
      this.samples += piece.length;
      this.advance();
    }
    if (pcm.length === 0) this.advance();
  }

  /** The audio is complete: the last frames become final. */
  finish(): void {
    if (this.finished) return;
    for (const band of Object.values(this.bands)) band.power.flush();
    this.finished = true;
    // an empty clip still has one (silent) block, so the statistics have something to stand on
    this.total = Math.max(1, this.bands.all.power.blocks.length);
    for (const band of Object.values(this.bands)) while (band.power.blocks.length < this.total) band.power.blocks.push(0);
    this.advance();
  }

  /** The whole track, once finished. */
  track(): MouthTrack {
    if (!this.finished) throw new Error('the mouth track is not finished');
    const n = this.ready;
    const track = { fps: this.fps, frameCount: n, durationSeconds: this.samples / this.sampleRate, source: this.source } as MouthTrack;
    for (const p of SERIES) track[p] = this.frames[p].data.slice(0, n);
    return track;
  }

  private advance(): void {
    this.advanceFeatures();
    this.advanceStatistics();
    this.advanceTargets();
    this.advanceSettled();
    this.advanceFrames();
    this.forgetBehind();
  }

  /**
   * Lets go of the blocks no step will read again: each step reads its inputs at its own next block
   * (the analysis window one block behind it), so memory stays flat however long the clip.
   */
  private forgetBehind(): void {
    const features = this.levelDb.length;
    const statistics = this.level.length;
    const targets = this.forward.jawOpen.length;
    const settled = this.settled.jawOpen.length;
    for (const band of Object.values(this.bands)) band.power.blocks.forget(features - 1);
    this.levelDb.forget(Math.min(this.levelsCounted, statistics));
    this.sonority.forget(Math.min(statistics, targets));
    this.frication.forget(targets);
    this.spreadDb.forget(Math.min(this.spreadsCounted, this.spread.length));
    this.voiced.forget(this.spreadsCounted);
    this.level.forget(targets);
    this.spread.forget(targets);
    for (const p of SERIES) this.forward[p].forget(settled);
    const frame = Math.floor(this.ready / this.fps / this.hop);
    for (const p of SERIES) this.settled[p].forget(frame);
  }

  /** Blocks held across every series (for tests: flat in the clip's length). */
  get heldBlocks(): number {
    let held = 0;
    for (const band of Object.values(this.bands)) held += band.power.blocks.held;
    for (const series of [this.levelDb, this.sonority, this.frication, this.spreadDb, this.level, this.voiced, this.spread]) held += series.held;
    for (const p of SERIES) held += this.forward[p].held + this.settled[p].held;
    return held;
  }

  /** Blocks whose band powers are all in (every band closes a block on the same sample). */
  private get blocksIn(): number {
    return this.bands.all.power.blocks.length;
  }

  private advanceFeatures(): void {
    const p = (b: 'all' | 'low' | 'high' | 'f2' | 'f1'): BlockSeries => this.bands[b].power.blocks;
    // 15 ms analysis window centred on each block: it needs the next block too (or the end)
    const win = (a: BlockSeries, k: number): number => {
      const here = a.at(k) ?? 0;
      return ((k > 0 ? (a.at(k - 1) ?? here) : here) + here + (a.at(k + 1) ?? here)) / 3;
    };
    const upTo = this.finished ? this.total : this.blocksIn - 1;
    for (let k = this.levelDb.length; k < upTo; k++) {
      const total = win(p('all'), k) + 1e-12;
      this.levelDb.push(toDb(win(p('all'), k)));
      this.sonority.push(clamp(win(p('low'), k) / total, 0, 1));
      this.frication.push(clamp(win(p('high'), k) / total, 0, 1));
      this.spreadDb.push(toDb(win(p('f2'), k)) - toDb(win(p('f1'), k)));
    }
  }

  /**
   * The statistics for the blocks of one group: everything up to STATS_AHEAD_SECONDS past the group's
   * end, and never less than the first STATS_MIN_SECONDS (short of the clip's end).
   */
  private statsEnd(group: number): number {
    const minBlocks = Math.round(STATS_MIN_SECONDS / this.hop);
    const ahead = Math.round(STATS_AHEAD_SECONDS / this.hop);
    return Math.min(this.total, Math.max(minBlocks, (group + 1) * GROUP_BLOCKS + ahead));
  }

  /**
   * Runs `step` for each next group of blocks whose statistics' input is in: `made` says how many blocks
   * are done, `ready` how many of the input are there; `step` gets the group's blocks [from, to) and
   * the end of what its statistics cover, and makes those blocks.
   */
  private byGroup(made: () => number, ready: () => number, step: (from: number, to: number, end: number) => void): void {
    for (let from = made(); from < this.total; from = made()) {
      const group = Math.floor(from / GROUP_BLOCKS);
      const end = this.statsEnd(group);
      if (ready() < end) return;
      step(from, Math.min(this.total, (group + 1) * GROUP_BLOCKS), end);
    }
  }

  private advanceStatistics(): void {
    // the loudness gate: the noise floor and the speech level heard so far
    this.byGroup(() => this.level.length, () => this.levelDb.length, (from, to, end) => {
      for (; this.levelsCounted < end; this.levelsCounted++) this.levelStats.add(this.levelDb.at(this.levelsCounted) as number);
      const gate = gateFrom((q) => this.levelStats.quantile(q));
      const span = Math.max(1, gate.peak - gate.threshold);
      for (let k = from; k < to; k++) {
        const level = gate.hasSpeech ? clamp(((this.levelDb.at(k) as number) - gate.threshold) / span, 0, 1) : 0;
        this.level.push(level);
        this.voiced.push(level > 0.3 && (this.sonority.at(k) as number) > 0.5);
      }
    });
    // spread is judged against this speaker's own vowels: median and spread over the clearly voiced blocks
    this.byGroup(() => this.spread.length, () => this.level.length, (from, to, end) => {
      for (; this.spreadsCounted < end; this.spreadsCounted++) {
        if (this.voiced.at(this.spreadsCounted)) this.spreadStats.add(this.spreadDb.at(this.spreadsCounted) as number);
      }
      const enough = this.spreadStats.count >= 10;
      const median = enough ? this.spreadStats.quantile(0.5) : 0;
      const scale = enough ? Math.max(3, (this.spreadStats.quantile(0.85) - this.spreadStats.quantile(0.15)) / 2) : 1;
      for (let k = from; k < to; k++) this.spread.push(enough ? clamp(((this.spreadDb.at(k) as number) - median) / scale, -1, 1) : 0);
    });
  }

  /** Whether the phones near block k are all in, and whether they are used at all. */
  private phonesReady(k: number): boolean {
    if (this.phones === 'judging') {
      if (this.samples / this.sampleRate < PHONES_JUDGED_SECONDS && !this.finished) return false;
      // symbols from another phone set (espeak's, say) would make a meaningless track: audio alone;
      // so would an engine that gives none where speech starts
      const judged = this.segments.filter((s) => s.start < PHONES_JUDGED_SECONDS);
      const known = judged.filter((s) => s.target !== undefined).length;
      this.phones = judged.length > 0 && known >= judged.length * 0.8 ? 'used' : 'ignored';
    }
    if (this.phones === 'ignored' || this.finished) return true;
    return this.samples / this.sampleRate >= (k + 0.5) * this.hop + PHONES_AHEAD_SECONDS;
  }

  private advanceTargets(): void {
    const taperBlocks = Math.round(EDGE_TAPER_SECONDS / this.hop);
    for (let k = this.forward.jawOpen.length; k < this.spread.length; k++) {
      // the taper at the end needs to know whether the clip ends within it
      if (!this.finished && this.blocksIn < k + taperBlocks + 1) break;
      if (!this.phonesReady(k)) break;
      const target = this.targetAt(k);
      // a recording that starts or ends mid-word still starts and ends closed: taper the targets in
      const edge = Math.min(1, Math.min(k, this.total - 1 - k) / taperBlocks);
      if (edge < 1) for (const p of MOUTH_PARAMETERS) target[p] *= edge;
      target.jawOpen = clamp(target.jawOpen * this.expressiveness, 0, 1);
      target.lipWidth = clamp(target.lipWidth * this.expressiveness, -1, 1);
      // the forward pass of the smoother (see SETTLE_SECONDS for the backward one)
      for (const p of MOUTH_PARAMETERS) this.forward[p].push(this.step(p, target[p]));
      this.forward.activity.push(this.step('activity', Math.min(1, (this.level.at(k) as number) * 3)));
    }
  }

  private step(p: MouthParameter | 'activity', x: number): number {
    const y = this.forwardState[p];
    const next = y + (x > y ? this.coefficients[p].rise : this.coefficients[p].fall) * (x - y);
    this.forwardState[p] = next;
    return next;
  }

  /** Mouth targets of block k: from the audio, sharpened by the engine's phones when they are used. */
  private targetAt(k: number): MouthPose {
    const level = this.level.at(k) as number;
    const sonority = this.sonority.at(k) as number;
    // Frication (s, sh, f, th) narrows the jaw; vowels and nasals keep the loudness-driven opening.
    const fric = smoothstep(this.frication.at(k) as number, 0.15, 0.5) * (1 - sonority);
    const jaw = Math.pow(level, 1.3) * (0.3 + 0.7 * sonority);
    const voicedness = smoothstep(sonority, 0.3, 0.7) * Math.min(1, level * 3);
    const width = 0.6 * (this.spread.at(k) as number) * voicedness + 0.25 * fric;
    const audio: MouthPose = {
      jawOpen: jaw,
      lipWidth: width,
      lipClosure: 0,
      teethVisible: clamp(0.9 * fric * Math.min(1, level * 3) + 0.5 * jaw * clamp(0.4 + width, 0, 1), 0, 1),
      lipToTeeth: 0,
    };
    if (this.phones !== 'used') return audio;
    const phon = this.phoneTargetAt(k);
    // The table gives the shape; the audio scales it (quiet speech opens less) and gates it, so a
    // phone the engine placed over silence cannot open the mouth.
    const gateOpen = Math.min(1, level * 4);
    return {
      jawOpen: 0.6 * phon.jawOpen * (0.55 + 0.45 * level) * gateOpen + 0.4 * audio.jawOpen,
      lipWidth: (0.75 * phon.lipWidth + 0.25 * audio.lipWidth) * Math.min(1, level * 6 + phon.lipClosure),
      teethVisible: (0.7 * phon.teethVisible + 0.3 * audio.teethVisible) * gateOpen,
      lipClosure: phon.lipClosure,
      lipToTeeth: phon.lipToTeeth,
    };
  }

  /**
   * The phones' target at block k. Transparent values (null in the viseme table) are interpolated
   * between the neighbouring phones that do constrain them (the next one looked for within
   * PHONES_AHEAD_SECONDS); p/b/m and f/v start a little early and last at least CLOSURE_MIN_SECONDS.
   */
  private phoneTargetAt(k: number): MouthPose {
    const segs = this.segments;
    const time = (k + 0.5) * this.hop;
    while (this.segmentAt < segs.length - 1 && (segs[this.segmentAt]?.end ?? 0) <= time) this.segmentAt++;
    const i = this.segmentAt;
    const s = segs[i];
    const target: VisemeTarget = s && time >= s.start && time < s.end ? (s.target ?? REST) : REST;
    const centre = (seg: Segment): number => (seg.start + seg.end) / 2;
    const resolve = (key: 'width' | 'teeth'): number => {
      let prev = i - 1;
      while (prev >= 0 && segs[prev]?.target?.[key] == null) prev--;
      let next = i + 1;
      while (next < segs.length && (segs[next] as Segment).start < time + PHONES_AHEAD_SECONDS && segs[next]?.target?.[key] == null) next++;
      const after = next < segs.length && (segs[next] as Segment).start < time + PHONES_AHEAD_SECONDS ? segs[next] : undefined;
      const pv = prev >= 0 ? (segs[prev]?.target?.[key] ?? 0) : 0;
      const nv = after?.target?.[key] ?? 0;
      const pt = prev >= 0 ? centre(segs[prev] as Segment) : 0;
      const nt = after ? centre(after) : time + 1;
      return nt > pt ? pv + ((nv - pv) * clamp((time - pt) / (nt - pt), 0, 1)) : pv;
    };
    const pose: MouthPose = {
      jawOpen: target.jaw,
      lipWidth: target.width ?? resolve('width'),
      teethVisible: target.teeth ?? resolve('teeth'),
      lipClosure: 0,
      lipToTeeth: 0,
    };
    // closures and lip-to-teeth: stretched, with anticipation
    const closures = this.closures;
    while (this.closureFrom < closures.length && (closures[this.closureFrom] as Closure).to <= k) this.closureFrom++;
    for (let c = this.closureFrom; c < closures.length && (closures[c] as Closure).from <= k; c++) {
      const { to, target: tg } = closures[c] as Closure;
      if (k >= to) continue;
      pose.lipClosure = Math.max(pose.lipClosure, tg.closure);
      pose.lipToTeeth = Math.max(pose.lipToTeeth, tg.lipToTeeth);
      if (tg.closure > 0) pose.jawOpen = Math.min(pose.jawOpen, Math.max(tg.jaw, 0.15));
    }
    return pose;
  }

  /**
   * The backward pass of the zero-phase smoother, from rest SETTLE_SECONDS ahead of each block (or
   * from the clip's end): the one-pole kernel is positive, so the result never overshoots its targets
   * (no popping), and the two passes cancel each other's delay. Fast rises let short events (a 40 ms
   * closure) reach their target; slower falls make the return gentle; the mouth anticipates a shape
   * as much as it lingers after it.
   */
  private advanceSettled(): void {
    const ahead = Math.round(SETTLE_SECONDS / this.hop);
    const forwardIn = this.forward.jawOpen.length;
    for (let k = this.settled.jawOpen.length; k < forwardIn; k++) {
      const last = Math.min(k + ahead, this.total - 1);
      if (last >= forwardIn) break;
      for (const p of SERIES) {
        const { rise: aRise, fall: aFall } = this.coefficients[p];
        const { values: x, offset } = this.forward[p].from(k);
        let y = 0;
        for (let j = last - offset; j >= k - offset; j--) {
          const v = x[j] as number;
          y += (v > y ? aRise : aFall) * (v - y);
        }
        this.settled[p].push(y);
      }
    }
  }

  /** Box-averages the settled blocks that fall inside each video frame's display interval. */
  private advanceFrames(): void {
    const settled = this.settled.jawOpen.length;
    // known so far: the clip has at least this many frames
    const atLeast = Math.ceil((this.samples / this.sampleRate) * this.fps - 1e-9);
    for (let i = this.ready; ; i++) {
      const frameCount = this.finished ? atLeast : undefined;
      // the last frame is at rest, so a frame is out only once another is known to follow (or the end)
      if (frameCount === undefined ? i + 1 >= atLeast : i >= frameCount) break;
      const from = Math.floor(i / this.fps / this.hop);
      const to = Math.min(this.total, Math.max(from + 1, Math.floor((i + 1) / this.fps / this.hop)));
      if (settled < to) break;
      const last = frameCount !== undefined && i === frameCount - 1;
      for (const p of SERIES) {
        let sum = 0;
        let n = 0;
        const { values, offset } = this.settled[p].from(from);
        for (let k = from - offset; k < to - offset; k++) { sum += values[k] as number; n++; }
        // the first and last frames show the mouth at rest, whatever the audio does there
        this.frames[p].push(p !== 'activity' && (i === 0 || last) ? 0 : n ? sum / n : 0);
      }
    }
  }
}

/** How many frames the track of this speech has at `fps` (known before the track is computed). */
export function trackFrameCount(speech: Pick<SpeechAudio, 'pcm' | 'sampleRate'>, fps: number): number {
  if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`fps must be above 0 (got ${fps})`);
  if (!(speech.sampleRate > 0)) throw new RangeError(`sampleRate must be above 0 (got ${speech.sampleRate})`);
  return Math.max(0, Math.ceil((speech.pcm.length / speech.sampleRate) * fps - 1e-9));
}

/** The mouth-shape track for a whole speech clip: frame i of the video (shown at i/fps) gets one value per parameter. */
export function computeMouthTrack(speech: SpeechAudio, options: MouthTrackOptions): MouthTrack {
  const tracker = new MouthTracker({ ...options, sampleRate: speech.sampleRate, phonemes: speech.phonemes !== undefined });
  tracker.push(speech.pcm, speech.phonemes);
  tracker.finish();
  return tracker.track();
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
