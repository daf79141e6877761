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

/** Checks that `path` is a readable JPEG, PNG or WebP file; `input` names it in the error. */
export async function checkImageFile(path: string, input: string): Promise<ImageKind> {
  await checkReadableFile(path, input);
  const head = await readFileHead(path, 16);
  if (head.length === 0) throw new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason: 'the file is empty' });
  const kind = sniffImage(head);
  if (!kind) throw new AvatarError('AVATAR_ERR_INPUT_NOT_IMAGE', { input, path, reason: 'its content is not a JPEG, PNG or WebP header' });
  return kind;
}
