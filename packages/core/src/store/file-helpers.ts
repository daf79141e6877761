import { readFileSync } from 'node:fs';
import { unlink } from 'node:fs/promises';

// Small file-system helpers the file store's parts share.

export const errnoCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

export async function unlinkQuiet(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
}

/**
 * Reads a small file (a job record, a lock) on the calling thread. These files are a few KB and
 * hot in the page cache, so the read itself takes microseconds, while the asynchronous way costs
 * an open, a read and a close, each a round trip through the thread pool: that overhead, not the
 * disk, set the cost of reading one job and of listing many.
 */
export async function readSmall(path: string): Promise<string> {
  return readFileSync(path, 'utf8');
}

/** Errors that mean "this file system cannot hard-link here": fall back to creating a file. */
export const NO_LINK = new Set(['EMLINK', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'ENOSYS']);
