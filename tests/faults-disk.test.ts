import { spawnSync } from 'node:child_process';
import { mkdir, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PORTRAIT, avatar, tempDir } from './helpers/cli.js';

// The disk underneath filling up: every write the project makes, at every stage, ends in
// AVATAR_ERR_STORAGE_FULL naming the folder, exit 1, nothing half-written and no lock left behind,
// and the queue works again as soon as there is room. The disk is a small tmpfs, which only root can
// mount; elsewhere the suite is skipped and says why.

const TEXT = 'Hello there. This sentence is spoken on a disk that is nearly full, to see what each stage does.';

/** Mounts a 3 MB tmpfs at a new folder; undefined (with the reason) where that is not allowed. */
async function smallDisk(): Promise<{ dir: string; reason?: string }> {
  const dir = await tempDir('avatar-full-disk-');
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dir], { encoding: 'utf8' });
  if (mounted.status !== 0) return { dir, reason: `cannot mount a tmpfs here (${(mounted.stderr || mounted.error?.message || '').trim() || `exit ${mounted.status}`}): run the suite as root to test a full disk` };
  return { dir };
}

/** Every file under `dir` (paths relative to it), folders left out. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(relative(dir, join(entry.parentPath, entry.name)));
  }
  return out.sort();
}

const disk = await smallDisk();

describe.skipIf(disk.reason !== undefined)(`a full disk${disk.reason ? ` (skipped: ${disk.reason})` : ''}`, () => {
  const { dir } = disk;
  const filler = join(dir, 'filler');
  /** Fills the disk until `leave` bytes are free (nothing else on it is touched). */
  const fill = async (leave: number): Promise<void> => {
    await rm(filler, { force: true });
    const fs = await statfs(dir);
    await writeFile(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - leave)));
  };
  const json = (stdout: string): { error?: { code: string; message: string } } => JSON.parse(stdout) as { error?: { code: string; message: string } };

  afterAll(() => {
    spawnSync('umount', [dir]);
  });

  beforeAll(async () => {
    await mkdir(join(dir, 'st'), { recursive: true });
  });

  // From no room at all, through room for the speech but not the prepared avatar, to room for all but
  // the video: each fill fails in a later stage, and together they reach every stage that writes.
  it('a run fails with its own code wherever the disk fills up, and leaves nothing', async () => {
    const failedIn = new Set<string>();
    for (const leave of [0, 8_000, 300_000, 600_000, 1_000_000]) {
      await rm(join(dir, 'st'), { recursive: true, force: true });
      await fill(leave);
      const r = await avatar(['--storage', join(dir, 'st'), '--json', 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', join(dir, 'out.mp4'), '--quality', 'medium']);
      expect(r.code, `${leave} bytes free: ${r.stderr}`).toBe(1);
      const result = JSON.parse(r.stdout) as { error: { code: string; message: string }; stagesCompleted: string[] };
      expect(result.error.code, result.error.message).toBe('AVATAR_ERR_STORAGE_FULL');
      expect(result.error.message).toContain(dir);
      expect(result.error.message).not.toMatch(/partial-|tmp-/); // the file the user knows, not a temporary name
      expect(await filesUnder(dir), `${leave} bytes free`).toEqual(['filler']);
      failedIn.add(['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video'][result.stagesCompleted.length] ?? 'later');
    }
    expect([...failedIn]).toEqual(expect.arrayContaining(['synthesize_speech', 'validate_avatar', 'encode_video']));
  });

  it('a live job whose disk fills while the video and its segments are written fails with its code and leaves neither', async () => {
    const failedIn = new Set<string>();
    for (const leave of [400_000, 700_000, 1_000_000]) {
      const storage = join(dir, 'live-queue');
      await rm(storage, { recursive: true, force: true });
      await rm(filler, { force: true });
      const queued = await avatar(['--storage', storage, '--json', 'jobs', 'submit', '--type', 'full_pipeline', '--text', TEXT, '--avatar', PORTRAIT, '--quality', 'medium', '--live']);
      expect(queued.code, queued.stderr).toBe(0);
      const { jobId } = JSON.parse(queued.stdout) as { jobId: string };
      await fill(leave);
      await avatar(['--storage', storage, 'worker', '--once']);
      const job = JSON.parse((await avatar(['--storage', storage, '--json', 'jobs', 'status', jobId])).stdout) as { status: string; error: { code: string; params: { stagesCompleted?: string } } | null };
      if (job.status === 'completed') continue;
      expect(job.status, `${leave} bytes free`).toBe('failed');
      expect(job.error?.code, `${leave} bytes free`).toBe('AVATAR_ERR_STORAGE_FULL');
      // neither the video nor its live files, nor a temporary file of either
      const left = (await filesUnder(storage)).filter((f) => f.startsWith('outputs/') || f.startsWith('live/') || f.startsWith('work/'));
      expect(left, `${leave} bytes free`).toEqual([]);
      const done = (job.error?.params.stagesCompleted ?? '').split(',');
      failedIn.add(['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video'][done.filter(Boolean).length] ?? 'later');
    }
    expect([...failedIn]).toContain('encode_video');
  });

  it('a submission and a worker on a full disk say so and exit 1; no empty lock is left; freed space, the job runs', async () => {
    const storage = join(dir, 'queue');
    await rm(storage, { recursive: true, force: true });
    await fill(2_000_000);
    const queued = await avatar(['--storage', storage, '--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello.']);
    expect(queued.code, queued.stderr).toBe(0);
    const before = await filesUnder(storage);

    await fill(0);
    const refused = await avatar(['--storage', storage, '--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello again.']);
    expect(refused.code, refused.stderr).toBe(1);
    expect(json(refused.stdout).error?.code).toBe('AVATAR_ERR_STORAGE_FULL');

    const worker = await avatar(['--storage', storage, 'worker', '--once']);
    expect(worker.code, worker.stderr).toBe(1);
    expect(worker.stderr).toContain('AVATAR_ERR_STORAGE_FULL');
    // nothing new: no lock, no torn job file, the queued job still pending
    const after = (await filesUnder(storage)).filter((f) => !f.startsWith('queue/holders/'));
    expect(after).toEqual(before.filter((f) => !f.startsWith('queue/holders/')));
    for (const f of after) if (f.startsWith('jobs/')) expect((await stat(join(storage, f))).size).toBeGreaterThan(0);

    await rm(filler, { force: true });
    const freed = await avatar(['--storage', storage, 'worker', '--once']);
    expect(freed.code, freed.stderr).toBe(0);
    expect(freed.stderr).toContain('1 completed');
  });
});

describe.skipIf(disk.reason !== undefined)(`a read-only disk${disk.reason ? ` (skipped: ${disk.reason})` : ''}`, () => {
  it('a run, a submission and a worker say so with AVATAR_ERR_STORAGE_READ_ONLY naming the folder, exit 1', async () => {
    const dir = await tempDir('avatar-read-only-');
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', dir], { encoding: 'utf8' });
    expect(mounted.status, mounted.stderr).toBe(0);
    try {
      const storage = join(dir, 'storage');
      for (const args of [
        ['pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', join(tmpdir(), `avatar-ro-${process.pid}.mp4`)],
        ['jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello.'],
        ['worker', '--once'],
      ]) {
        const r = await avatar(['--storage', storage, '--json', ...args]);
        expect(r.code, `${args[0]}: ${r.stderr}`).toBe(1);
        const error = (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
        expect(error.code, args[0]).toBe('AVATAR_ERR_STORAGE_READ_ONLY');
        expect(error.message).toContain(storage);
      }
    } finally {
      spawnSync('umount', [dir]);
    }
  });
});

/** A shared library that makes every fsync and fdatasync fail with EIO, as a failing disk does; undefined (with why) without a C compiler. */
async function failingFsync(): Promise<{ library?: string; reason?: string }> {
  if (process.platform !== 'linux') return { reason: 'LD_PRELOAD fault injection needs Linux' };
  const dir = await tempDir('avatar-fsync-eio-');
  await writeFile(join(dir, 'eio.c'), '#include <errno.h>\nint fsync(int fd) { (void)fd; errno = EIO; return -1; }\nint fdatasync(int fd) { (void)fd; errno = EIO; return -1; }\n');
  const built = spawnSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'eio.so'), join(dir, 'eio.c')], { encoding: 'utf8' });
  return built.status === 0 ? { library: join(dir, 'eio.so') } : { reason: `no C compiler to build the fault injector (${(built.stderr || built.error?.message || '').trim()})` };
}

const eio = await failingFsync();

describe.skipIf(eio.library === undefined)(`a disk whose fsync fails${eio.reason ? ` (skipped: ${eio.reason})` : ''}`, () => {
  it('a submission and a run fail with AVATAR_ERR_STORAGE_IO, keep nothing half-written, and the queue works once the disk does', async () => {
    const storage = join(await tempDir('avatar-eio-'), 'storage');
    const failing = { env: { LD_PRELOAD: eio.library! } };
    const submitted = await avatar(['--storage', storage, '--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello.'], failing);
    expect(submitted.code, submitted.stderr).toBe(1);
    expect((JSON.parse(submitted.stdout) as { error: { code: string } }).error.code).toBe('AVATAR_ERR_STORAGE_IO');
    const run = await avatar(['--storage', storage, '--json', 'pipeline', 'run', 'Hello.', '--avatar', PORTRAIT, '--output', join(storage, 'out.mp4'), '--quality', 'low'], failing);
    expect(run.code, run.stderr).toBe(1);
    expect((JSON.parse(run.stdout) as { error: { code: string; message: string } }).error.message).toMatch(/input\/output error \(fsync /);
    // no job record, temp file or output: only the queue's own empty marker
    expect(await filesUnder(storage)).toEqual(['queue/.marker']);
    const healthy = await avatar(['--storage', storage, 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello.']);
    expect(healthy.code, healthy.stderr).toBe(0);
  });
});

