import { closeSync, mkdtempSync, openSync, readSync, rmdirSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Crops kept in memory before the rest go to a file: some 40 s of 25 fps video at the largest crop. */
export const CROPS_IN_MEMORY_BYTES = 4 << 20;
/** Crops written to the file at once. */
const BATCH = 64;

/**
 * Equal-sized byte crops, one per video frame, kept until the whole clip has been seen (the inspector
 * measures each frame's mouth against a rest appearance that only the whole clip's silences give).
 * The first go in memory; past `memoryBytes` the rest go to a temporary file, so memory stays the same
 * however long the clip. The file is unlinked as soon as it is open (where the system allows: Linux,
 * macOS), so even a killed process leaves nothing; `close` removes it otherwise. A file that cannot be
 * made or written (a full disk) only means the rest stay in memory, as they all did before.
 */
export class CropStore {
  private readonly memory: Uint8Array[] = [];
  private readonly maxInMemory: number;
  /** the file, with its name and folder where they could not be removed while it was open */
  private file: { fd: number; path: string | undefined; folder: string | undefined } | undefined;
  private fileFailed = false;
  private closed = false;
  /** crops in the file, and those waiting to be written there */
  private filed = 0;
  private readonly batch: Uint8Array;
  private batched = 0;
  /** crops past the memory limit kept in memory after all (the file could not take them) */
  private readonly overflow: Uint8Array[] = [];

  private readonly dir: string | undefined;

  /** `dir`: where the file is made (default: the system's temporary folder) */
  constructor(readonly cropBytes: number, options: { memoryBytes?: number; dir?: string } = {}) {
    this.maxInMemory = Math.max(1, Math.floor((options.memoryBytes ?? CROPS_IN_MEMORY_BYTES) / Math.max(1, cropBytes)));
    this.batch = new Uint8Array(cropBytes * BATCH);
    this.dir = options.dir;
  }

  get length(): number {
    return this.memory.length + this.filed + this.batched + this.overflow.length;
  }

  /** Whether some crops went to the file (for tests). */
  get spilled(): boolean {
    return this.filed > 0;
  }

  /** Keeps a copy of `crop` (which must be cropBytes long). */
  push(crop: Uint8Array): void {
    if (crop.length !== this.cropBytes) throw new RangeError(`a crop of ${crop.length} bytes in a store of ${this.cropBytes}`);
    // (a decode stopped late may still hand on a frame or two: nothing is kept, and no file opened again)
    if (this.closed) return;
    if (this.memory.length < this.maxInMemory) {
      this.memory.push(crop.slice());
      return;
    }
    if (this.fileFailed || this.overflow.length > 0) {
      this.overflow.push(crop.slice());
      return;
    }
    this.batch.set(crop, this.batched * this.cropBytes);
    this.batched++;
    if (this.batched === BATCH) this.flush();
  }

  /** Every crop in the order pushed; a crop handed out is valid until the next step of the loop. */
  *entries(): Generator<[number, Uint8Array]> {
    this.flush();
    let i = 0;
    for (const crop of this.memory) yield [i++, crop];
    if (this.file && this.filed > 0) {
      const chunk = new Uint8Array(this.cropBytes * BATCH);
      for (let at = 0; at < this.filed; at += BATCH) {
        const count = Math.min(BATCH, this.filed - at);
        const bytes = count * this.cropBytes;
        let read = 0;
        while (read < bytes) {
          const n = readSync(this.file.fd, chunk, read, bytes - read, at * this.cropBytes + read);
          if (n === 0) throw new Error('the crop file ended early');
          read += n;
        }
        for (let k = 0; k < count; k++) yield [i++, chunk.subarray(k * this.cropBytes, (k + 1) * this.cropBytes)];
      }
    }
    for (const crop of this.overflow) yield [i++, crop];
  }

  /** Lets go of the file (and removes it where it could not be unlinked while open); later pushes keep nothing. */
  close(): void {
    this.closed = true;
    const file = this.file;
    this.file = undefined;
    if (!file) return;
    try {
      closeSync(file.fd);
    } catch {
      // closed already
    }
    for (const remove of [() => file.path !== undefined && unlinkSync(file.path), () => file.folder !== undefined && rmdirSync(file.folder)]) {
      try {
        remove();
      } catch {
        // gone already
      }
    }
  }

  /** Writes the batch to the file; on any failure the batch, and every crop after it, stays in memory. */
  private flush(): void {
    if (this.batched === 0) return;
    const bytes = this.batched * this.cropBytes;
    try {
      const file = this.openFile();
      let written = 0;
      while (written < bytes) written += writeSync(file.fd, this.batch, written, bytes - written, this.filed * this.cropBytes + written);
      this.filed += this.batched;
    } catch {
      this.fileFailed = true;
      for (let k = 0; k < this.batched; k++) this.overflow.push(this.batch.slice(k * this.cropBytes, (k + 1) * this.cropBytes));
    }
    this.batched = 0;
  }

  private openFile(): { fd: number; path: string | undefined; folder: string | undefined } {
    if (this.file) return this.file;
    const folder = mkdtempSync(join(this.dir ?? tmpdir(), 'avatar-crops-'));
    const path = join(folder, 'crops');
    let fd: number;
    try {
      fd = openSync(path, 'w+', 0o600);
    } catch (error) {
      rmdirSync(folder);
      throw error;
    }
    // an open file that has no name: its room goes back to the disk when it is closed or the process
    // ends (a system that cannot unlink an open file, or leaves its name until then: removed on close)
    const file: { fd: number; path: string | undefined; folder: string | undefined } = { fd, path, folder };
    try {
      unlinkSync(path);
      file.path = undefined;
      rmdirSync(folder);
      file.folder = undefined;
    } catch {
      // what is left is removed by close
    }
    this.file = file;
    return file;
  }
}
