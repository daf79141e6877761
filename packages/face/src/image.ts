import type sharp from 'sharp';
import { loadSharp } from './sharp.js';
import { AvatarError, PHOTO_MAX_MEGAPIXELS, SNIFF_BYTES, checkReadableFile, isAvatarError, notAcceptedImage, photoTooLarge, readFileHead, sniffImage } from '@avatar/core';
import type { ImageKind } from '@avatar/core';
import type { RgbImage } from './models/types.js';

/** Photos larger than this are refused before decoding: a 40 MP photo already holds any portrait. */
export const DEFAULT_MAX_MEGAPIXELS = PHOTO_MAX_MEGAPIXELS;

export interface LoadImageOptions {
  /** names the file in errors, e.g. "avatar image" */
  input?: string;
  /** refuse images with more pixels than this many millions; default 40 */
  maxMegapixels?: number;
}

export interface LoadedImage {
  image: RgbImage;
  format: ImageKind;
  /** EXIF orientation (1..8) that was applied, 1 when none */
  orientation: number;
  /** the file had an alpha channel, flattened onto white */
  hadAlpha: boolean;
  /** the file was grayscale, expanded to RGB */
  wasGray: boolean;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return (text.split('\n').find((l) => l.trim()) ?? text).trim();
}

/** What a photo's header says, checked: its format and size, not yet a pixel decoded (readImageHeader). */
export interface ImageHeader {
  path: string;
  input: string;
  format: ImageKind;
  /** as the photo is shown: its EXIF orientation applied */
  width: number;
  height: number;
  meta: sharp.Metadata;
  limitPixels: number;
}

/**
 * Decodes a JPEG, PNG or WebP photo into tightly packed 8-bit RGB: EXIF orientation applied,
 * alpha flattened onto white, grayscale expanded. Every way a file can be wrong ends in an AvatarError
 * that names the file and says what to do; nothing here crashes on bad bytes.
 */
export async function loadImage(path: string, options: LoadImageOptions = {}): Promise<LoadedImage> {
  return decodeImage(await readImageHeader(path, options));
}

/**
 * A photo's header, checked as loadImage checks it (readable, an accepted format, a size it gives and
 * that is not too large), without decoding it: a prepared avatar whose checksum its sidecar matches is
 * judged from the sidecar, and its pixels are decoded only where they are needed.
 */
export async function readImageHeader(path: string, options: LoadImageOptions = {}): Promise<ImageHeader> {
  const input = options.input ?? 'image';
  const maxMegapixels = options.maxMegapixels ?? DEFAULT_MAX_MEGAPIXELS;
  await checkReadableFile(path, input);
  const head = await readFileHead(path, SNIFF_BYTES);
  const format = await sniffImage(head);
  if (!format) throw await notAcceptedImage(head, input, path);

  // The header alone gives the size, so a decompression bomb is refused before any pixel is decoded.
  let meta: sharp.Metadata;
  try {
    meta = await (await loadSharp())(path, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new AvatarError('AVATAR_ERR_INPUT_IMAGE_DAMAGED', { input, path, reason: firstLine(error) }, { cause: error });
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width <= 0 || height <= 0) throw new AvatarError('AVATAR_ERR_INPUT_IMAGE_DAMAGED', { input, path, reason: 'the header gives no image size' });
  const limitPixels = Math.floor(maxMegapixels * 1e6);
  const tooLarge = photoTooLarge({ width, height }, input, path, maxMegapixels);
  if (tooLarge) throw tooLarge;
  // (orientations 5-8 turn the picture a quarter)
  const turned = (meta.orientation ?? 1) >= 5;
  return { path, input, format, width: turned ? height : width, height: turned ? width : height, meta, limitPixels };
}

/** The pixels of a photo whose header readImageHeader checked. */
export async function decodeImage(header: ImageHeader): Promise<LoadedImage> {
  const { path, input, format, meta, limitPixels } = header;
  try {
    // failOn 'truncated': a cut-off file is refused; harmless warnings (odd markers) are not.
    const { data, info } = await (await loadSharp())(path, { limitInputPixels: limitPixels, failOn: 'truncated', sequentialRead: true })
      .rotate()
      .flatten({ background: { r: 255, g: 255, b: 255 } })
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels instead of 3`);
    return {
      image: { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) },
      format,
      orientation: meta.orientation ?? 1,
      hadAlpha: meta.hasAlpha === true,
      wasGray: meta.channels !== undefined && meta.channels <= 2,
    };
  } catch (error) {
    if (isAvatarError(error)) throw error;
    throw new AvatarError('AVATAR_ERR_INPUT_IMAGE_DAMAGED', { input, path, reason: firstLine(error) }, { cause: error });
  }
}
