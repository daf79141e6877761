// Contact sheets of the mouth: for each real photo, one PNG with, side by side at full resolution, the
// photo's own mouth, then the rendered mouth at rest, in a wide vowel (aa), a rounded vowel (uw), a
// closed consonant (p) and f/v, as the pipeline draws them at `--quality high` (I420, the compiled kernels
// when the addon is built). Photos smaller than the size are enlarged to it first, so every mouth is judged
// at that size or more (larger ones stay at their own). Run through `npm run contact-sheet` (it builds first).
//   node scripts/contact-sheet.mjs [--size 1024] [--zoom 1] [--out out/contact-sheets] [photo ...]
import { mkdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '1024' }, zoom: { type: 'string', default: '1' }, out: { type: 'string', default: join(root, 'out/contact-sheets') } },
});
const size = Number(values.size);
const zoom = Number(values.zoom);
const fixtures = join(root, 'tests/fixtures');
// the fixture photos; a dark and a grayscale photo are made from real ones below
const PHOTOS = [
  ['neutral', join(fixtures, 'grace_hopper.jpg')],
  ['smile', join(fixtures, 'faces/astronaut_eileen_collins.jpg')],
  ['beard', join(fixtures, 'faces/mendeleev_beard.jpg')],
  ['beard-older', join(fixtures, 'faces/lamport_beard.jpg')],
  ['moustache', join(fixtures, 'faces/barkla.jpg')],
  // the same photograph at 1024x1346: its own detail, not an enlargement
  ['large', join(fixtures, 'faces/barkla_1024.jpg')],
  ['dark', join(fixtures, 'faces/astronaut_eileen_collins.jpg'), (s) => s.linear(0.35, 0).gamma(1.2)],
  ['grayscale', join(fixtures, 'grace_hopper.jpg'), (s) => s.grayscale()],
];

const { FaceRenderer, VISEMES } = await import(join(root, 'packages/lipsync/dist/index.js'));
const face = (await import(join(root, 'packages/face/dist/index.js'))).plugins.find((p) => p.stage === 'face');
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const ctx = { signal: new AbortController().signal, progress() {}, log: silent, workDir: '/tmp' };
const detector = await face.load({ log: silent, storageDir: '/tmp', options: {} });

const pose = (phone) => {
  const [, v] = VISEMES[phone];
  return { jawOpen: v.jaw, lipWidth: v.width ?? 0, lipClosure: v.closure, teethVisible: v.teeth ?? 0, lipToTeeth: v.lipToTeeth };
};
const COLUMNS = [['rest', { jawOpen: 0, lipWidth: 0, lipClosure: 0, teethVisible: 0, lipToTeeth: 0 }], ['aa', pose('aa')], ['uw', pose('uw')], ['p', pose('p')], ['f', pose('f')]];
const STILL = { blink: 0, headAngle: 0, headX: 0, headY: 0 };

/** I420 (BT.709, limited range) to RGB, as a player shows it. */
function i420ToRgb(yuv, W, H) {
  const rgb = Buffer.alloc(W * H * 3);
  const u0 = W * H, v0 = u0 + (W * H) / 4;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const c = (y >> 1) * (W >> 1) + (x >> 1);
    const Y = 1.164 * (yuv[y * W + x] - 16), U = yuv[u0 + c] - 128, V = yuv[v0 + c] - 128;
    const o = (y * W + x) * 3;
    rgb[o] = Math.max(0, Math.min(255, Math.round(Y + 1.793 * V)));
    rgb[o + 1] = Math.max(0, Math.min(255, Math.round(Y - 0.213 * U - 0.533 * V)));
    rgb[o + 2] = Math.max(0, Math.min(255, Math.round(Y + 2.112 * U)));
  }
  return rgb;
}

mkdirSync(values.out, { recursive: true });
const list = positionals.length > 0 ? positionals.map((p) => [basename(p, extname(p)), p]) : PHOTOS;
for (const [name, path, adjust] of list) {
  let input;
  try {
    input = sharp(path).rotate();
    if (adjust) input = adjust(input);
    input = await input.png().toBuffer();
  } catch {
    continue; // a fixture this checkout does not have
  }
  const meta = await sharp(input).metadata();
  const scale = Math.max(1, size / Math.max(meta.width, meta.height)); // larger photos stay as they are
  const W = Math.round((meta.width * scale) / 2) * 2, H = Math.round((meta.height * scale) / 2) * 2;
  const photoPath = join(values.out, `.${name}.png`);
  await sharp(input).resize(W, H, { fit: 'fill', kernel: 'lanczos3' }).toFile(photoPath);
  let avatar;
  try {
    avatar = await detector.run({ imagePath: photoPath }, ctx);
  } catch (error) {
    console.log(`contact sheet: ${name} skipped: ${error.message}`);
    continue;
  }
  const lm = avatar.face.landmarks;
  const { data } = await sharp(photoPath).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const renderer = new FaceRenderer({ width: W, height: H, data: new Uint8Array(data) }, lm, { pixelFormat: 'yuv420p' });
  // the mouth with the chin and what is below it, as wide as the jaw between its corners
  const xs = [...lm.slice(3, 14), ...lm.slice(48, 68)].map((p) => p.x), ys = [lm[33], lm[8]].map((p) => p.y);
  const mw = Math.hypot(lm[54].x - lm[48].x, lm[54].y - lm[48].y);
  const left = Math.max(0, Math.floor(Math.min(...xs.slice(11)) - 0.45 * mw));
  const right = Math.min(W, Math.ceil(Math.max(...xs.slice(11)) + 0.45 * mw));
  const top = Math.max(0, Math.floor(ys[0] - 0.1 * mw));
  const bottom = Math.min(H, Math.ceil(ys[1] + 0.9 * mw)); // down to the neck: a beard moves over it
  const region = { left, top, width: right - left, height: bottom - top };
  const tiles = [await sharp(photoPath).extract(region).removeAlpha().raw().toBuffer()];
  for (const [, mouth] of COLUMNS) {
    const frame = renderer.render(mouth, STILL);
    tiles.push(await sharp(i420ToRgb(frame, W, H), { raw: { width: W, height: H, channels: 3 } }).extract(region).raw().toBuffer());
  }
  const gap = 4;
  const sheetW = tiles.length * region.width + (tiles.length - 1) * gap;
  let sheet = sharp({ create: { width: sheetW, height: region.height, channels: 3, background: '#ffffff' } })
    .composite(tiles.map((t, i) => ({ input: t, raw: { width: region.width, height: region.height, channels: 3 }, left: i * (region.width + gap), top: 0 })));
  if (zoom !== 1) sheet = sharp(await sheet.png().toBuffer()).resize(sheetW * zoom, region.height * zoom, { kernel: 'nearest' });
  const file = join(values.out, `${name}.png`);
  await sheet.png().toFile(file);
  console.log(`contact sheet: ${file} (${W}x${H}, kernel ${renderer.kernel}; columns: photo, ${COLUMNS.map(([c]) => c).join(', ')})`);
}
await detector.unload();
