import { open } from 'node:fs/promises';
import { AvatarError } from './errors.js';
import { checkReadableFile } from './fsutil.js';

export type ImageKind = 'jpeg' | 'png' | 'webp';

/** The image format from the first bytes; never trusts the file name. */
export function sniffImage(head: Uint8Array): ImageKind | undefined {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 8 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => head[i] === b)) return 'png';
  if (head.length >= 12 && String.fromCharCode(...head.subarray(0, 4)) === 'RIFF' && String.fromCharCode(...head.subarray(8, 12)) === 'WEBP') return 'webp';
  return undefined;
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

/** Image formats a decoder could read that avatar does not accept, named for the error. */
export function unacceptedImageFormat(head: Uint8Array): string | undefined {
  const ascii = (from: number, to: number): string => String.fromCharCode(...head.subarray(from, to));
  if (ascii(0, 4) === 'GIF8') return 'GIF';
  if ((head[0] === 0x49 && head[1] === 0x49 && head[2] === 0x2a) || (head[0] === 0x4d && head[1] === 0x4d && head[3] === 0x2a)) return 'TIFF';
  if (ascii(0, 2) === 'BM') return 'BMP';
  if (ascii(4, 8) === 'ftyp') return ascii(8, 12).startsWith('avi') ? 'AVIF' : 'HEIF';
  if (head[0] === 0xff && head[1] === 0x0a) return 'JPEG XL';
  if (ascii(0, 5) === '<?xml' || ascii(0, 4) === '<svg') return 'SVG';
  return undefined;
}

/**
 * The error for a file whose first bytes are no accepted photo: another image format by name
 * (IMAGE_UNSUPPORTED), anything else NOT_IMAGE.
 */
export function notAcceptedImage(head: Uint8Array, input: string, path: string): AvatarError {
  if (head.length === 0) return new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason: 'the file is empty' });
  const other = unacceptedImageFormat(head);
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
  const head = await readFileHead(path, 32);
  const kind = sniffImage(head);
  if (!kind) throw notAcceptedImage(head, input, path);
  const size = await readImageSize(path);
  const tooLarge = size && photoTooLarge(size, input, path, options.maxMegapixels);
  if (tooLarge) throw tooLarge;
  return kind;
}

export type AudioKind = 'wav' | 'mp3' | 'ogg' | 'flac' | 'm4a';

/** ISO media brands of audio files (and of MP4s, whose audio track is then what counts). */
const MP4_AUDIO_BRANDS = new Set(['M4A ', 'M4B ', 'mp41', 'mp42', 'isom', 'iso2', 'iso5', 'dash', '3gp4', '3gp5']);

/**
 * The audio container from the first bytes (at least 12); never trusts the file name. Finding a
 * container says nothing about whether its content decodes: a decoder has to confirm that.
 */
export function sniffAudio(head: Uint8Array): AudioKind | undefined {
  const ascii = (from: number, to: number): string => (head.length >= to ? String.fromCharCode(...head.subarray(from, to)) : '');
  if ((ascii(0, 4) === 'RIFF' || ascii(0, 4) === 'RF64') && ascii(8, 12) === 'WAVE') return 'wav';
  if (ascii(0, 4) === 'fLaC') return 'flac';
  if (ascii(0, 4) === 'OggS') return 'ogg';
  if (ascii(4, 8) === 'ftyp' && MP4_AUDIO_BRANDS.has(ascii(8, 12))) return 'm4a';
  if (ascii(0, 3) === 'ID3') return 'mp3';
  // an MPEG audio frame header: 11 sync bits, a known version, layer III, a bitrate index that is neither free nor bad
  const [b0 = 0, b1 = 0, b2 = 0] = head;
  if (head.length >= 3 && b0 === 0xff && (b1 & 0xe0) === 0xe0 && (b1 & 0x18) !== 0x08 && (b1 & 0x06) === 0x02) {
    const bitrate = b2 >> 4;
    if (bitrate !== 0 && bitrate !== 0x0f && (b2 & 0x0c) !== 0x0c) return 'mp3';
  }
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
 */
export async function readImageSize(path: string): Promise<ImageSize | undefined> {
  const handle = await open(path, 'r');
  try {
    const read = async (position: number, length: number): Promise<Uint8Array> => {
      const buffer = new Uint8Array(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      return buffer.subarray(0, bytesRead);
    };
    const head = await read(0, 32);
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
    const kind = sniffImage(head);
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
