// Face detection + 68 landmarks on a 1024x1024 JPEG (sharp decode included), after warm-up, and the
// time to load the models. Imports the built package (npm run build) and the built models (npm run models).
//   node scripts/bench-face.mjs [--json]
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = fileURLToPath(new URL('..', import.meta.url));

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function decode(jpeg) {
  const { data, info } = await sharp(jpeg).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/**
 * @returns {Promise<Record<string, number>>} milliseconds: load_* (first load in this process:
 *   checksum + session), detect_landmarks_* (median per image, decode included), and the parts.
 */
export async function benchFace({ iterations = 30, warmup = 5, threads = [1, 2] } = {}) {
  const { loadDetector, loadLandmarks } = await import(join(root, 'packages/face/dist/models/index.js'));
  // a real portrait scaled to 1024x1024 and encoded as a JPEG, like a user's photo
  const jpeg = await sharp(join(root, 'tests/fixtures/grace_hopper.jpg')).resize(1024, 1024, { fit: 'cover' }).jpeg({ quality: 90 }).toBuffer();
  const out = {};

  for (const t of threads) {
    let started = performance.now();
    const detector = await loadDetector('tiny', { threads: t });
    const landmarks = await loadLandmarks('full', { threads: t });
    out[`load_tiny_full_threads${t}`] = performance.now() - started;
    started = performance.now();
    const ssd = await loadDetector('ssd', { threads: t });
    out[`load_ssd_threads${t}`] = performance.now() - started;

    const run = async (det) => {
      const t0 = performance.now();
      const image = await decode(jpeg);
      const t1 = performance.now();
      const faces = await det.detect(image, { maxFaces: 1 });
      const t2 = performance.now();
      if (faces.length !== 1) throw new Error(`expected one face, found ${faces.length}`);
      await landmarks.landmarks(image, faces[0].box);
      const t3 = performance.now();
      return [t3 - t0, t1 - t0, t2 - t1, t3 - t2];
    };
    for (const [label, det, n] of [['tiny', detector, iterations], ['ssd', ssd, Math.ceil(iterations / 3)]]) {
      for (let i = 0; i < warmup; i += 1) await run(det);
      const rows = [];
      for (let i = 0; i < n; i += 1) rows.push(await run(det));
      out[`detect_landmarks_${label}_threads${t}`] = median(rows.map((r) => r[0]));
      out[`decode_${label}_threads${t}`] = median(rows.map((r) => r[1]));
      out[`detect_${label}_threads${t}`] = median(rows.map((r) => r[2]));
      out[`landmarks_${label}_threads${t}`] = median(rows.map((r) => r[3]));
    }
    await detector.dispose();
    await landmarks.dispose();
    await ssd.dispose();
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k] * 10) / 10;
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const figures = await benchFace();
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(figures));
  } else {
    console.log(`face: 1024x1024 JPEG, decode + detection + 68 landmarks, median ms after warm-up (${cpus().length} CPUs)`);
    for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(32)} ${v}`);
  }
}
