import { mkdir, mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { atomicWriteFile, atomicWriteSmallFile } from './fsutil.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-fsutil-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe.each([
  ['atomicWriteFile', atomicWriteFile],
  ['atomicWriteSmallFile', atomicWriteSmallFile],
  ['atomicWriteFile, not durable', (path: string, data: string) => atomicWriteFile(path, data, { durable: false })],
] as const)('%s', (_name, write) => {
  it('writes a new file and replaces an old one whole, leaving no temp file', async () => {
    const target = join(dir, 'job.json');
    await write(target, '{"a": 1}\n');
    expect(await readFile(target, 'utf8')).toBe('{"a": 1}\n');
    const text = `{"text": "${'é'.repeat(5000)}"}\n`;
    await write(target, text);
    expect(await readFile(target, 'utf8')).toBe(text);
    expect(await readdir(dir)).toEqual(['job.json']);
  });

  it('fails without leaving anything behind when the target cannot be replaced', async () => {
    // a folder where the file should go: the rename fails after the temp file was written
    const target = join(dir, 'taken');
    await writeFile(join(dir, 'keep'), 'x');
    await mkdir(target);
    await expect(write(target, 'data')).rejects.toThrow();
    expect((await readdir(dir)).sort()).toEqual(['keep', 'taken']);
  });
});

describe('atomicWriteFile', () => {
  it('syncs the file before the rename unless asked not to', async () => {
    const probe = await open(join(dir, 'probe'), 'w');
    const handleType = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const sync = vi.spyOn(handleType, 'sync');
    try {
      await atomicWriteFile(join(dir, 'synced'), 'a');
      expect(sync).toHaveBeenCalledTimes(1);
      await atomicWriteFile(join(dir, 'not-synced'), 'b', { durable: false });
      expect(sync).toHaveBeenCalledTimes(1);
      expect(await readFile(join(dir, 'not-synced'), 'utf8')).toBe('b');
    } finally {
      sync.mockRestore();
    }
  });
});
