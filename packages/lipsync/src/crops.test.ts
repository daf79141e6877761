import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CropStore } from './crops.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-crops-test-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A crop whose bytes say which it is. */
const cropOf = (i: number, size: number): Uint8Array => Uint8Array.from({ length: size }, (_, k) => (i * 31 + k * 7) & 0xff);

describe('CropStore', () => {
  it('gives back every crop in order, past its memory in a file that has no name, and nothing after', async () => {
    const size = 37;
    // room for 10 in memory; 1,000 crops: 15 batches and a part one through the file
    const store = new CropStore(size, { memoryBytes: 10 * size, dir });
    const crop = new Uint8Array(size);
    for (let i = 0; i < 1000; i++) {
      crop.set(cropOf(i, size));
      store.push(crop); // the same buffer each time: the store keeps copies
    }
    expect(store.length).toBe(1000);
    expect(store.spilled).toBe(true);
    // the file was unlinked as soon as it was opened: the folder holds nothing while it is in use
    if (process.platform !== 'win32') expect(await readdir(dir)).toEqual([]);
    for (let pass = 0; pass < 2; pass++) {
      let n = 0;
      for (const [i, c] of store.entries()) {
        expect(i).toBe(n++);
        expect(Buffer.from(c).equals(Buffer.from(cropOf(i, size))), `crop ${i}`).toBe(true);
      }
      expect(n).toBe(1000);
    }
    store.close();
    expect(await readdir(dir)).toEqual([]);
  });

  it('keeps the rest in memory when no file can be made, in the same order', () => {
    const size = 5;
    const store = new CropStore(size, { memoryBytes: 3 * size, dir: join(dir, 'no-such-folder') });
    for (let i = 0; i < 200; i++) store.push(cropOf(i, size));
    expect(store.spilled).toBe(false);
    const got = [...store.entries()].map(([i, c]) => [i, Buffer.from(c).toString('hex')]);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => [i, Buffer.from(cropOf(i, size)).toString('hex')]));
    store.close();
  });

  it('refuses a crop of another size, and keeps nothing once closed (nor opens a file again)', async () => {
    expect(() => new CropStore(4).push(new Uint8Array(5))).toThrow(RangeError);
    const store = new CropStore(4, { memoryBytes: 4, dir });
    store.close();
    for (let i = 0; i < 200; i++) store.push(cropOf(i, 4));
    expect(store.length).toBe(0);
    expect(store.spilled).toBe(false);
  });
});
