import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir, uptime } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { Job, JobParams } from '../jobs.js';
import { MemoryLogger } from '../log.js';
import { FileJobStore } from './file-store.js';

const SPARE_BYTES = 4096;
const LEASE = { leaseMs: 30_000 };

const tempDirs: string[] = [];
const stores: FileJobStore[] = [];
const children: ChildProcess[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'avatar-spares-'));
  tempDirs.push(dir);
  return dir;
}
function openStore(storageDir: string, log?: MemoryLogger, staleGuardMs?: number): FileJobStore {
  const store = new FileJobStore({ storageDir, ...(log && { log }), ...(staleGuardMs !== undefined && { staleGuardMs }) });
  stores.push(store);
  return store;
}
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
  for (const child of children.splice(0)) child.kill();
  for (const dir of tempDirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const spareNames = async (storageDir: string): Promise<string[]> =>
  (await readdir(join(storageDir, 'jobs'))).filter((name) => name.startsWith('.spare-'));
const jobFile = (storageDir: string, id: string): string => join(storageDir, 'jobs', `${id}.json`);

/** Submits until a submission lands in a spare (the pool fills in the background); returns that job. */
async function submitThroughSpare(store: FileJobStore, storageDir: string): Promise<Job> {
  for (let i = 0; i < 500; i++) {
    const job = await store.submit('voice_synthesis', { text: 'warm up', i });
    if ((await stat(jobFile(storageDir, job.jobId))).size === SPARE_BYTES) return job;
    await sleep(10);
  }
  throw new Error('no submission went through a spare');
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(gone.stdout);
}

/** The pid of a process that keeps running until the test ends. */
function livePid(): number {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(child);
  if (child.pid === undefined) throw new Error('could not start sleep');
  return child.pid;
}

/** A job as submit writes it, made in a scratch folder so that the storage folder under test holds only the spare. */
async function aJob(params: JobParams = { text: 'left in a spare' }): Promise<Job> {
  const scratch = openStore(await tempDir());
  return scratch.submit('voice_synthesis', params);
}

/** Writes a spare file by hand, as a process `pid` on `host` would have left it. */
async function writeSpare(storageDir: string, pid: number, content: string, host = hostname(), ageMs = 0): Promise<string> {
  await mkdir(join(storageDir, 'jobs'), { recursive: true });
  const path = join(storageDir, 'jobs', `.spare-${pid}-a1b2c3-${host}`);
  await writeFile(path, content.padEnd(SPARE_BYTES, ' '));
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs);
    await utimes(path, then, then);
  }
  return path;
}

const jobText = (job: Job): string => `${JSON.stringify(job, null, 2)}\n`;
const exists = (path: string): Promise<boolean> => stat(path).then(() => true, () => false);

describe('FileJobStore spare job files', () => {
  it('a single submission starts no pool of spares', async () => {
    const storageDir = await tempDir();
    const store = openStore(storageDir);
    const job = await store.submit('voice_synthesis', { text: 'once' });
    expect(await spareNames(storageDir)).toEqual([]);
    expect(await readFile(jobFile(storageDir, job.jobId), 'utf8')).toBe(jobText(job));
  });

  it('submissions go through spares once the pool is warm, and every reader reads them', async () => {
    const storageDir = await tempDir();
    const store = openStore(storageDir);
    await submitThroughSpare(store, storageDir);
    const job = await store.submit('full_pipeline', { text: 'Hello there', nested: { a: [1, 2, null], b: true } });

    const text = await readFile(jobFile(storageDir, job.jobId), 'utf8');
    expect(Buffer.byteLength(text)).toBe(SPARE_BYTES);
    expect(text.startsWith(jobText(job))).toBe(true);
    expect(text.slice(jobText(job).length).trim()).toBe('');
    expect(JSON.parse(text)).toEqual(job);
    expect(await spareNames(storageDir)).not.toEqual([]);

    expect(await store.get(job.jobId)).toEqual(job);
    const listed = await store.list();
    expect(listed.map((j) => j.jobId)).toContain(job.jobId);
    expect(listed).toHaveLength((await readdir(join(storageDir, 'jobs'))).filter((n) => n.endsWith('.json') && !n.startsWith('.')).length);

    const other = openStore(storageDir);
    expect(await other.get(job.jobId)).toEqual(job);
    expect((await other.list({ type: 'full_pipeline' })).map((j) => j.jobId)).toEqual([job.jobId]);
    let claimed: Job | undefined;
    for (let i = 0; i < listed.length && claimed?.jobId !== job.jobId; i++) claimed = await other.claim('w', LEASE);
    expect(claimed).toMatchObject({ jobId: job.jobId, status: 'running', attempts: 1, params: job.params });
    expect(await other.complete(job.jobId, 'w', { ok: true })).toBe(true);
    expect(await store.get(job.jobId)).toMatchObject({ status: 'completed', result: { ok: true } });
  });

  it('a job too big for a spare is written the ordinary way', async () => {
    const storageDir = await tempDir();
    const store = openStore(storageDir);
    await submitThroughSpare(store, storageDir);
    const big = await store.submit('voice_synthesis', { text: 'x'.repeat(SPARE_BYTES) });
    const text = await readFile(jobFile(storageDir, big.jobId), 'utf8');
    expect(text).toBe(jobText(big));
    expect(await store.get(big.jobId)).toEqual(big);
  });

  it('close() removes the instance\'s unused spares and leaves another instance\'s alone', async () => {
    const storageDir = await tempDir();
    const first = openStore(storageDir);
    const second = openStore(storageDir);
    await submitThroughSpare(first, storageDir);
    const firstSpares = await spareNames(storageDir);
    expect(firstSpares.length).toBeGreaterThan(0);
    await submitThroughSpare(second, storageDir);
    const secondSpares = (await spareNames(storageDir)).filter((n) => !firstSpares.includes(n));
    expect(secondSpares.length).toBeGreaterThan(0);

    await first.close();
    const left = await spareNames(storageDir);
    expect(left.filter((n) => firstSpares.includes(n))).toEqual([]);
    expect(left.sort()).toEqual(secondSpares.sort());
    await second.close();
    expect(await spareNames(storageDir)).toEqual([]);
  });

  it('recovers a submitted job left in a spare by a dead process, and queues it', async () => {
    const storageDir = await tempDir();
    const job = await aJob();
    const spare = await writeSpare(storageDir, deadPid(), jobText(job));
    const log = new MemoryLogger();
    const store = openStore(storageDir, log);
    expect(await store.get(job.jobId)).toEqual(job);
    expect(await exists(spare)).toBe(false);
    expect(log.entries.some((e) => e.level === 'info' && e.message.includes(`recovered submitted job ${job.jobId} from a spare file`))).toBe(true);
    expect(await store.claim('w', LEASE)).toMatchObject({ jobId: job.jobId, status: 'running' });
  });

  it('recovers a job from a spare written before this machine booted, even when its pid is alive now', async () => {
    const storageDir = await tempDir();
    const job = await aJob();
    const spare = await writeSpare(storageDir, livePid(), jobText(job), hostname(), (uptime() + 60) * 1000);
    const other = openStore(storageDir);
    expect(await other.recoverExpired()).toEqual([]);
    expect(await exists(spare)).toBe(false);
    expect(await other.claim('w', LEASE)).toMatchObject({ jobId: job.jobId });
  });

  it('leaves a live owner\'s spare holding a job alone however old (its flush may be slow); another host\'s once stale', async () => {
    const storageDir = await tempDir();
    const [mine, theirs, fresh] = [await aJob(), await aJob(), await aJob()];
    const local = await writeSpare(storageDir, livePid(), jobText(mine), hostname(), 60_000);
    const remote = await writeSpare(storageDir, 12345, jobText(theirs), 'host-b', 60_000);
    const recent = await writeSpare(storageDir, 12346, jobText(fresh), 'host-c', 1_000);
    const store = openStore(storageDir, undefined, 10_000);
    await store.recoverExpired();
    expect(await readFile(local, 'utf8')).toBe(jobText(mine).padEnd(SPARE_BYTES, ' '));
    expect(await store.get(mine.jobId)).toBeUndefined();
    expect(await exists(remote)).toBe(false);
    expect(await store.get(theirs.jobId)).toMatchObject({ jobId: theirs.jobId, status: 'pending' });
    expect(await exists(recent)).toBe(true);
    expect(await store.get(fresh.jobId)).toBeUndefined();
  });

  it('leaves a fresh spare of a live process alone, even one holding a whole job', async () => {
    const storageDir = await tempDir();
    const job = await aJob();
    const pid = livePid();
    const spare = await writeSpare(storageDir, pid, jobText(job));
    const store = openStore(storageDir);
    expect(await store.get(job.jobId)).toBeUndefined();
    await store.recoverExpired();
    expect(await store.claim('w', LEASE)).toBeUndefined();
    expect(await readFile(spare, 'utf8')).toBe(jobText(job).padEnd(SPARE_BYTES, ' '));
  });

  it('drops a spare whose job is already in place, keeping the job file', async () => {
    const storageDir = await tempDir();
    const store = openStore(storageDir);
    const job = await store.submit('voice_synthesis', { text: 'renamed, but the spare came back' });
    await store.claim('w', LEASE);
    const running = await store.get(job.jobId);
    const spare = await writeSpare(storageDir, deadPid(), jobText(job));
    const other = openStore(storageDir);
    expect(await other.get(job.jobId)).toEqual(running);
    expect(await exists(spare)).toBe(false);
  });

  it('removes a blank spare of a dead process', async () => {
    const storageDir = await tempDir();
    const spare = await writeSpare(storageDir, deadPid(), '');
    const store = openStore(storageDir);
    expect(await store.list()).toEqual([]);
    expect(await exists(spare)).toBe(false);
  });

  it('leaves blank spares of a live process, or of another host, alone however old', async () => {
    const storageDir = await tempDir();
    const live = await writeSpare(storageDir, livePid(), '', hostname(), 3_600_000);
    const remote = await writeSpare(storageDir, deadPid(), '', 'some-other-host', 3_600_000);
    const store = openStore(storageDir, undefined, 100);
    expect(await store.list()).toEqual([]);
    await store.recoverExpired();
    expect(await exists(live)).toBe(true);
    expect(await exists(remote)).toBe(true);
  });

  it('never recovers a torn spare as a job; removes it once its owner is dead or it is stale', async () => {
    const storageDir = await tempDir();
    const job = await aJob();
    const torn = jobText(job).slice(0, 120);
    const ofDead = await writeSpare(storageDir, deadPid(), torn);
    const pid = livePid();
    const fresh = await writeSpare(storageDir, pid, torn, 'host-a');
    const stale = await writeSpare(storageDir, pid, torn, 'host-b', 60_000);
    const log = new MemoryLogger();
    const store = openStore(storageDir, log, 10_000);
    expect(await store.list()).toEqual([]);
    await store.recoverExpired();
    expect(await store.get(job.jobId)).toBeUndefined();
    expect(await store.claim('w', LEASE)).toBeUndefined();
    expect(await exists(ofDead)).toBe(false);
    expect(await exists(stale)).toBe(false);
    expect(await exists(fresh)).toBe(true);
    expect(log.entries.filter((e) => e.message.includes('torn spare'))).toHaveLength(2);
  });
});
