import type { FrameState } from './types.js';

export type HeadMotion = 'none' | 'subtle' | 'lively';

export interface AnimationOptions {
  /** slight head motion that fades to nothing before the frame's edges */
  headMotion: HeadMotion;
  /** blinks per minute; 0 = never */
  blinkRate: number;
  /** scales how far the mouth and jaw move; 1 = natural */
  expressiveness: number;
  /** the same seed gives the same blinks and head motion */
  seed: number;
}

export const DEFAULT_ANIMATION: Readonly<AnimationOptions> = { headMotion: 'subtle', blinkRate: 15, expressiveness: 1, seed: 1 };

// ---- deterministic randomness -------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Blink times (seconds) over `duration`: irregular gaps around the mean rate, none in the first half second. */
export function blinkSchedule(duration: number, blinksPerMinute: number, seed: number): number[] {
  if (blinksPerMinute <= 0) return [];
  const random = mulberry32(seed ^ 0x5eed);
  const mean = 60 / blinksPerMinute;
  const times: number[] = [];
  let t = 0.5 + random() * mean;
  while (t < duration - 0.2) {
    times.push(t);
    // gaps between 0.4x and 1.6x the mean, never closer than 1.2 s: people do not blink in bursts
    t += Math.max(1.2, mean * (0.4 + 1.2 * random()));
  }
  return times;
}

/** Eyelid closure 0..1 at time t: 60 ms to close, 30 ms shut, 100 ms to open. */
export function blinkAt(t: number, times: readonly number[]): number {
  for (const start of times) {
    const d = t - start;
    if (d < 0) break;
    if (d < 0.06) return smooth(d / 0.06);
    if (d < 0.09) return 1;
    if (d < 0.19) return 1 - smooth((d - 0.09) / 0.1);
  }
  return 0;
}

const smooth = (x: number): number => x * x * (3 - 2 * x);

/** Smooth head motion: a few slow sines with seeded phases; zero at t = 0 is not needed, it fades in. */
export function headMotionAt(t: number, motion: HeadMotion, seed: number, faceScale: number): Pick<FrameState, 'headAngle' | 'headX' | 'headY'> {
  if (motion === 'none') return { headAngle: 0, headX: 0, headY: 0 };
  const random = mulberry32(seed ^ 0xbead);
  const amp = motion === 'lively' ? 1 : 0.4;
  const wave = (): number => {
    let v = 0;
    for (let i = 0; i < 3; i++) {
      const freq = 0.07 + random() * 0.3;
      const phase = random() * Math.PI * 2;
      v += Math.sin(2 * Math.PI * freq * t + phase) / 3;
    }
    return v;
  };
  // ease in over the first second so the first frame is the photo itself
  const ease = Math.min(1, t);
  return {
    headAngle: ease * amp * wave() * (2.2 * Math.PI / 180),
    headX: ease * amp * wave() * 0.035 * faceScale,
    headY: ease * amp * wave() * 0.025 * faceScale,
  };
}
