import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { AvatarError, MemoryLogger } from '@avatar/core';
import type { Job } from '@avatar/core';
import { onnxFacePlugin } from '@avatar/face';
import { flitePlugin, pitchMatchPlugin } from '@avatar/tts';
import { buildServer } from './server.js';
import type { ServerOptions } from './server.js';
import { DEFAULT_UPLOAD_LIMITS, parseUploadSetting, uploadLimitsFromEnv, uploadLimitsFromSettings } from './uploads.js';
import { uploadFoldersOf } from './job-uploads.js';
import { makeTestContext } from './context.test-helpers.js';

describe('upload limits from the environment', () => {
  it('reads each variable in its own unit and leaves unset or empty ones out', () => {
    expect(uploadLimitsFromEnv({})).toEqual({});
    expect(uploadLimitsFromEnv({ AVATAR_UPLOAD_MAX_PHOTO_MB: ' ', AVATAR_UPLOAD_MAX_AUDIO_SECONDS: '' })).toEqual({});
    expect(uploadLimitsFromEnv({
      AVATAR_UPLOAD_MAX_PHOTO_MB: '5', AVATAR_UPLOAD_MAX_AUDIO_MB: '0.5', AVATAR_UPLOAD_MAX_PIXELS: '12.5', AVATAR_UPLOAD_MAX_AUDIO_SECONDS: ' 300 ',
    })).toEqual({ photoBytes: 5 * 1024 * 1024, audioBytes: 512 * 1024, imagePixels: 12_500_000, audioSeconds: 300 });
    expect(uploadLimitsFromSettings({ maxPixels: 40, maxAudioSeconds: 120 })).toEqual({ imagePixels: DEFAULT_UPLOAD_LIMITS.imagePixels, audioSeconds: DEFAULT_UPLOAD_LIMITS.audioSeconds });
  });

  const bad: [string, string, RegExp][] = [
    ['AVATAR_UPLOAD_MAX_PHOTO_MB', 'abc', /AVATAR_UPLOAD_MAX_PHOTO_MB must be a number of MiB from 0\.01 to 1024, not "abc"/],
    ['AVATAR_UPLOAD_MAX_PHOTO_MB', '0', /from 0\.01 to 1024, not "0"/],
    ['AVATAR_UPLOAD_MAX_AUDIO_MB', '-1', /AVATAR_UPLOAD_MAX_AUDIO_MB must be a number of MiB/],
    ['AVATAR_UPLOAD_MAX_AUDIO_MB', '20MB', /not "20MB"/],
    ['AVATAR_UPLOAD_MAX_PIXELS', '40000000', /AVATAR_UPLOAD_MAX_PIXELS must be a number of megapixels from 0\.01 to 1000/],
    ['AVATAR_UPLOAD_MAX_PIXELS', 'Infinity', /megapixels/],
    ['AVATAR_UPLOAD_MAX_AUDIO_SECONDS', '1.5', /AVATAR_UPLOAD_MAX_AUDIO_SECONDS must be a whole number of seconds from 1 to 3600/],
    ['AVATAR_UPLOAD_MAX_AUDIO_SECONDS', '0x10', /whole number/],
  ];
  it.each(bad)('%s=%s is a usage error naming the variable', (name, value, message) => {
    let caught: unknown;
    try {
      uploadLimitsFromEnv({ [name]: value });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(AvatarError);
    expect((caught as AvatarError).code).toBe('AVATAR_ERR_USAGE');
    expect((caught as AvatarError).message).toMatch(message);
  });

  it('a flag is named in its own error', () => {
    expect(() => parseUploadSetting('maxPhotoMb', '2000', '--max-photo-mb')).toThrow(/--max-photo-mb must be a number of MiB from 0\.01 to 1024, not "2000"/);
    expect(parseUploadSetting('maxAudioSeconds', '60', '--max-audio-seconds')).toBe(60);
  });

  it('the server takes the variables, each one overridden by its option; a bad one stops the start', async () => {
    const ctx = await makeContext();
    const saved = { ...process.env };
    try {
      process.env.AVATAR_UPLOAD_MAX_PHOTO_MB = '1';
      process.env.AVATAR_UPLOAD_MAX_AUDIO_SECONDS = '30';
      const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false, uploads: { audioSeconds: 10 } } as ServerOptions);
      expect(app.avatarUploads.limits).toMatchObject({ photoBytes: 1024 * 1024, audioSeconds: 10, audioBytes: DEFAULT_UPLOAD_LIMITS.audioBytes });
      await app.close();
      process.env.AVATAR_UPLOAD_MAX_PIXELS = 'lots';
      await expect(buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false } as ServerOptions)).rejects.toThrow(/AVATAR_UPLOAD_MAX_PIXELS must be a number of megapixels/);
    } finally {
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
      await ctx.cleanup();
    }
  });
});

describe('uploadFoldersOf', () => {
  it('names only upload folders as the form route writes them', () => {
    expect(uploadFoldersOf({ avatarImagePath: 'uploads/up-0123456789ab/avatar.jpg', audioPath: 'uploads/up-0123456789ab/audio.mp3' })).toEqual(['up-0123456789ab']);
    expect(uploadFoldersOf({ imagePath: 'uploads/up-aaaaaaaaaaaa/avatar.png', referencePath: 'uploads/up-bbbbbbbbbbbb/audio.wav' }).sort()).toEqual(['up-aaaaaaaaaaaa', 'up-bbbbbbbbbbbb']);
    for (const path of [
      'uploads/portrait.jpg', 'avatars/av-12345678/photo.jpg', 'uploads/up-0123456789ab', 'uploads/up-0123456789ab/..',
      'uploads/up-0123456789ab/../../x.jpg', 'uploads/up-0123456789AB/avatar.jpg', 'uploads/up-0123456789abc/avatar.jpg',
      '/srv/storage/uploads/up-0123456789ab/avatar.jpg', './uploads/up-0123456789ab/avatar.jpg', 'uploads/up-0123456789ab/a/b.jpg',
    ]) {
      expect(uploadFoldersOf({ imagePath: path }), path).toEqual([]);
    }
    // text and other params never name files
    expect(uploadFoldersOf({ text: 'uploads/up-0123456789ab/avatar.jpg', outputPath: 'uploads/up-0123456789ab/out.mp4' })).toEqual([]);
  });
});

describe('files sent with a job go when the job ends', () => {
  let work: string;
  let sample: Buffer;
  let short: Buffer;
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let running: FastifyInstance;
  let log: MemoryLogger;
  // a second server on its own storage without a worker: its jobs stay pending until cancelled
  let idleCtx: Awaited<ReturnType<typeof makeContext>>;
  let idle: FastifyInstance;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'avatar-job-uploads-inputs-'));
    sample = speech(work, 'sample', 'Good morning. This recording measures my voice: its pitch, and how fast I speak. Thank you for listening to these few sentences.');
    short = speech(work, 'short', 'Hi.');
    log = new MemoryLogger();
    ctx = await makeContext();
    running = await buildServer({
      context: { ...ctx, log }, apiKeys: [], rateLimit: false, worker: { pollMs: 50 }, webhooks: { pollIntervalMs: 50 },
    } as ServerOptions);
    await running.ready();
    idleCtx = await makeContext();
    idle = await buildServer({ context: idleCtx, apiKeys: [], rateLimit: false, worker: false, webhooks: { pollIntervalMs: 50 } } as ServerOptions);
    await idle.ready();
  }, 30_000);
  afterAll(async () => {
    await running?.close();
    await idle?.close();
    await ctx?.cleanup();
    await idleCtx?.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  const submitForm = async (app: FastifyInstance, audio: Buffer): Promise<{ job: Job; folder: string }> => {
    const res = await app.inject({ method: 'POST', url: '/v1/jobs', ...(await form({ jobType: 'voice_clone' }, { audio })) });
    expect(res.statusCode, res.body).toBe(202);
    const job = res.json<Job>();
    const path = String(job.params.referencePath);
    expect(path).toMatch(/^uploads\/up-[0-9a-f]{12}\/audio\.wav$/);
    return { job, folder: path.slice(0, path.lastIndexOf('/')) };
  };
  const waitFor = async (app: FastifyInstance, id: string, statuses: string[]): Promise<Job> => {
    for (const end = Date.now() + 20_000; Date.now() < end; await sleep(50)) {
      const job = (await app.inject({ url: `/v1/jobs/${id}` })).json<Job>();
      if (statuses.includes(job.status)) return job;
    }
    throw new Error(`${id} did not reach ${statuses.join('/')}`);
  };
  const gone = async (path: string): Promise<void> => {
    for (const end = Date.now() + 5_000; Date.now() < end; await sleep(25)) if (!existsSync(path)) return;
    throw new Error(`${path} is still there`);
  };

  it('a completed job and a failed one: their folders are removed, and the removal is logged', async () => {
    const done = await submitForm(running, sample);
    const failed = await submitForm(running, short);
    expect(existsSync(join(ctx.storageDir, done.folder))).toBe(true);
    const finished = await waitFor(running, done.job.jobId, ['completed', 'failed']);
    expect(finished.status, JSON.stringify(finished.error)).toBe('completed');
    expect((await waitFor(running, failed.job.jobId, ['completed', 'failed'])).status).toBe('failed');
    await gone(join(ctx.storageDir, done.folder));
    await gone(join(ctx.storageDir, failed.folder));
    expect(await readdir(join(ctx.storageDir, 'uploads'))).toEqual([]);
    expect(log.entries.map((e) => e.message)).toEqual(expect.arrayContaining([
      `removed ${done.folder}, the files sent with ${done.job.jobId} (completed)`,
      `removed ${failed.folder}, the files sent with ${failed.job.jobId} (failed)`,
    ]));
  }, 30_000);

  it('a JSON job naming a file elsewhere in storage, or an upload folder that is a link, has nothing removed', async () => {
    await mkdir(join(ctx.storageDir, 'samples'), { recursive: true });
    await writeFile(join(ctx.storageDir, 'samples/me.wav'), sample);
    // a link named like an upload folder, pointing out of uploads/
    const outside = join(work, 'outside');
    await mkdir(outside, { recursive: true });
    await writeFile(join(outside, 'audio.wav'), sample);
    await mkdir(join(ctx.storageDir, 'uploads'), { recursive: true });
    await symlink(outside, join(ctx.storageDir, 'uploads/up-0000000000aa'));
    const ids: string[] = [];
    for (const referencePath of ['samples/me.wav', 'uploads/up-0000000000aa/audio.wav']) {
      const res = await running.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_clone', params: { referencePath } } });
      expect(res.statusCode, res.body).toBe(202);
      ids.push(res.json<Job>().jobId);
    }
    for (const id of ids) expect((await waitFor(running, id, ['completed', 'failed'])).status).toBe('completed');
    await sleep(300); // several watcher polls
    expect((await readFile(join(ctx.storageDir, 'samples/me.wav'))).equals(sample)).toBe(true);
    expect((await readFile(join(ctx.storageDir, 'uploads/up-0000000000aa/audio.wav'))).equals(sample)).toBe(true);
    expect(await readdir(outside)).toEqual(['audio.wav']);
    expect(log.entries.some((e) => e.level === 'warn' && e.message.includes('uploads/up-0000000000aa is a link'))).toBe(true);
  }, 30_000);

  it('a cancelled pending job: its folder is removed', async () => {
    const { job, folder } = await submitForm(idle, sample);
    await sleep(200);
    expect(existsSync(join(idleCtx.storageDir, folder))).toBe(true);
    const res = await idle.inject({ method: 'DELETE', url: `/v1/jobs/${job.jobId}` });
    expect(res.json<{ outcome: string }>().outcome).toBe('cancelled');
    await gone(join(idleCtx.storageDir, folder));
  });

  it('a job given back to the queue (its worker lost) keeps its files until it really ends', async () => {
    const { job, folder } = await submitForm(idle, sample);
    const claimed = await idleCtx.store.claim('lost-worker', { leaseMs: 20 });
    expect(claimed?.jobId).toBe(job.jobId);
    await sleep(50);
    expect(await idleCtx.store.recoverExpired()).toEqual([job.jobId]);
    expect((await idleCtx.store.get(job.jobId))?.status).toBe('pending');
    await sleep(300);
    expect(existsSync(join(idleCtx.storageDir, folder, 'audio.wav'))).toBe(true);
    await idle.inject({ method: 'DELETE', url: `/v1/jobs/${job.jobId}` });
    await gone(join(idleCtx.storageDir, folder));
  });

  it('a folder another unfinished job still names stays for it', async () => {
    const first = await submitForm(idle, sample);
    const res = await idle.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_clone', params: { referencePath: first.job.params.referencePath } } });
    expect(res.statusCode, res.body).toBe(202);
    const second = res.json<Job>();
    await idle.inject({ method: 'DELETE', url: `/v1/jobs/${second.jobId}` });
    await sleep(300);
    expect(existsSync(join(idleCtx.storageDir, first.folder, 'audio.wav'))).toBe(true);
    await idle.inject({ method: 'DELETE', url: `/v1/jobs/${first.job.jobId}` });
    await gone(join(idleCtx.storageDir, first.folder));
  });
});

const makeContext = () => makeTestContext('avatar-job-uploads-', {
  plugins: [[flitePlugin, '@avatar/tts'], [pitchMatchPlugin, '@avatar/tts'], [onnxFacePlugin, '@avatar/face']],
});

/** A multipart body as a browser writes it. */
async function form(fields: Record<string, string>, files: Record<string, Buffer>): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const fd = new FormData();
  for (const [name, value] of Object.entries(fields)) fd.append(name, value);
  for (const [name, data] of Object.entries(files)) fd.append(name, new Blob([data]), `${name}.wav`);
  const request = new Request('http://localhost/', { method: 'POST', body: fd });
  return { payload: Buffer.from(await request.arrayBuffer()), headers: { 'content-type': request.headers.get('content-type') ?? '' } };
}

function speech(dir: string, name: string, text: string): Buffer {
  const wav = join(dir, `${name}.wav`);
  execFileSync('flite', ['-t', text, '-o', wav]);
  return execFileSync('cat', [wav]);
}
