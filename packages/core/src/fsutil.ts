import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, writeSync } from 'node:fs';
import { access, mkdir, open, rename, rm, stat, statfs } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { AvatarError, storageError } from './errors.js';
import { fsyncFd, openFd } from './fdio.js';
import { ownerTag } from './owner.js';

/**
 * Writes a file so that a reader sees the old content or the new one, never a mix:
 * temp file beside the target, fsync, rename over the target. `durable: false` leaves out the fsync:
 * readers never see a torn file while the machine runs (the rename is atomic), but after a power cut
 * the file may be empty or gone; for files synced later by other means (a live video's segments, synced
 * together when the stream ends), where an fsync each would cost a live viewer 10-30 ms a file.
 */
export async function atomicWriteFile(path: string, data: string | Uint8Array, options: { durable?: boolean } = {}): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(tmp, 'w');
  try {
    try {
      await handle.writeFile(data);
      if (options.durable !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    // a full disk fails the write: the torn temp file goes too
    await rm(tmp, { force: true });
    throw namingPath(error, path);
  }
}

/** Writes through a file descriptor fail without a path: the error then names the file being written. */
export function namingPath(error: unknown, path: string): unknown {
  if (error instanceof Error && (error as NodeJS.ErrnoException).path === undefined) (error as NodeJS.ErrnoException).path = path;
  return error;
}

/**
 * atomicWriteFile for small files written often (job records, locks): the same temp file, fsync and
 * rename, with fewer trips through the thread pool. Steps that can wait on the file system's journal
 * (creating the file, the fsync, the rename) stay off the event loop; copying a few KB into the page
 * cache and closing take microseconds and run inline, where a thread-pool round trip would cost more
 * than the work.
 */
export async function atomicWriteSmallFile(path: string, data: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fd = await openFd(tmp, 'w');
  try {
    try {
      const bytes = Buffer.from(data, 'utf8');
      // a regular file takes it in one write; the loop covers a short write all the same
      for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at);
      await fsyncFd(fd);
    } finally {
      closeSync(fd);
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw namingPath(error, path);
  }
}

/**
 * Writes a new small file whole or not at all: a write that fails after the file was made (a full
 * disk) removes it, so no empty or torn file is left for a reader to take as written. `exclusive`
 * fails with EEXIST when the file is there already, and then leaves that file alone.
 */
export async function writeWholeFile(path: string, data: string | Uint8Array, options: { exclusive?: boolean } = {}): Promise<void> {
  const handle = await open(path, options.exclusive ? 'wx' : 'w');
  try {
    try {
      await handle.writeFile(data);
    } finally {
      await handle.close();
    }
  } catch (error) {
    await rm(path, { force: true });
    throw namingPath(error, path);
  }
}

/** Free space under which a tool's failure to write is taken for a full disk (a WAV header, a frame). */
const NEARLY_FULL_BYTES = 256 * 1024;

/**
 * When the disk holding `path` is (nearly) full, the error that says so, for a tool that failed to
 * write there in its own words (or wrote a short file); undefined otherwise, or when it cannot tell.
 */
export async function diskFullAt(path: string, cause?: unknown): Promise<AvatarError | undefined> {
  try {
    const fs = await statfs(dirname(path));
    if (fs.bavail * fs.bsize >= NEARLY_FULL_BYTES) return undefined;
  } catch {
    return undefined;
  }
  return storageError(Object.assign(new Error(`ENOSPC: no space left on device, write '${path}'`), { code: 'ENOSPC', path, syscall: 'write', cause }));
}

/**
 * A path beside `target` to write into before renaming onto it; keeps the extension. The name says
 * whose it is (`.<name>.partial-<pid>-<host tag>-<random>.<ext>`), so that what a killed process
 * leaves can be told from what a live one, here or on another host, is still writing (leftovers.ts).
 */
export function partialPathFor(target: string): string {
  const ext = extname(target);
  return join(dirname(target), `.${basename(target, ext)}.partial-${process.pid}-${ownerTag()}-${randomBytes(3).toString('hex')}${ext}`);
}

export async function ensureDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true });
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path, fsConstants.F_OK);
    return true;
  } catch {
    return false;
  }
}

/** Checks an input file: exists, is a file, can be read. `input` names it in errors ("avatar image"). */
export async function checkReadableFile(path: string, input: string): Promise<void> {
  let info;
  try {
    info = await stat(path);
  } catch {
    throw new AvatarError('AVATAR_ERR_INPUT_FILE_MISSING', { input, path });
  }
  if (!info.isFile()) throw new AvatarError('AVATAR_ERR_INPUT_FILE_UNREADABLE', { input, path, reason: 'not a regular file' });
  try {
    await access(path, fsConstants.R_OK);
  } catch (error) {
    throw new AvatarError('AVATAR_ERR_INPUT_FILE_UNREADABLE', { input, path, reason: (error as NodeJS.ErrnoException).code ?? 'no read permission' });
  }
}

/** Checks that an output path can be written: not a folder itself, its folder exists and is writable. */
export async function checkWritableTarget(path: string, input: string): Promise<void> {
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new AvatarError('AVATAR_ERR_OUTPUT_IS_DIRECTORY', { input, path });
  const dir = dirname(path);
  let info;
  try {
    info = await stat(dir);
  } catch {
    throw new AvatarError('AVATAR_ERR_OUTPUT_DIR_MISSING', { input, path: dir });
  }
  if (!info.isDirectory()) throw new AvatarError('AVATAR_ERR_OUTPUT_DIR_MISSING', { input, path: dir });
  try {
    await access(dir, fsConstants.W_OK);
  } catch {
    throw new AvatarError('AVATAR_ERR_OUTPUT_NOT_WRITABLE', { input, path: dir });
  }
}
