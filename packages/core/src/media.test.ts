import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileTypeFromBuffer } from 'file-type';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvatarError } from './errors.js';
import { checkImageFile, readImageSize, sniffAudio, sniffImage, unacceptedImageFormat } from './media.js';

const u16be = (n: number): number[] => [(n >> 8) & 0xff, n & 0xff];
const u16le = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff];
const u24le = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff];
const u32be = (n: number): number[] => [(n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
const u32le = (n: number): number[] => [...u16le(n & 0xffff), ...u16le(n >>> 16)];
const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

/** Headers of each image format, just long enough to carry the size (640x480). */
const IMAGE_HEADS: Record<string, Uint8Array> = {
  png: Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, ...u32be(13), ...ascii('IHDR'), ...u32be(640), ...u32be(480), 8, 2, 0, 0, 0]),
  // SOI, a fill byte, an APP0 segment, then the frame header: FFC0, length 17, precision, height, width, 3 components
  jpeg: Uint8Array.from([0xff, 0xd8, 0xff, 0xff, 0xe0, ...u16be(16), ...ascii('JFIF'), 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    0xff, 0xc0, ...u16be(17), 8, ...u16be(480), ...u16be(640), 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]),
  // VP8X: flags, then canvas width-1 and height-1 in 24 bits: 30 bytes in all
  'webp-vp8x': Uint8Array.from([...ascii('RIFF'), ...u32le(22), ...ascii('WEBP'), ...ascii('VP8X'), ...u32le(10), 0, 0, 0, 0, ...u24le(639), ...u24le(479)]),
  // VP8L: signature 0x2f, then 14 bits each of width-1 and height-1
  'webp-vp8l': Uint8Array.from([...ascii('RIFF'), ...u32le(17), ...ascii('WEBP'), ...ascii('VP8L'), ...u32le(5), 0x2f, ...u32le(639 | (479 << 14))]),
  // VP8 (lossy): frame tag, start code 9d 01 2a, 14-bit width and height
  'webp-vp8': Uint8Array.from([...ascii('RIFF'), ...u32le(22), ...ascii('WEBP'), ...ascii('VP8 '), ...u32le(10), 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, ...u16le(640), ...u16le(480)]),
};

const AUDIO_HEADS: Record<string, { head: Uint8Array; kind: string }> = {
  wav: { head: Uint8Array.from([...ascii('RIFF'), ...u32le(36), ...ascii('WAVE'), ...ascii('fmt ')]), kind: 'wav' },
  // a WAV over 4 GB: its sizes in a ds64 chunk
  rf64: { head: Uint8Array.from([...ascii('RF64'), 0xff, 0xff, 0xff, 0xff, ...ascii('WAVE'), ...ascii('ds64')]), kind: 'wav' },
  // an empty ID3 tag, then the first MPEG frame header
  'mp3-id3': { head: Uint8Array.from([...ascii('ID3'), 4, 0, 0, 0, 0, 0, 0, 0xff, 0xfb, 0x90, 0x64, ...new Array<number>(16).fill(0)]), kind: 'mp3' },
  'mp3-frame': { head: Uint8Array.from([0xff, 0xfb, 0x90, 0x64]), kind: 'mp3' },
  // the first page's header (version, flags, granule, serial, sequence, checksum, one segment), then the Opus head
  ogg: { head: Uint8Array.from([...ascii('OggS'), 0, 2, ...new Array<number>(20).fill(0), 1, 19, ...ascii('OpusHead'), 1, 1, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0]), kind: 'ogg' },
  flac: { head: Uint8Array.from([...ascii('fLaC'), 0, 0, 0, 34]), kind: 'flac' },
  m4a: { head: Uint8Array.from([...u32be(32), ...ascii('ftyp'), ...ascii('M4A '), 0, 0, 2, 0]), kind: 'm4a' },
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-media-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** readImageSize of `bytes` written to a file: a size, undefined, or what it threw. */
async function sizeOf(name: string, bytes: Uint8Array): Promise<{ width: number; height: number } | undefined> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return readImageSize(path);
}

describe('readImageSize', () => {
  it.each(Object.entries(IMAGE_HEADS))('reads the size of a whole %s header', async (name, head) => {
    expect(await sizeOf(`${name}-whole`, head)).toEqual({ width: 640, height: 480 });
  });

  /** Where each header's last size byte ends: a cut before it gives no size, from it on the size. */
  const SIZE_END: Record<string, number> = { png: 24, jpeg: 30, 'webp-vp8x': 30, 'webp-vp8l': 25, 'webp-vp8': 30 };

  it.each(Object.entries(IMAGE_HEADS))('gives undefined, never throws, for a %s header cut at every byte', async (name, head) => {
    const end = SIZE_END[name] ?? head.length;
    for (let length = 0; length <= head.length; length += 1) {
      // whatever the prefix, no RangeError from reading past the end
      const size = await sizeOf(`${name}-${length}`, head.subarray(0, length));
      if (length < end) expect(size, `${name} cut at ${length}`).toBeUndefined();
      else expect(size, `${name} cut at ${length}`).toEqual({ width: 640, height: 480 });
    }
  });

  it('reads a real JPEG and gives undefined for it cut anywhere up to the end of its frame header', async () => {
    const jpeg = await readFile(new URL('../../../tests/fixtures/grace_hopper.jpg', import.meta.url));
    expect(await sizeOf('grace.jpg', jpeg)).toEqual({ width: 512, height: 600 });
    // where the frame header's size bytes (SOF0..SOF2) end
    let end = 0;
    for (let i = 2; i < jpeg.length - 4;) {
      const marker = jpeg[i + 1] ?? 0;
      const length = jpeg.readUInt16BE(i + 2);
      if (marker >= 0xc0 && marker <= 0xc2) {
        end = i + 9;
        break;
      }
      i += 2 + length;
    }
    expect(end).toBeGreaterThan(20);
    for (let length = 0; length <= end + 8; length += 1) {
      const size = await sizeOf(`grace-${length}.jpg`, jpeg.subarray(0, length));
      if (length < end) expect(size, `cut at ${length}`).toBeUndefined();
      else expect(size, `cut at ${length}`).toEqual({ width: 512, height: 600 });
    }
  });

  it('reads the size of real WebP files of each kind (made by ffmpeg)', async () => {
    const cases: [string, string[]][] = [['lossy', ['-c:v', 'libwebp', '-lossless', '0']], ['lossless', ['-c:v', 'libwebp', '-lossless', '1']]];
    for (const [name, codec] of cases) {
      const path = join(dir, `${name}.webp`);
      try {
        execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'color=c=red:s=38x22', '-frames:v', '1', ...codec, path]);
      } catch {
        continue; // an ffmpeg without libwebp: the hand-made headers above still cover the format
      }
      expect(await readImageSize(path), name).toEqual({ width: 38, height: 22 });
      const bytes = await readFile(path);
      for (let length = 0; length < Math.min(bytes.length, 40); length += 1) {
        const size = await sizeOf(`${name}-${length}.webp`, bytes.subarray(0, length));
        if (size) expect(size).toEqual({ width: 38, height: 22 });
      }
    }
  });

  it('checkImageFile refuses cut and empty files with AVATAR_ERR_INPUT_NOT_IMAGE only', async () => {
    for (const [name, head] of Object.entries(IMAGE_HEADS)) {
      for (let length = 0; length < 12; length += 1) {
        const path = join(dir, `check-${name}-${length}`);
        await writeFile(path, head.subarray(0, length));
        const result = await checkImageFile(path, 'the photo').then((kind) => kind, (error: unknown) => error);
        if (typeof result === 'string') {
          expect(result).toBe(await sniffImage(head));
        } else {
          expect(result).toBeInstanceOf(AvatarError);
          expect((result as AvatarError).code).toBe('AVATAR_ERR_INPUT_NOT_IMAGE');
        }
      }
    }
  });
});

describe('sniffAudio and sniffImage on cut heads', () => {
  it.each(Object.entries(AUDIO_HEADS))('%s: recognised whole, never a rejection when cut', async (_name, { head, kind }) => {
    expect(await sniffAudio(head)).toBe(kind);
    for (let length = 0; length < head.length; length += 1) {
      const cut = head.subarray(0, length);
      await expect(sniffAudio(cut)).resolves.not.toThrow();
      await expect(sniffImage(cut)).resolves.not.toThrow();
    }
  });

  it('tells a JPEG by its signature exactly as file-type does, and every other photo through file-type, cut or whole, near misses included', async () => {
    const ours: Readonly<Record<string, string>> = { jpg: 'jpeg', png: 'png', apng: 'png', webp: 'webp' };
    const viaFileType = async (head: Uint8Array): Promise<string | undefined> => {
      const ext = (await fileTypeFromBuffer(head).catch(() => undefined))?.ext;
      return ext === undefined ? undefined : ours[ext];
    };
    const fixtures = fileURLToPath(new URL('../../../tests/fixtures/', import.meta.url));
    const photos: Uint8Array[] = [];
    for (const folder of [fixtures, join(fixtures, 'faces')]) {
      for (const name of await readdir(folder)) {
        if (/\.(jpe?g|png|webp)$/i.test(name)) photos.push(new Uint8Array(await readFile(join(folder, name))).subarray(0, 4100));
      }
    }
    expect(photos.length).toBeGreaterThanOrEqual(8);
    const webp = execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'color=red:s=8x8', '-frames:v', '1', '-c:v', 'libwebp', '-f', 'webp', 'pipe:1']);
    const nearMisses = [
      Uint8Array.from([0xff, 0xd8, 0xff, 0xf7, 0, 0x0b, 8, 0, 8, 0, 8, 1]), // JPEG-LS
      Uint8Array.from([0xff, 0xd8, 0xfe, 0xe0]), Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0b]),
      Uint8Array.from([...ascii('RIFF'), 0, 0, 0, 0, ...ascii('WEBQ')]), AUDIO_HEADS.wav!.head,
    ];
    for (const head of [...photos, ...Object.values(IMAGE_HEADS), new Uint8Array(webp), ...nearMisses]) {
      for (const length of [0, 1, 3, 4, 7, 8, 11, 12, 16, 64, head.length]) {
        const cut = head.subarray(0, length);
        expect(await sniffImage(cut), `${Buffer.from(cut.subarray(0, 12)).toString('hex')} (${length} bytes)`).toBe(await viaFileType(cut));
      }
    }
  });

  it('does not take an image for audio or audio for an image', async () => {
    for (const head of Object.values(IMAGE_HEADS)) expect(await sniffAudio(head)).toBeUndefined();
    for (const { head } of Object.values(AUDIO_HEADS)) expect(await sniffImage(head)).toBeUndefined();
  });

  it('names the image formats it does not take, and takes SVG text for one too', async () => {
    expect(await unacceptedImageFormat(Uint8Array.from([...ascii('GIF89a'), 1, 0, 1, 0, 0, 0, 0]))).toBe('GIF');
    expect(await unacceptedImageFormat(Uint8Array.from([...ascii('BM'), ...new Array<number>(30).fill(0)]))).toBe('BMP');
    // a TIFF's first bytes with its directory further on, as sharp writes it
    expect(await unacceptedImageFormat(Uint8Array.from([0x49, 0x49, 0x2a, 0, 0x40, 0x9c, 0, 0, ...new Array<number>(64).fill(0)]))).toBe('TIFF');
    expect(await unacceptedImageFormat(Uint8Array.from(ascii('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>')))).toBe('SVG');
    expect(await unacceptedImageFormat(IMAGE_HEADS.png!)).toBeUndefined();
    expect(await unacceptedImageFormat(AUDIO_HEADS.wav!.head)).toBeUndefined();
  });
});
