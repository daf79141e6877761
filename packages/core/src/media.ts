import { open } from 'node:fs/promises';
import { AvatarError } from './errors.js';
import { checkReadableFile } from './fsutil.js';

export type ImageKind = 'jpeg' | 'png' | 'webp';

/** How many first bytes of a file its kind is told from: what file-type reads at most. */
export const SNIFF_BYTES = 4100;

/** file-type, loaded when first needed: importing it takes some 40 ms, a sixth of a CLI run's start. */
let fileType: Promise<typeof import('file-type')> | undefined;

/** What a file's first bytes say it is (file-type's extension for it), never its name; undefined when they say nothing. */
async function sniff(head: Uint8Array): Promise<string | undefined> {
  // (a file-type that cannot be loaded is a broken install, said as it is, not "not an image")
  fileType ??= import('file-type');
  const { fileTypeFromBuffer } = await fileType;
  try {
    return (await fileTypeFromBuffer(head))?.ext;
  } catch {
    return undefined; // bytes file-type cannot make sense of say nothing either
  }
}

/**
 * A JPEG, told from its signature as file-type tells it (FF D8 FF, but not JPEG-LS's FF D8 FF F7), so
 * the usual photo needs no file-type at all. Other formats go to file-type, whose rules for them are
 * more than a signature (a PNG's first chunks, for one). media.test.ts checks that both agree on every
 * photo in the fixtures and on near misses, cut anywhere.
 */
function isJpeg(head: Uint8Array): boolean {
  return head.length > 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff && head[3] !== 0xf7;
}

/** file-type's extensions of the photos avatar takes (an animated PNG is read for its first frame). */
const IMAGE_KINDS: Readonly<Record<string, ImageKind>> = { jpg: 'jpeg', png: 'png', apng: 'png', webp: 'webp' };

/** The image format from the first bytes (up to SNIFF_BYTES); never trusts the file name. */
export async function sniffImage(head: Uint8Array): Promise<ImageKind | undefined> {
  if (isJpeg(head)) return 'jpeg';
  const ext = await sniff(head);
  return ext === undefined ? undefined : IMAGE_KINDS[ext];
}

/** The first `bytes` bytes of a file (fewer when it is shorter). */
export async function readFileHead(path: string, bytes: number): Promise<Uint8Array> {
  const handle = await open(path, 'r');
  try {
    const buffer = new Uint8Array(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** The most pixels a photo may have unless a limit is given (AVATAR_FACE_MAX_MEGAPIXELS, the upload limit). */
export const PHOTO_MAX_MEGAPIXELS = 40;

/** Image formats a decoder could read that avatar does not accept, by file-type's extension, named for the error. */
const OTHER_IMAGES: Readonly<Record<string, string>> = {
  gif: 'GIF', tif: 'TIFF', bmp: 'BMP', avif: 'AVIF', heic: 'HEIF', jxl: 'JPEG XL', jp2: 'JPEG 2000', ico: 'ICO', psd: 'PSD',
};

/** The name of an image format avatar does not take, from the first bytes; undefined for anything else. */
export async function unacceptedImageFormat(head: Uint8Array): Promise<string | undefined> {
  const ext = await sniff(head);
  if (ext !== undefined && ext !== 'xml') return OTHER_IMAGES[ext];
  // a TIFF whose directory lies past the first bytes (sharp writes it at the end): file-type follows
  // it only in the whole file, so the byte order mark and 42 name it here
  if ((head[0] === 0x49 && head[1] === 0x49 && head[2] === 0x2a && head[3] === 0) || (head[0] === 0x4d && head[1] === 0x4d && head[2] === 0 && head[3] === 0x2a)) return 'TIFF';
  // SVG is text: file-type says XML at most
  const text = String.fromCharCode(...head.subarray(0, 256)).trimStart();
  return text.startsWith('<svg') || (text.startsWith('<?xml') && text.includes('<svg')) ? 'SVG' : undefined;
}

/**
 * The error for a file whose first bytes are no accepted photo: another image format by name
 * (IMAGE_UNSUPPORTED), anything else NOT_IMAGE.
 */
export async function notAcceptedImage(head: Uint8Array, input: string, path: string): Promise<AvatarError> {
  if (head.length === 0) return new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason: 'the file is empty' });
  const other = await unacceptedImageFormat(head);
  if (other) return new AvatarError('AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED', { input, path, format: other });
  return new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason: 'its content is not a JPEG, PNG or WebP header' });
}

/** The pixel limit in force: AVATAR_FACE_MAX_MEGAPIXELS when it is set to a positive number, else the default. */
export function photoPixelLimit(env: NodeJS.ProcessEnv = process.env): number {
  const asked = Number(env.AVATAR_FACE_MAX_MEGAPIXELS);
  return Number.isFinite(asked) && asked > 0 ? asked : PHOTO_MAX_MEGAPIXELS;
}

/** The error for a photo over the pixel limit, or undefined when it is within it. */
export function photoTooLarge(size: ImageSize, input: string, path: string, maxMegapixels = photoPixelLimit()): AvatarError | undefined {
  const { width, height } = size;
  if (width * height <= Math.floor(maxMegapixels * 1e6)) return undefined;
  return new AvatarError('AVATAR_ERR_INPUT_IMAGE_TOO_LARGE', { input, path, width, height, megapixels: ((width * height) / 1e6).toFixed(1), limit: maxMegapixels });
}

/**
 * Checks that `path` is a readable JPEG, PNG or WebP file within the pixel limit (from its header:
 * nothing is decoded); `input` names it in the error. Every command that reads a photo starts here.
 */
export async function checkImageFile(path: string, input: string, options: { maxMegapixels?: number } = {}): Promise<ImageKind> {
  await checkReadableFile(path, input);
  const head = await readFileHead(path, SNIFF_BYTES);
  const kind = await sniffImage(head);
  if (!kind) throw await notAcceptedImage(head, input, path);
  const size = await readImageSize(path);
  const tooLarge = size && photoTooLarge(size, input, path, options.maxMegapixels);
  if (tooLarge) throw tooLarge;
  return kind;
}

export type AudioKind = 'wav' | 'mp3' | 'ogg' | 'flac' | 'm4a';

/** file-type's extensions of the recordings avatar takes (an MP4's or 3GP's audio track is what counts). */
const AUDIO_KINDS: Readonly<Record<string, AudioKind>> = {
  wav: 'wav', mp3: 'mp3', ogg: 'ogg', opus: 'ogg', oga: 'ogg', spx: 'ogg', flac: 'flac', m4a: 'm4a', m4b: 'm4a', mp4: 'm4a', '3gp': 'm4a', '3g2': 'm4a',
};

/**
 * The audio container from the first bytes (up to SNIFF_BYTES); never trusts the file name. Finding a
 * container says nothing about whether its content decodes: a decoder has to confirm that.
 */
export async function sniffAudio(head: Uint8Array): Promise<AudioKind | undefined> {
  const ext = await sniff(head);
  if (ext !== undefined) return AUDIO_KINDS[ext];
  // what file-type leaves out: RF64 (a WAV over 4 GB), and an ID3 tag followed by padding or a first
  // frame past the bytes read (ffmpeg decodes both; a decoder confirms the rest)
  const ascii = (from: number, to: number): string => (head.length >= to ? String.fromCharCode(...head.subarray(from, to)) : '');
  if (ascii(0, 4) === 'RF64' && ascii(8, 12) === 'WAVE') return 'wav';
  if (ascii(0, 3) === 'ID3') return 'mp3';
  return undefined;
}

export interface ImageSize {
  width: number;
  height: number;
}

/** JPEG start-of-frame markers (every SOFn but DHT, JPG and DAC), which carry the frame size. */
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/**
 * The pixel size a JPEG, PNG or WebP file declares in its header, read without decoding any pixel,
 * so a decompression bomb (a small file that claims a huge size) can be refused first.
 * undefined when the header is not one of those formats or gives no size.
 *
 * Written here rather than taken from image-size: its last release that runs on Node 20 (2.0.2; later
 * ones need Node 22) sized WebP files cut short (16 to 39 bytes of a 38x22 one) as 1x1 instead of
 * giving none, and gave no size for a JPEG that ends after its frame header; media.test.ts holds both
 * cases. Measured 2026-12-06 by running media.test.ts against it.
 */
export async function readImageSize(path: string): Promise<ImageSize | undefined> {
  const handle = await open(path, 'r');
  try {
    const read = async (position: number, length: number): Promise<Uint8Array> => {
      const buffer = new Uint8Array(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      return buffer.subarray(0, bytesRead);
    };
    // one read serves both the kind and the size (the sizes lie in the first 32 bytes)
    const head = await read(0, SNIFF_BYTES);
    const kind = await sniffImage(head);
    // every multi-byte read is checked against what was actually read: a cut header gives undefined
    const le = (at: number, bytes: number): number | undefined => {
      if (at + bytes > head.length) return undefined;
      let value = 0;
      for (let i = bytes - 1; i >= 0; i -= 1) value = value * 256 + (head[at + i] ?? 0);
      return value;
    };
    const be = (at: number, bytes: number): number | undefined => {
      if (at + bytes > head.length) return undefined;
      let value = 0;
      for (let i = 0; i < bytes; i += 1) value = value * 256 + (head[at + i] ?? 0);
      return value;
    };
    const sized = (width: number | undefined, height: number | undefined): ImageSize | undefined =>
      (width !== undefined && height !== undefined && width > 0 && height > 0 ? { width, height } : undefined);
    const ascii = (from: number, to: number): string => (head.length >= to ? String.fromCharCode(...head.subarray(from, to)) : '');
    if (kind === 'png') {
      if (ascii(12, 16) !== 'IHDR') return undefined;
      return sized(be(16, 4), be(20, 4));
    }
    if (kind === 'webp') {
      const chunk = ascii(12, 16);
      if (chunk === 'VP8X') {
        // 24-bit canvas width-1 and height-1 at 24 and 27
        const w = le(24, 3);
        const h = le(27, 3);
        return w === undefined || h === undefined ? undefined : sized(w + 1, h + 1);
      }
      if (chunk === 'VP8L') {
        const bits = le(21, 4);
        if (head[20] !== 0x2f || bits === undefined) return undefined;
        return sized(1 + (bits & 0x3fff), 1 + ((bits >>> 14) & 0x3fff));
      }
      if (chunk === 'VP8 ') {
        if (head[23] !== 0x9d || head[24] !== 0x01 || head[25] !== 0x2a) return undefined;
        const w = le(26, 2);
        const h = le(28, 2);
        return w === undefined || h === undefined ? undefined : sized(w & 0x3fff, h & 0x3fff);
      }
      return undefined;
    }
    if (kind === 'jpeg') {
      // walk the segments up to the frame header; EXIF and ICC segments before it may be large
      let offset = 2;
      for (let segments = 0; segments < 1000; segments += 1) {
        const marker = await read(offset, 4);
        if (marker.length < 2 || marker[0] !== 0xff) return undefined;
        const code = marker[1] ?? 0;
        if (code === 0xff) {
          offset += 1; // fill byte
          continue;
        }
        if (code === 0xd8 || code === 0x01 || (code >= 0xd0 && code <= 0xd7)) {
          offset += 2; // markers without a length
          continue;
        }
        if (code === 0xd9 || code === 0xda || marker.length < 4) return undefined; // end of image, or scan data before any frame
        const length = ((marker[2] ?? 0) << 8) | (marker[3] ?? 0);
        if (length < 2) return undefined;
        if (JPEG_SOF.has(code)) {
          const frame = await read(offset + 4, 5);
          // precision, height (2), width (2); a frame header cut short gives no size
          if (length < 7 || frame.length < 5) return undefined;
          return sized(((frame[3] ?? 0) << 8) | (frame[4] ?? 0), ((frame[1] ?? 0) << 8) | (frame[2] ?? 0));
        }
        offset += 2 + length;
      }
    }
    return undefined;
  } finally {
    await handle.close();
  }
}
