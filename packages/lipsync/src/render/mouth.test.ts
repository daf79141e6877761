import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@avatar/core';
import type { FacePoint, RunContext, StagePlugin } from '@avatar/core';
import { plugins as facePlugins } from '@avatar/face';
import { VISEMES } from '../visemes.js';
import type { MouthPose } from '../track.js';
import { FaceRenderer } from './index.js';
import { measureTexture } from './appearance.js';
import type { FrameState } from './index.js';

// The mouth judged on real photos at 1024 px, as `--quality high` draws it: the photo's own teeth where it
// has them, lips that keep their shape, smooth outlines, teeth with no regular grid, colours from the
// photo's light, a jaw that drops.
const FIXTURES = new URL('../../../../tests/fixtures/', import.meta.url).pathname;
const PHOTOS = {
  closed: `${FIXTURES}grace_hopper.jpg`,
  teeth: `${FIXTURES}faces/astronaut_eileen_collins.jpg`,
  beard: `${FIXTURES}faces/mendeleev_beard.jpg`,
  greyBeard: `${FIXTURES}faces/lamport_beard.jpg`,
  moustache: `${FIXTURES}faces/barkla.jpg`,
  /** the same man photographed at 1024x1346: his own detail, not an enlargement */
  large: `${FIXTURES}faces/barkla_1024.jpg`,
} as const;
type Photo = keyof typeof PHOTOS;

const STILL: FrameState = { blink: 0, headAngle: 0, headX: 0, headY: 0 };
const REST: MouthPose = { jawOpen: 0, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 };
const viseme = (phone: string): MouthPose => {
  const [, v] = VISEMES[phone]!;
  return { jawOpen: v.jaw, lipWidth: v.width ?? 0, lipClosure: v.closure, teethVisible: v.teeth ?? 0, lipToTeeth: v.lipToTeeth };
};
/** mean luma change allowed in the neck below the chin as the jaw opens wide (before the jaw's lower row: 37 on the collar of `moustache`) */
const NECK_CHANGE = 3;
const OPEN_POSES = ['aa', 'ae', 'ow', 'uw', 'iy', 'eh', 'f'].map(viseme);

interface Subject {
  width: number;
  height: number;
  rgba: Uint8Array;
  landmarks: readonly FacePoint[];
  renderer: FaceRenderer;
}

/** A photo enlarged to 1024 px on its longer side (a larger one as it is), with its landmarks from the real face stage. */
async function subject(path: string, adjust: (s: sharp.Sharp) => sharp.Sharp = (s) => s): Promise<Subject> {
  const meta = await sharp(path).metadata();
  const scale = Math.max(1, 1024 / Math.max(meta.width!, meta.height!));
  const width = Math.round((meta.width! * scale) / 2) * 2, height = Math.round((meta.height! * scale) / 2) * 2;
  const png = await adjust(sharp(path).resize(width, height, { fit: 'fill', kernel: 'lanczos3' })).png().toBuffer();
  const file = `/tmp/avatar-mouth-test-${process.pid}-${Math.random().toString(36).slice(2)}.png`;
  await sharp(png).toFile(file);
  const face = facePlugins.find((p) => p.stage === 'face') as StagePlugin<'face'>;
  const loaded = await face.load({ log: silentLogger, storageDir: '/tmp', options: {}, device: { kind: 'cpu' } });
  const ctx: RunContext = { signal: new AbortController().signal, progress() {}, log: silentLogger, workDir: '/tmp' };
  const avatar = await loaded.run({ imagePath: file }, ctx);
  await loaded.unload();
  const { data } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const rgba = new Uint8Array(data);
  const landmarks = avatar.face.landmarks;
  return { width, height, rgba, landmarks, renderer: new FaceRenderer({ width, height, data: rgba }, landmarks, { pixelFormat: 'yuv420p' }) };
}

const subjects = {} as Record<Photo, Subject>;
beforeAll(async () => {
  for (const [name, path] of Object.entries(PHOTOS) as [Photo, string][]) subjects[name] = await subject(path);
}, 60_000);

const mouthWidth = (lm: readonly FacePoint[]): number => Math.hypot(lm[54]!.x - lm[48]!.x, lm[54]!.y - lm[48]!.y);

function polygonArea(points: readonly FacePoint[]): number {
  let s = 0;
  for (let k = 0; k < points.length; k++) {
    const p = points[k]!, q = points[(k + 1) % points.length]!;
    s += p.x * q.y - q.x * p.y;
  }
  return Math.abs(s) / 2;
}

/** Normalised cross-correlation of two equally long sample lists. */
function ncc(a: readonly number[], b: readonly number[]): number {
  const ma = a.reduce((s, v) => s + v, 0) / a.length, mb = b.reduce((s, v) => s + v, 0) / b.length;
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i]! - ma) * (b[i]! - mb);
    aa += (a[i]! - ma) ** 2;
    bb += (b[i]! - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

describe('the mouth on real photos at 1024 px', () => {
  it('keeps the photo\'s own teeth: the upper teeth stay where the photo has them as the mouth opens', () => {
    const { renderer, landmarks: lm, width } = subjects.teeth;
    expect(renderer.photoTeeth).toBe(true);
    for (const name of ['closed', 'beard', 'greyBeard', 'moustache', 'large'] as const) expect(subjects[name].renderer.photoTeeth, name).toBe(false);
    const photo = renderer.render(REST, STILL).slice();
    // the upper teeth: below the upper inner lip, the upper half of the photo's opening, between 61 and 63
    const top = Math.ceil(Math.max(lm[61]!.y, lm[62]!.y, lm[63]!.y)) + 1;
    const bottom = Math.floor((lm[62]!.y + lm[66]!.y) / 2);
    const x0 = Math.ceil(lm[61]!.x), x1 = Math.floor(lm[63]!.x);
    expect((bottom - top + 1) * (x1 - x0 + 1)).toBeGreaterThan(60);
    for (const pose of [viseme('aa'), viseme('eh'), viseme('ow')]) {
      const frame = renderer.render(pose, STILL);
      const a: number[] = [], b: number[] = [];
      for (let y = top; y <= bottom; y++) for (let x = x0; x <= x1; x++) {
        a.push(photo[y * width + x]!);
        b.push(frame[y * width + x]!);
      }
      expect(ncc(a, b)).toBeGreaterThanOrEqual(0.9);
    }
  });

  it('a wide vowel on a smile shows the lower teeth the smile hid, in the colour of the photo\'s own teeth', () => {
    // Down the middle of the opening: just above the lower lip's inner edge, light and neutral lower
    // teeth, not the red tongue or the dark of the mouth.
    const { renderer, width, height } = subjects.teeth;
    const pose = viseme('aa');
    const frame = renderer.render(pose, STILL);
    const moved = renderer.landmarksFor(pose, STILL);
    const w = mouthWidth(moved);
    const x = Math.round((moved[62]!.x + moved[66]!.x) / 2);
    const v = (y: number): number => frame[(width * height * 5) / 4 + (y >> 1) * (width >> 1) + (x >> 1)]!;
    let darkest = Infinity, brightest = { luma: 0, y: 0 };
    for (let y = Math.round(moved[62]!.y); y <= Math.round(moved[66]!.y); y++) darkest = Math.min(darkest, frame[y * width + x]!);
    for (let y = Math.round(moved[66]!.y - 0.08 * w); y <= Math.round(moved[66]!.y); y++) {
      if (frame[y * width + x]! > brightest.luma) brightest = { luma: frame[y * width + x]!, y };
    }
    expect(brightest.luma - darkest).toBeGreaterThan(70);
    // (the tongue and the lips here are red: V above 143)
    expect(v(brightest.y)).toBeLessThan(140);
  });

  it('p, b and m close the lips over the photo\'s own teeth', () => {
    const { renderer, landmarks: lm, width } = subjects.teeth;
    const photo = renderer.render(REST, STILL).slice();
    // (with the jaw still a little open, as the track allows during a closure)
    const pressed = { ...viseme('p'), jawOpen: 0.15 };
    const closed = renderer.landmarksFor(pressed, STILL);
    for (const [up, low] of [[61, 67], [62, 66], [63, 65]] as const) expect(Math.hypot(closed[up]!.x - closed[low]!.x, closed[up]!.y - closed[low]!.y)).toBeLessThan(0.01);
    // where the photo's teeth were, the lips now are: darker, as lips are
    const frame = renderer.render(pressed, STILL);
    let before = 0, after = 0, n = 0;
    for (let y = Math.ceil(lm[62]!.y) + 1; y < Math.floor(lm[66]!.y); y++) for (let x = Math.ceil(lm[61]!.x); x <= Math.floor(lm[63]!.x); x++, n++) {
      before += photo[y * width + x]!;
      after += frame[y * width + x]!;
    }
    expect(n).toBeGreaterThan(60);
    expect(after / n).toBeLessThan(0.85 * (before / n));
  });

  it('pressed lips close a smile\'s dark corners too, where the inner-lip landmarks cut across them', () => {
    // the photo's opening reaches above the landmarks' curve near each corner: without points on its
    // real edge there, the cavity stays as two dark wedges when the lips meet (about 10 % of each box)
    const { renderer, landmarks: lm, width } = subjects.teeth;
    const frame = renderer.render({ ...viseme('p'), jawOpen: 0.15 }, STILL);
    const mw = mouthWidth(lm);
    for (const [corner, inner] of [[60, 61], [64, 63]] as const) {
      const x0 = Math.min(lm[corner]!.x, lm[inner]!.x), x1 = Math.max(lm[corner]!.x, lm[inner]!.x);
      const y0 = Math.min(lm[corner]!.y, lm[inner]!.y) - 0.06 * mw, y1 = Math.max(lm[corner]!.y, lm[inner]!.y) + 0.06 * mw;
      const lumas: number[] = [];
      for (let y = Math.ceil(y0); y <= y1; y++) for (let x = Math.ceil(x0); x <= x1; x++) lumas.push(frame[y * width + x]!);
      const median = [...lumas].sort((p, q) => p - q)[Math.floor(lumas.length / 2)]!;
      const dark = lumas.filter((v) => v < 0.6 * median).length / lumas.length;
      expect(dark, `dark share by corner ${corner}`).toBeLessThan(0.06);
    }
  });

  it('the lower lip keeps its area (within 20 %) as the mouth opens, on every photo', () => {
    const LOWER_LIP = [48, 59, 58, 57, 56, 55, 54, 64, 65, 66, 67, 60];
    for (const [name, { renderer, landmarks }] of Object.entries(subjects)) {
      const rest = polygonArea(LOWER_LIP.map((i) => landmarks[i]!));
      for (const pose of OPEN_POSES) {
        const moved = renderer.landmarksFor(pose, STILL);
        const ratio = polygonArea(LOWER_LIP.map((i) => moved[i]!)) / rest;
        expect(Math.abs(ratio - 1), `${name} ${JSON.stringify(pose)}`).toBeLessThanOrEqual(0.2);
      }
    }
  });

  it('the opening is a smooth curve: no corner of its outline turns by more than 30 degrees', () => {
    for (const [name, { renderer }] of Object.entries(subjects)) {
      for (const pose of OPEN_POSES) {
        for (const state of [STILL, { blink: 0, headAngle: 0.03, headX: 4, headY: -3 }]) {
          const o = renderer.openingFor(pose, state);
          const n = o.length / 2;
          expect(n).toBeGreaterThan(32);
          let worst = 0;
          for (let i = 0; i < n; i++) {
            const a = (i + n - 1) % n, c = (i + 1) % n;
            const ex = o[2 * i]! - o[2 * a]!, ey = o[2 * i + 1]! - o[2 * a + 1]!;
            const fx = o[2 * c]! - o[2 * i]!, fy = o[2 * c + 1]! - o[2 * i + 1]!;
            if (Math.hypot(ex, ey) < 0.05 || Math.hypot(fx, fy) < 0.05) continue;
            worst = Math.max(worst, Math.abs(Math.atan2(ex * fy - ey * fx, ex * fx + ey * fy)));
          }
          expect((worst * 180) / Math.PI, `${name} ${JSON.stringify(pose)}`).toBeLessThanOrEqual(30);
        }
      }
    }
  });

  it('drawn teeth have no regular grid: the teeth row across the mouth does not repeat itself', () => {
    // Periodic lines repeat at one spacing: the profile across the teeth, less its smooth shading, then
    // correlates almost perfectly with itself shifted by that spacing. Teeth that narrow along the arch
    // do not. A control: evenly spaced thin lines over shaded teeth (as drawn before) score 0.88.
    const repeat = (profile: readonly number[]): number => {
      const n = profile.length;
      const detail = profile.map((v, i) => {
        let s = 0, c = 0;
        for (let j = Math.max(0, i - 4); j <= Math.min(n - 1, i + 4); j++, c++) s += profile[j]!;
        return v - s / c;
      });
      const energy = detail.reduce((s, v) => s + v * v, 0);
      let best = 0;
      for (let lag = 5; lag <= n / 3; lag++) {
        let s = 0;
        for (let i = 0; i + lag < n; i++) s += detail[i]! * detail[i + lag]!;
        best = Math.max(best, ((s / energy) * n) / (n - lag));
      }
      return best;
    };
    const grid = Array.from({ length: 80 }, (_, i) => {
      const along = i - 40, pitch = 113 / 8.5;
      const line = Math.abs((((along / pitch + 100.5) % 1) - 0.5)) < 0.07 ? 0.86 : 1;
      return 209 * (1 - 0.6 * (along / 56.5) ** 2) * line;
    });
    expect(repeat(grid)).toBeGreaterThan(0.8);
    for (const name of ['closed', 'greyBeard', 'moustache', 'large'] as const) {
      const { renderer, width } = subjects[name];
      const pose = viseme('aa');
      const moved = renderer.landmarksFor(pose, STILL);
      const w = mouthWidth(moved);
      // a band through the upper teeth, across the middle 70 % of the mouth
      const cx = (moved[62]!.x + moved[66]!.x) / 2;
      const y0 = Math.round(moved[62]!.y + 0.03 * w), y1 = Math.round(moved[62]!.y + 0.09 * w);
      const x0 = Math.round(cx - 0.35 * w), x1 = Math.round(cx + 0.35 * w);
      const frame = renderer.render(pose, STILL);
      const profile: number[] = [];
      for (let x = x0; x <= x1; x++) {
        let s = 0;
        for (let y = y0; y <= y1; y++) s += frame[y * width + x]!;
        profile.push(s / (y1 - y0 + 1));
      }
      // the teeth are there (light), and they do not repeat
      expect(profile.reduce((s, v) => s + v, 0) / profile.length, name).toBeGreaterThan(100);
      expect(repeat(profile), name).toBeLessThan(0.6);
    }
  });

  it('the jaw drops: chin landmarks move down as it opens, the frame\'s border stays the photo\'s', () => {
    for (const [name, { renderer, landmarks, width, height }] of Object.entries(subjects)) {
      const photo = renderer.render(REST, STILL).slice();
      const pose = viseme('aa');
      const moved = renderer.landmarksFor(pose, STILL);
      const w = mouthWidth(landmarks);
      for (const i of [7, 8, 9]) expect(moved[i]!.y - landmarks[i]!.y, `${name} ${i}`).toBeGreaterThan(0.15 * w);
      // the jaw's upper ends, by the ears, do not move
      for (const i of [0, 16]) expect(Math.abs(moved[i]!.y - landmarks[i]!.y), `${name} ${i}`).toBeLessThan(0.01 * w);
      const frame = renderer.render(pose, STILL);
      for (let x = 0; x < width; x++) for (const y of [0, height - 1]) expect(frame[y * width + x]).toBe(photo[y * width + x]);
    }
  });

  /** Mean change in luma over a band across the neck, from 0.6 to 0.9 of the mouth's width below the chin, as the jaw opens wide. */
  const neckChange = ({ renderer, landmarks, width, height }: Subject): number => {
    const photo = renderer.render(REST, STILL).slice();
    const frame = renderer.render(viseme('aa'), STILL);
    const w = mouthWidth(landmarks);
    const chin = landmarks[8]!;
    let change = 0, n = 0;
    for (let y = Math.round(chin.y + 0.6 * w); y <= Math.min(height - 1, Math.round(chin.y + 0.9 * w)); y++) {
      for (let x = Math.max(0, Math.round(chin.x - 0.5 * w)); x <= Math.min(width - 1, Math.round(chin.x + 0.5 * w)); x++) {
        change += Math.abs(frame[y * width + x]! - photo[y * width + x]!);
        n++;
      }
    }
    expect(n).toBeGreaterThan(0);
    return change / n;
  };

  it('the neck below the jaw stays: the chin passes over it rather than pulling it along', () => {
    // (not below the beards, which hang from the chin and move with it over the neck)
    for (const name of ['closed', 'teeth', 'moustache', 'large'] as const) expect(neckChange(subjects[name]), name).toBeLessThan(NECK_CHANGE);
  });

  it('in a dark photo too: what is below the jaw is told from the chin at the photo\'s own exposure', async () => {
    // Darkened to a third, the collar's and the neck's differences from the chin shrink with it; taken as
    // alike, they would be pulled down with the chin. How far below the chin the wide-open frame differs
    // from the photo (by more than the photo's noise, scaled with it) stays as in the photo as it is.
    const dark = await subject(PHOTOS.teeth, (s) => s.linear(0.35, 0));
    const reach = ({ renderer, landmarks, width, height }: Subject, level: number): number => {
      const photo = renderer.render(REST, STILL).slice();
      const frame = renderer.render(viseme('aa'), STILL);
      const chin = landmarks[8]!;
      const w = mouthWidth(landmarks);
      let lowest = chin.y;
      for (let y = Math.round(chin.y); y < height; y++) for (let x = Math.round(chin.x - 0.3 * w); x <= Math.round(chin.x + 0.3 * w); x++) {
        if (Math.abs(frame[y * width + x]! - photo[y * width + x]!) > level) lowest = y;
      }
      return (lowest - chin.y) / w;
    };
    const lit = reach(subjects.teeth, 6);
    expect(lit).toBeGreaterThan(0.3); // the chin's own drop
    expect(reach(dark, 2)).toBeLessThan(lit + 0.1);
  }, 30_000);

  it('a beard hangs from the chin: its lower part moves down with it, whole, rather than being squeezed', () => {
    // The grey beard's lower part, between 0.15 and 0.4 of the mouth's width below the chin: with the
    // jaw wide open it is found again further down (normalised cross-correlation over the shifts the
    // chin can drop), about as far down as the chin went.
    const { renderer, landmarks, width } = subjects.greyBeard;
    const pose = viseme('aa');
    const photo = renderer.render(REST, STILL).slice();
    const frame = renderer.render(pose, STILL);
    const w = mouthWidth(landmarks);
    const chin = landmarks[8]!;
    const drop = renderer.landmarksFor(pose, STILL)[8]!.y - chin.y;
    const y0 = Math.round(chin.y + 0.15 * w), y1 = Math.round(chin.y + 0.4 * w);
    const x0 = Math.round(chin.x - 0.25 * w), x1 = Math.round(chin.x + 0.25 * w);
    const patch = (image: Uint8Array, shift: number): number[] => {
      const out: number[] = [];
      for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) out.push(image[(y + shift) * width + x]!);
      return out;
    };
    const original = patch(photo, 0);
    let best = { shift: 0, score: -1 };
    for (let shift = 0; shift <= Math.round(1.2 * drop); shift++) {
      const score = ncc(original, patch(frame, shift));
      if (score > best.score) best = { shift, score };
    }
    // (squeezed against a row that stays, it matched at 0.2; moved with the chin and stretched a little, 0.79)
    expect(best.score).toBeGreaterThan(0.7);
    expect(best.shift).toBeGreaterThan(0.6 * drop);
  });

  it('a drawn tooth\'s biting edge is as soft as the photo\'s own edges, on sharp photos and on a blurred one', async () => {
    // Down the middle of an upper incisor, from the tooth into the dark of the mouth: the edge's rise
    // from 10 % to 90 % is what a Gaussian edge of the photo's blur (measured on its lips as the
    // renderer measures it) rises over: 2.56 sigmas. Teeth drawn crisper or blurrier than the photo fail.
    const blurred = await subject(PHOTOS.closed, (s) => s.blur(3));
    const cases = [...Object.entries(subjects).filter(([n]) => n !== 'teeth'), ['closed, blurred by 3 px', blurred] as const];
    for (const [name, { renderer, landmarks, width, height }] of cases) {
      const pose = viseme('aa');
      const frame = renderer.render(pose, STILL);
      const moved = renderer.landmarksFor(pose, STILL);
      const w = mouthWidth(moved);
      const x = Math.round((moved[62]!.x + moved[66]!.x) / 2 + 0.05 * w);
      const column: number[] = [];
      for (let y = Math.round(moved[62]!.y); y <= Math.round(moved[66]!.y); y++) column.push(frame[y * width + x]!);
      let tooth = 0;
      for (let i = 0; i < column.length / 2; i++) if (column[i]! > column[tooth]!) tooth = i;
      let dark = tooth;
      for (let i = tooth; i < column.length; i++) if (column[i]! < column[dark]!) dark = i;
      const hi = column[tooth]!, lo = column[dark]!;
      const crossing = (level: number): number => {
        for (let i = tooth; i < dark; i++) if (column[i]! >= level && column[i + 1]! < level) return i + (column[i]! - level) / (column[i]! - column[i + 1]!);
        return Number.NaN;
      };
      const rise = crossing(lo + 0.1 * (hi - lo)) - crossing(lo + 0.9 * (hi - lo));
      const rest = renderer.render(REST, STILL);
      const grey = new Uint8Array(width * height * 4);
      for (let i = 0; i < width * height; i++) grey.fill(rest[i]!, 4 * i, 4 * i + 3);
      const lips: number[] = [];
      for (let y = Math.round(Math.min(landmarks[50]!.y, landmarks[52]!.y) - 0.05 * w); y <= Math.round(landmarks[57]!.y + 0.05 * w); y++) {
        for (let xx = Math.round(landmarks[48]!.x); xx <= Math.round(landmarks[54]!.x); xx++) lips.push(y * width + xx);
      }
      const sigma = measureTexture({ width, height, data: grey }, lips).softness;
      const ratio = rise / (2.56 * sigma);
      expect(hi - lo, name).toBeGreaterThan(80); // a tooth against the dark, not a gap between teeth
      expect(ratio, `${name}: edge rises over ${rise.toFixed(2)} px, the photo's blur is ${sigma.toFixed(2)} px`).toBeGreaterThan(0.75);
      expect(ratio, `${name}: edge rises over ${rise.toFixed(2)} px, the photo's blur is ${sigma.toFixed(2)} px`).toBeLessThan(1.4);
    }
  });

  it('the drawn grain is as coarse and as strong as the photo\'s, at its own size and enlarged', async () => {
    // grace_hopper.jpg is 512x600: at 600 px tall it is at its own size, at 1024 enlarged 1.7 times
    const measure = async (size: number) => {
      const meta = await sharp(PHOTOS.closed).metadata();
      const scale = size / Math.max(meta.width!, meta.height!);
      const width = Math.round((meta.width! * scale) / 2) * 2, height = Math.round((meta.height! * scale) / 2) * 2;
      const { data } = await sharp(PHOTOS.closed).resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
      // the cheek below the left eye: skin, no edges
      const pixels: number[] = [];
      for (let y = Math.round(0.5 * height); y < Math.round(0.58 * height); y++) for (let x = Math.round(0.32 * width); x < Math.round(0.42 * width); x++) pixels.push(y * width + x);
      return measureTexture({ width, height, data: new Uint8Array(data) }, pixels);
    };
    const own = await measure(600);
    const enlarged = await measure(1024);
    expect(own.grainScale).toBe(1);
    expect(enlarged.grainScale).toBe(2);
    // measured at its own scale, the grain is about as strong either way (at 1 px the enlarged one's would read a third)
    expect(enlarged.grain / own.grain).toBeGreaterThan(0.7);
    expect(enlarged.grain / own.grain).toBeLessThan(1.4);
  });

  it('drawn teeth take the photo\'s exposure and colour: darker in a dark photo, grey in a grey one', async () => {
    const [dark, grey] = await Promise.all([subject(PHOTOS.closed, (s) => s.linear(0.4, 0)), subject(PHOTOS.closed, (s) => s.grayscale())]);
    /** mean luma and mean chroma distance from grey over the upper teeth's band */
    const teeth = ({ renderer, width, height }: Subject): { luma: number; chroma: number } => {
      const pose = viseme('aa');
      const moved = renderer.landmarksFor(pose, STILL);
      const w = mouthWidth(moved);
      const frame = renderer.render(pose, STILL);
      const cx = Math.round((moved[62]!.x + moved[66]!.x) / 2);
      let luma = 0, chroma = 0, n = 0;
      for (let y = Math.round(moved[62]!.y + 0.04 * w); y <= Math.round(moved[62]!.y + 0.08 * w); y += 2) {
        for (let x = cx - Math.round(0.1 * w); x <= cx + Math.round(0.1 * w); x += 2) {
          luma += frame[y * width + x]!;
          const c = (y >> 1) * (width >> 1) + (x >> 1);
          chroma += Math.abs(frame[width * height + c]! - 128) + Math.abs(frame[(width * height * 5) / 4 + c]! - 128);
          n++;
        }
      }
      return { luma: luma / n, chroma: chroma / n };
    };
    const normal = teeth(subjects.closed);
    expect(normal.luma).toBeGreaterThan(150);
    expect(teeth(dark).luma).toBeLessThan(0.6 * normal.luma);
    expect(normal.chroma).toBeGreaterThan(4);
    expect(teeth(grey).chroma).toBeLessThan(2);
  }, 30_000);
});
