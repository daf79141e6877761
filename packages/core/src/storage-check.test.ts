import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkStorage } from './storage-check.js';
import { FileJobStore } from './store/file-store.js';
import { pidNamespace } from './owner.js';

describe('checkStorage (avatar doctor)', () => {
  let storage: string;
  let store: FileJobStore;
  beforeEach(async () => {
    storage = await mkdtemp(join(tmpdir(), 'avatar-storage-check-'));
    store = new FileJobStore({ storageDir: storage });
  });
  afterEach(async () => {
    await store.close();
    await rm(storage, { recursive: true, force: true });
  });

  it('a healthy storage folder has nothing to report', async () => {
    await store.submit('voice_synthesis', { text: 'hi' });
    expect(await checkStorage(storage, store)).toEqual([]);
  });

  it('names a damaged job file, an expired claim and a dead run\'s work folder, each with what to do, and changes nothing', async () => {
    const claimed = await store.submit('voice_synthesis', { text: 'claimed, then its worker died' });
    expect((await store.claim('w-gone', { leaseMs: 1 }))?.jobId).toBe(claimed.jobId);
    await sleep(5);
    await writeFile(join(storage, 'jobs', 'job-20260101000000-0badf00d.json'), '{"jobId": ');
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const work = join(storage, 'work', 'run-1-abcdef');
    await mkdir(work, { recursive: true });
    await writeFile(join(work, '.owner'), JSON.stringify({ pid: dead, hostname: hostname(), pidns: pidNamespace() }));
    const before = await readdir(storage, { recursive: true });

    const findings = await checkStorage(storage, store);
    expect(findings.map((f) => f.kind).sort()).toEqual(['damaged_job', 'expired_claim', 'leftover_work']);
    for (const f of findings) {
      expect(f.detail.length, f.kind).toBeGreaterThan(10);
      expect(f.advice.length, f.kind).toBeGreaterThan(10);
    }
    expect(findings.find((f) => f.kind === 'expired_claim')?.detail).toContain(claimed.jobId);
    expect(await readdir(storage, { recursive: true })).toEqual(before);
  });
});
