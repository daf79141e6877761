import { mkdtemp, readdir, readFile, rm, writeFile, utimes, mkdir, stat } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryLogger } from '../log.js';
import { runJobStoreConformance } from '../testing.js';
import { FileJobStore } from './file-store.js';

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'avatar-filestore-'));
  tempDirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

runJobStoreConformance('FileJobStore', async ({ maxAttempts }) => {
  const storageDir = await mkdtemp(join(tmpdir(), 'avatar-conformance-'));
  return {
    store: new FileJobStore({ storageDir, maxAttempts }),
    openAnother: async () => new FileJobStore({ storageDir, maxAttempts }),
    cleanup: () => rm(storageDir, { recursive: true, force: true }),
  };
});

const LEASE = { leaseMs: 30_000 };

describe('FileJobStore files', () => {
  it('lays out job files, markers, locks and cancel requests as documented', async () => {
    const storageDir = await tempDir();
    const store = new FileJobStore({ storageDir });
    const job = await store.submit('voice_synthesis', { text: 'hi' });
    expect(JSON.parse(await readFile(join(storageDir, 'jobs', `${job.jobId}.json`), 'utf8'))).toEqual(job);
    const markers = await readdir(join(storageDir, 'queue', 'pending'));
    expect(markers).toHaveLength(1);
    expect(markers[0]).toMatch(new RegExp(`^\\d{15}-[0-9a-f]{8}--${job.jobId}$`));

    const before = Date.now();
    await store.claim('w1', LEASE);
    expect(await readdir(join(storageDir, 'queue', 'pending'))).toEqual([]);
    const lock = JSON.parse(await readFile(join(storageDir, 'queue', 'locks', `${job.jobId}.lock`), 'utf8'));
    expect(lock).toMatchObject({ workerId: 'w1', pid: process.pid });
    expect(typeof lock.hostname).toBe('string');
    expect(lock.leaseUntil).toBeGreaterThanOrEqual(before + 30_000);

    await store.cancel(job.jobId);
    expect(await readdir(join(storageDir, 'queue', 'cancel'))).toEqual([job.jobId]);
    await store.markCancelled(job.jobId, 'w1', null);
    expect(await readdir(join(storageDir, 'queue', 'cancel'))).toEqual([]);
    expect(await readdir(join(storageDir, 'queue', 'locks'))).toEqual([]);
  });

  it('leaves no temp file behind after writes, nor a spare after close', async () => {
    const storageDir = await tempDir();
    const store = new FileJobStore({ storageDir });
    const jobs = await Promise.all(Array.from({ length: 10 }, (_, i) => store.submit('voice_clone', { i })));
    for (const job of jobs.slice(0, 5)) {
      await store.claim('w', LEASE);
      await store.heartbeat(job.jobId, 'w', LEASE);
      await store.progress(job.jobId, 'w', 0.5, 'x');
      await store.complete(job.jobId, 'w', { i: 1 });
    }
    // spares of an open store are kept on purpose; close() removes them
    await store.close();
    const names = [
      ...(await readdir(join(storageDir, 'queue', 'holders'))).filter((n) => !n.startsWith('.')).map(() => 'holder'),
      ...(await readdir(join(storageDir, 'jobs'))),
      ...(await readdir(join(storageDir, 'queue', 'locks'))),
      ...(await readdir(join(storageDir, 'queue', 'pending'))),
    ];
    expect(names.filter((n) => n.startsWith('.') || n.includes('tmp'))).toEqual([]);
    expect((await readdir(join(storageDir, 'jobs'))).sort()).toEqual(jobs.map((j) => `${j.jobId}.json`).sort());
  });

  it('skips damaged job files with a warning and ignores temp files', async () => {
    const storageDir = await tempDir();
    const log = new MemoryLogger();
    const store = new FileJobStore({ storageDir, log });
    const good = await store.submit('voice_synthesis', {});
    const jobsDir = join(storageDir, 'jobs');
    await writeFile(join(jobsDir, 'job-20240101000000-0000000a.json'), '{"jobId": "job-2024');
    await writeFile(join(jobsDir, 'job-20240101000000-0000000b.json'), '[1, 2, 3]');
    await writeFile(join(jobsDir, 'job-20240101000000-0000000c.json'), JSON.stringify({ ...good, jobId: 'job-20240101000000-0000000c', status: 'sleeping' }));
    await writeFile(join(jobsDir, 'job-20240101000000-0000000d.json'), JSON.stringify({ ...good }));
    await writeFile(join(jobsDir, `.${good.jobId}.json.tmp-123-abcd`), '{"half');
    await writeFile(join(jobsDir, 'notes.txt'), 'hello');

    expect((await store.list()).map((j) => j.jobId)).toEqual([good.jobId]);
    const warnings = log.entries.filter((e) => e.level === 'warn');
    expect(warnings).toHaveLength(4);
    for (const w of warnings) expect(w.fields?.code).toBe('AVATAR_ERR_QUEUE_CORRUPT_FILE');
    expect(warnings.map((w) => String(w.fields?.path)).sort()[0]).toContain('job-20240101000000-0000000a.json');
    expect((await store.stats()).total).toBe(1);
    await expect(store.get('job-20240101000000-0000000a')).rejects.toMatchObject({ code: 'AVATAR_ERR_QUEUE_CORRUPT_FILE' });
    expect((await store.claim('w', LEASE))?.jobId).toBe(good.jobId);
  });

  it('a damaged pending job is skipped by claimers, not retried forever', async () => {
    const storageDir = await tempDir();
    const log = new MemoryLogger();
    const store = new FileJobStore({ storageDir, log });
    const bad = await store.submit('voice_synthesis', {});
    const good = await store.submit('voice_synthesis', {});
    await writeFile(join(storageDir, 'jobs', `${bad.jobId}.json`), 'garbage');
    expect((await store.claim('w', LEASE))?.jobId).toBe(good.jobId);
    expect(await store.claim('w', LEASE)).toBeUndefined();
    expect(log.entries.filter((e) => e.fields?.code === 'AVATAR_ERR_QUEUE_CORRUPT_FILE')).toHaveLength(1);
    expect(await readdir(join(storageDir, 'queue', 'locks'))).toEqual([`${good.jobId}.lock`]);
  });

  it('never turns a malformed id into a path', async () => {
    const storageDir = await tempDir();
    const outside = join(storageDir, 'secret.json');
    const store = new FileJobStore({ storageDir: join(storageDir, 'store') });
    const job = await store.submit('voice_synthesis', {});
    await writeFile(outside, JSON.stringify({ ...job, jobId: '../secret' }));
    expect(await store.get('../secret')).toBeUndefined();
    expect(await store.get('../../secret')).toBeUndefined();
    await expect(store.delete('../secret')).rejects.toMatchObject({ code: 'AVATAR_ERR_JOB_NOT_FOUND' });
    await expect(store.cancel('../secret')).rejects.toMatchObject({ code: 'AVATAR_ERR_JOB_NOT_FOUND' });
    expect(await store.heartbeat('../secret', 'w', LEASE)).toBe(false);
    expect(await store.isCancelRequested('../../queue/cancel')).toBe(false);
    expect(await readFile(outside, 'utf8')).toContain('../secret');
  });

  it('cleans stale markers and re-queues pending jobs that lost theirs', async () => {
    const storageDir = await tempDir();
    const first = new FileJobStore({ storageDir });
    const done = await first.submit('voice_synthesis', {});
    await first.claim('w', LEASE);
    await first.complete(done.jobId, 'w', {});
    const orphan = await first.submit('voice_clone', {});
    const pendingDir = join(storageDir, 'queue', 'pending');
    // a crash between the job file and its marker, and a marker left behind by a crash after a claim
    for (const name of await readdir(pendingDir)) await rm(join(pendingDir, name));
    await writeFile(join(pendingDir, `000000000000001-00000000--${done.jobId}`), '');

    const second = new FileJobStore({ storageDir });
    expect((await second.claim('w2', LEASE))?.jobId).toBe(orphan.jobId);
    expect(await readdir(pendingDir)).toEqual([]);
    expect((await second.get(done.jobId))?.status).toBe('completed');
  });

  it('takes back a running job whose lock vanished', async () => {
    const storageDir = await tempDir();
    const first = new FileJobStore({ storageDir });
    const job = await first.submit('voice_synthesis', {});
    await first.claim('w', LEASE);
    await rm(join(storageDir, 'queue', 'locks', `${job.jobId}.lock`));
    const second = new FileJobStore({ storageDir });
    expect(await second.recoverExpired()).toEqual([job.jobId]);
    expect(await second.get(job.jobId)).toMatchObject({ status: 'pending', attempts: 1 });
  });

  it('breaks a guard left by a crashed process once it is stale', async () => {
    const storageDir = await tempDir();
    const log = new MemoryLogger();
    const store = new FileJobStore({ storageDir, log, staleGuardMs: 150 });
    const job = await store.submit('voice_synthesis', {});
    await store.claim('w', LEASE);
    // a process on another host: its death cannot be seen, only the guard's age
    await writeFile(join(storageDir, 'queue', 'locks', `${job.jobId}.recover`), '4242 some-other-host');
    const started = Date.now();
    expect(await store.complete(job.jobId, 'w', {})).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(log.entries.some((e) => e.message.includes('queue guard left by a crashed process'))).toBe(true);
    expect((await readdir(join(storageDir, 'queue', 'locks'))).filter((n) => !n.startsWith('.'))).toEqual([]);
  });

  it('breaks at once a guard whose process on this host is gone', async () => {
    const storageDir = await tempDir();
    const store = new FileJobStore({ storageDir });
    const job = await store.submit('voice_synthesis', {});
    await store.claim('w', LEASE);
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(join(storageDir, 'queue', 'locks', `${job.jobId}.recover`), `${gone.stdout} ${hostname()}`);
    const started = Date.now();
    expect(await store.progress(job.jobId, 'w', 0.5, 'x')).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('waits for a live guard instead of breaking it', async () => {
    const storageDir = await tempDir();
    const store = new FileJobStore({ storageDir });
    const job = await store.submit('voice_synthesis', {});
    await store.claim('w', LEASE);
    const guard = join(storageDir, 'queue', 'locks', `${job.jobId}.recover`);
    await writeFile(guard, `${process.ppid} ${hostname()}`);
    const started = Date.now();
    setTimeout(() => void rm(guard), 150);
    expect(await store.progress(job.jobId, 'w', 0.5, 'x')).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('an unreadable lock counts as held until it is stale', async () => {
    const storageDir = await tempDir();
    const store = new FileJobStore({ storageDir, staleGuardMs: 300 });
    const job = await store.submit('voice_synthesis', {});
    await store.claim('w', LEASE);
    const lockPath = join(storageDir, 'queue', 'locks', `${job.jobId}.lock`);
    await writeFile(lockPath, '');
    expect(await store.recoverExpired()).toEqual([]);
    const old = new Date(Date.now() - 10_000);
    await utimes(lockPath, old, old);
    expect(await store.recoverExpired()).toEqual([job.jobId]);
  });

  it('reports a storage folder it cannot create', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'file'), 'x');
    const store = new FileJobStore({ storageDir: join(dir, 'file', 'store') });
    await expect(store.submit('voice_synthesis', {})).rejects.toMatchObject({ code: 'AVATAR_ERR_STORAGE_NOT_WRITABLE' });
  });

  it('submits 300 jobs and lists them quickly', async () => {
    const storageDir = await tempDir();
    await mkdir(storageDir, { recursive: true });
    const store = new FileJobStore({ storageDir });
    const t0 = performance.now();
    for (let i = 0; i < 300; i++) await store.submit('voice_synthesis', { i });
    const jobs = await store.list();
    expect(jobs).toHaveLength(300);
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect((await stat(join(storageDir, 'jobs'))).isDirectory()).toBe(true);
  });
});
