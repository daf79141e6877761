import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { AvatarError, MemoryLogger } from '@avatar/core';
import { pngDeclaring } from '@avatar/core/testing';
import type { Job } from '@avatar/core';
import { onnxFacePlugin } from '@avatar/face';
import { espeakPlugin, flitePlugin, pitchMatchPlugin } from '@avatar/tts';
import { buildServer, startServer } from './server.js';
import { installUploads } from './uploads.js';
import type { Api } from './routes/context.js';
import type { RunningServer, ServerOptions, StartOptions } from './server.js';
import { makeTestContext } from './context.test-helpers.js';

const FIXTURES = new URL('../../../tests/fixtures/', import.meta.url);
const fixture = (name: string): Promise<Buffer> => readFile(new URL(name, FIXTURES));

interface Inject { statusCode: number; headers: Record<string, unknown>; body: string; rawPayload: Buffer; json<T = unknown>(): T }

const makeContext = (face: typeof onnxFacePlugin = onnxFacePlugin, storageDir?: string) => makeTestContext('avatar-assets-', {
  plugins: [[flitePlugin, '@avatar/tts'], [pitchMatchPlugin, '@avatar/tts'], [face, '@avatar/face']],
  ...(storageDir && { storageDir }),
});

type Part = { name: string; value: string } | { name: string; data: Uint8Array; filename: string; type?: string };

/** A multipart body as a browser writes it (undici's FormData serialised by a Request). */
async function form(parts: Part[]): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const fd = new FormData();
  for (const p of parts) {
    if ('value' in p) fd.append(p.name, p.value);
    else fd.append(p.name, new Blob([p.data], { type: p.type ?? 'application/octet-stream' }), p.filename);
  }
  const request = new Request('http://localhost/', { method: 'POST', body: fd });
  return { payload: Buffer.from(await request.arrayBuffer()), headers: { 'content-type': request.headers.get('content-type') ?? '' } };
}

/** A multipart body written by hand, for file names and shapes FormData would not produce. */
function rawForm(parts: { name: string; filename?: string; data: Uint8Array | string }[], boundary = 'xYzBoUnDaRy'): { payload: Buffer; headers: Record<string, string> } {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}\r\n` +
      `${p.filename !== undefined ? 'Content-Type: application/octet-stream\r\n' : ''}\r\n`));
    chunks.push(Buffer.from(p.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** Every file under `dir`, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

/** Upload folders hold nothing, hidden or not: no staging folder was left behind. */
async function expectNothingStored(storageDir: string, keep: { avatars?: number; uploads?: number; voices?: number } = {}): Promise<void> {
  const avatars = await readdir(join(storageDir, 'avatars')).catch(() => [] as string[]);
  expect(avatars, 'avatars/').toHaveLength(keep.avatars ?? 0);
  const uploads = await readdir(join(storageDir, 'uploads')).catch(() => [] as string[]);
  expect(uploads, 'uploads/').toHaveLength(keep.uploads ?? 0);
  const voices = (await readdir(join(storageDir, 'voices')).catch(() => [] as string[]));
  expect(voices, 'voices/').toHaveLength(keep.voices ?? 0);
  expect(await readdir(join(storageDir, 'work')).catch(() => [] as string[]), 'work/').toHaveLength(0);
}

const expectError = (res: Inject, status: number, code: string): { code: string; message: string; hint: string; reasons?: { rule: string; code: string }[] } => {
  expect(res.statusCode, res.body).toBe(status);
  expect(String(res.headers['content-type'])).toMatch(/^application\/json/);
  const body = res.json<{ error: { code: string; message: string; hint: string } }>();
  expect(body.error.code, res.body).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(body.error.hint.length).toBeGreaterThan(0);
  // no server path, no stack
  expect(res.body).not.toMatch(/\n\s+at |node_modules|\.ts:\d+|\/tmp\/|avatar-assets-|\.upload-/);
  return body.error;
};

/** A real JPEG with its frame header rewritten to claim another size. */
function jpegClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i < out.length - 9;) {
    const marker = out[i + 1] ?? 0;
    const length = out.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xc2) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    i += 2 + length;
  }
  throw new Error('no frame header');
}

function speech(dir: string, name: string, text: string, ext = 'wav'): Buffer {
  const wav = join(dir, `${name}.wav`);
  execFileSync('flite', ['-t', text, '-o', wav]);
  if (ext === 'wav') return execFileSync('cat', [wav]);
  const out = join(dir, `${name}.${ext}`);
  execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-i', wav, out]);
  return execFileSync('cat', [out]);
}

describe('uploads: avatars, voices and multipart jobs', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let app: FastifyInstance;
  let small: { ctx: Awaited<ReturnType<typeof makeContext>>; app: FastifyInstance };
  let work: string;
  let grace: Buffer;
  let sample: Buffer;

  const post = async (url: string, body: { payload: Buffer; headers: Record<string, string> }, on: FastifyInstance = app): Promise<Inject> =>
    (await on.inject({ method: 'POST', url, payload: body.payload, headers: body.headers })) as unknown as Inject;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'avatar-assets-inputs-'));
    grace = await fixture('grace_hopper.jpg');
    sample = speech(work, 'sample', 'Good morning. This recording measures my voice: its pitch, and how fast I speak. Thank you for listening to these few sentences.');
    ctx = await makeContext();
    app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false } as ServerOptions);
    const smallCtx = await makeContext();
    const smallApp = await buildServer({
      context: smallCtx, apiKeys: [], worker: false, rateLimit: false,
      uploads: { photoBytes: 64 * 1024, audioBytes: 64 * 1024, audioSeconds: 2, imagePixels: 1_000_000 },
    } as ServerOptions);
    small = { ctx: smallCtx, app: smallApp };
  });
  afterAll(async () => {
    await app?.close();
    await small?.app.close();
    await ctx?.cleanup();
    await small?.ctx.cleanup();
    await rm(work, { recursive: true, force: true });
  });

  it('keeps a usable portrait: 201, listed, served byte for byte, usable by a job, deleted once', async () => {
    const res = await post('/v1/avatars', await form([{ name: 'photo', data: grace, filename: 'grace.jpg', type: 'image/jpeg' }]));
    expect(res.statusCode, res.body).toBe(201);
    const { avatar } = res.json<{ avatar: { avatarId: string; imagePath: string; width: number; height: number; createdAt: string; face: { usable: boolean; score: number; box: { width: number }; warnings: string[] } } }>();
    expect(avatar.avatarId).toMatch(/^av-[0-9a-f]{8}$/);
    expect(res.headers.location).toBe(`/v1/avatars/${avatar.avatarId}`);
    expect(avatar.imagePath).toBe(`avatars/${avatar.avatarId}/photo.jpg`);
    expect([avatar.width, avatar.height]).toEqual([512, 600]);
    expect(avatar.face.usable).toBe(true);
    expect(avatar.face.score).toBeGreaterThan(0.5);
    expect(avatar.face.box.width).toBeGreaterThan(100);
    expect(await filesUnder(join(ctx.storageDir, 'avatars'))).toEqual([`${avatar.avatarId}/avatar.json`, `${avatar.avatarId}/photo.jpg`]);
    expect((await readFile(join(ctx.storageDir, avatar.imagePath))).equals(grace)).toBe(true);

    const list = (await app.inject({ url: '/v1/avatars' })).json<{ avatars: { avatarId: string }[] }>();
    expect(list.avatars.map((a) => a.avatarId)).toEqual([avatar.avatarId]);
    const one = await app.inject({ url: `/v1/avatars/${avatar.avatarId}` });
    expect(one.json()).toEqual(avatar);
    const photo = await app.inject({ url: `/v1/avatars/${avatar.avatarId}/photo` });
    expect(photo.statusCode).toBe(200);
    expect(photo.headers['content-type']).toBe('image/jpeg');
    expect(photo.headers['x-content-type-options']).toBe('nosniff');
    expect(photo.rawPayload.equals(grace)).toBe(true);

    // the imagePath is what a job takes
    const job = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'full_pipeline', params: { text: 'Hello.', avatarImagePath: avatar.imagePath } } });
    expect(job.statusCode, job.body).toBe(202);

    expect((await app.inject({ method: 'DELETE', url: `/v1/avatars/${avatar.avatarId}` })).statusCode).toBe(204);
    expectError(await app.inject({ method: 'DELETE', url: `/v1/avatars/${avatar.avatarId}` }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    expectError(await app.inject({ url: `/v1/avatars/${avatar.avatarId}` }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    expectError(await app.inject({ url: `/v1/avatars/${avatar.avatarId}/photo` }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    await expectNothingStored(ctx.storageDir);
  });

  it('never lets the client file name become a path', async () => {
    for (const filename of ['../../../../tmp/evil.jpg', '..\\..\\evil.jpg', '/etc/passwd', '.hidden', 'a\u0000b.jpg']) {
      const res = await post('/v1/avatars', rawForm([{ name: 'photo', filename, data: grace }]));
      expect(res.statusCode, `${filename}: ${res.body}`).toBe(201);
      const { avatar } = res.json<{ avatar: { avatarId: string; imagePath: string } }>();
      expect(avatar.imagePath).toBe(`avatars/${avatar.avatarId}/photo.jpg`);
      expect((await app.inject({ method: 'DELETE', url: `/v1/avatars/${avatar.avatarId}` })).statusCode).toBe(204);
    }
    await expect(stat('/tmp/evil.jpg')).rejects.toThrow();
    expect((await filesUnder(ctx.storageDir)).filter((f) => /evil|passwd|hidden/.test(f))).toEqual([]);
    await expectNothingStored(ctx.storageDir);
  });

  it('refuses a photo without a face with 422 and the face check reasons, keeping nothing', async () => {
    const res = await post('/v1/avatars', await form([{ name: 'photo', data: await fixture('faces/coffee.jpg'), filename: 'coffee.jpg' }]));
    const error = expectError(res, 422, 'AVATAR_ERR_FACE_NONE');
    expect(error.message).toContain('coffee.jpg');
    expect(error.reasons).toEqual([expect.objectContaining({ rule: 'face-found', code: 'AVATAR_ERR_FACE_NONE' })]);
    await expectNothingStored(ctx.storageDir);
  });

  it('refuses what is not a photo, whatever its name and Content-Type say', async () => {
    const text = Buffer.from('this is a plain text file, not a picture\n'.repeat(20));
    const res = await post('/v1/avatars', await form([{ name: 'photo', data: text, filename: 'photo.png', type: 'image/png' }]));
    const error = expectError(res, 415, 'AVATAR_ERR_INPUT_NOT_IMAGE');
    expect(error.message).toContain('photo.png');
    // GIF is an image, but not one the pipeline takes
    const gif = Buffer.from('R0lGODlhAQABAIAAAAAAAP///ywAAAAAAQABAAACAUwAOw==', 'base64');
    expectError(await post('/v1/avatars', await form([{ name: 'photo', data: gif, filename: 'x.jpg', type: 'image/jpeg' }])), 415, 'AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED');
    // a JPEG that ends after its first bytes has no frame header to size it by
    expectError(await post('/v1/avatars', await form([{ name: 'photo', data: grace.subarray(0, 300), filename: 'cut.jpg' }])), 422, 'AVATAR_ERR_INPUT_IMAGE_DAMAGED');
    // a JPEG whose header is fine but whose pixels are garbage is refused by the decoder, not kept
    const garbage = Buffer.concat([grace.subarray(0, 700), Buffer.alloc(4000, 0x55)]);
    const res2 = await post('/v1/avatars', await form([{ name: 'photo', data: garbage, filename: 'broken.jpg' }]));
    expect([422]).toContain(res2.statusCode);
    await expectNothingStored(ctx.storageDir);
  });

  it('refuses decompression bombs from their header, before decoding a pixel', async () => {
    const png = pngDeclaring(30000, 30000, 4_000_000);
    expect(png.length).toBeLessThan(64 * 1024);
    const started = performance.now();
    const res = await post('/v1/avatars', await form([{ name: 'photo', data: png, filename: 'bomb.png' }]));
    const error = expectError(res, 413, 'AVATAR_ERR_HTTP_UPLOAD_PIXELS');
    expect(error.message).toContain('30000x30000');
    const jpeg = jpegClaiming(grace, 30000, 30000);
    expectError(await post('/v1/avatars', await form([{ name: 'photo', data: jpeg, filename: 'bomb.jpg' }])), 413, 'AVATAR_ERR_HTTP_UPLOAD_PIXELS');
    // 900 megapixels were never decoded: that would take seconds and gigabytes
    expect(performance.now() - started).toBeLessThan(3000);
    // the limit is the server's option: 1 MP here refuses the 0.3 MP portrait's 3x3 blow-up too
    expectError(await post('/v1/avatars', await form([{ name: 'photo', data: jpegClaiming(grace, 2000, 2000), filename: 'big.jpg' }]), small.app), 413, 'AVATAR_ERR_HTTP_UPLOAD_PIXELS');
    await expectNothingStored(ctx.storageDir);
    await expectNothingStored(small.ctx.storageDir);
  });

  it('refuses too large files, too many files, missing and unknown fields, and bodies that are not forms', async () => {
    const big = Buffer.concat([grace, Buffer.alloc(100 * 1024)]);
    let error = expectError(await post('/v1/avatars', await form([{ name: 'photo', data: big, filename: 'big.jpg' }]), small.app), 413, 'AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE');
    expect(error.message).toContain('64 KiB');
    expectError(await post('/v1/avatars', await form([
      { name: 'photo', data: grace, filename: 'a.jpg' }, { name: 'photo', data: grace, filename: 'b.jpg' },
    ])), 413, 'AVATAR_ERR_HTTP_UPLOAD_TOO_MANY');
    expectError(await post('/v1/avatars', await form([{ name: 'image', data: grace, filename: 'a.jpg' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    expectError(await post('/v1/avatars', await form([{ name: 'photo', value: 'not a file' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    error = expectError(await post('/v1/avatars', rawForm([])), 400, 'AVATAR_ERR_HTTP_UPLOAD_MISSING');
    expect(error.message).toContain('"photo"');
    // a browser form with no file chosen sends an empty nameless part
    expectError(await post('/v1/avatars', rawForm([{ name: 'photo', filename: '', data: '' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_MISSING');
    expectError(await post('/v1/avatars', rawForm([{ name: 'photo', filename: 'empty.jpg', data: '' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_MISSING');
    // not multipart at all
    expectError(await app.inject({ method: 'POST', url: '/v1/avatars', payload: { photo: 'x' } }) as unknown as Inject, 415, 'AVATAR_ERR_HTTP_NOT_MULTIPART');
    expectError(await app.inject({ method: 'POST', url: '/v1/avatars', payload: grace, headers: { 'content-type': 'image/jpeg' } }) as unknown as Inject, 415, 'AVATAR_ERR_HTTP_NOT_MULTIPART');
    expectError(await app.inject({ method: 'POST', url: '/v1/avatars' }) as unknown as Inject, 415, 'AVATAR_ERR_HTTP_NOT_MULTIPART');
    // malformed: no boundary, or cut off in the middle of the file
    expectError(await app.inject({ method: 'POST', url: '/v1/avatars', payload: 'abc', headers: { 'content-type': 'multipart/form-data' } }) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_UPLOAD_MALFORMED');
    const whole = rawForm([{ name: 'photo', filename: 'a.jpg', data: grace }]);
    expectError(await post('/v1/avatars', { payload: whole.payload.subarray(0, 20_000), headers: whole.headers }), 400, 'AVATAR_ERR_HTTP_UPLOAD_MALFORMED');
    await expectNothingStored(ctx.storageDir);
    await expectNothingStored(small.ctx.storageDir);
  });

  it('checks ids before looking anything up: malformed 400, unknown 404', async () => {
    // a bare ".." is resolved by the URL itself and leaves the route
    expectError(await app.inject({ url: '/v1/avatars/..' }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_NOT_FOUND');
    for (const id of ['..%2F..%2Fetc%2Fpasswd', 'av-0000000g', 'AV-00000000', 'av-00000000%00', '.upload-0000000000000000']) {
      expectError(await app.inject({ url: `/v1/avatars/${id}` }) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');
      expectError(await app.inject({ method: 'DELETE', url: `/v1/avatars/${id}` }) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');
      expectError(await app.inject({ url: `/v1/voices/${id}` }) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');
    }
    expectError(await app.inject({ url: '/v1/avatars/av-00000000' }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    expectError(await app.inject({ url: '/v1/avatars/av-00000000/photo' }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    expectError(await app.inject({ method: 'DELETE', url: '/v1/avatars/av-00000000' }) as unknown as Inject, 404, 'AVATAR_ERR_HTTP_AVATAR_NOT_FOUND');
    expectError(await app.inject({ url: '/v1/voices/vp-00000000' }) as unknown as Inject, 404, 'AVATAR_ERR_VOICE_NOT_FOUND');
    expectError(await app.inject({ method: 'DELETE', url: '/v1/voices/vp-00000000' }) as unknown as Inject, 404, 'AVATAR_ERR_VOICE_NOT_FOUND');
  });

  it('measures a voice from real speech and keeps the profile, not the recording', async () => {
    const res = await post('/v1/voices', await form([{ name: 'sample', data: sample, filename: 'me.wav', type: 'audio/wav' }, { name: 'name', value: 'Morning voice' }]));
    expect(res.statusCode, res.body).toBe(201);
    const { voice } = res.json<{ voice: { voiceProfileId: string; name: string; engine: string; origin: string; measured: { medianPitchHz: number; durationSeconds: number } } }>();
    expect(voice.voiceProfileId).toMatch(/^vp-[0-9a-f]{8}$/);
    expect(res.headers.location).toBe(`/v1/voices/${voice.voiceProfileId}`);
    expect(voice.name).toBe('Morning voice');
    expect(voice.origin).toBe('matched');
    expect(voice.measured.medianPitchHz).toBeGreaterThan(60);
    expect(voice.measured.durationSeconds).toBeGreaterThan(3);
    expect(res.body).not.toMatch(/\/tmp\/|me\.wav/);
    expect(await readdir(join(ctx.storageDir, 'voices'))).toEqual([`${voice.voiceProfileId}.json`]);

    const list = (await app.inject({ url: '/v1/voices' })).json<{ voices: { voiceProfileId: string }[] }>();
    expect(list.voices.map((v) => v.voiceProfileId)).toEqual([voice.voiceProfileId]);
    expect((await app.inject({ url: `/v1/voices/${voice.voiceProfileId}` })).json()).toEqual(voice);
    // the profile speaks in a job
    const job = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Hi.', voiceProfileId: voice.voiceProfileId } } });
    expect(job.statusCode, job.body).toBe(202);
    expect((await app.inject({ method: 'DELETE', url: `/v1/voices/${voice.voiceProfileId}` })).statusCode).toBe(204);
    expectError(await app.inject({ method: 'DELETE', url: `/v1/voices/${voice.voiceProfileId}` }) as unknown as Inject, 404, 'AVATAR_ERR_VOICE_NOT_FOUND');
    await expectNothingStored(ctx.storageDir);
  });

  it('refuses audio that is not audio, undecodable, too long or too large, keeping nothing', async () => {
    const text = Buffer.from('RIFF? no: just text pretending to be a recording\n'.repeat(10));
    let error = expectError(await post('/v1/voices', await form([{ name: 'sample', data: text, filename: 'voice.wav', type: 'audio/wav' }])), 415, 'AVATAR_ERR_INPUT_NOT_AUDIO');
    expect(error.message).toContain('voice.wav');
    // a photo named .mp3 is sniffed as what it is
    expectError(await post('/v1/voices', await form([{ name: 'sample', data: grace, filename: 'song.mp3', type: 'audio/mpeg' }])), 415, 'AVATAR_ERR_INPUT_NOT_AUDIO');
    // a WAV header over bytes that are no audio format
    const fake = Buffer.concat([sample.subarray(0, 12), Buffer.from('junkjunkjunkjunk'), Buffer.alloc(2000, 7)]);
    error = expectError(await post('/v1/voices', await form([{ name: 'sample', data: fake, filename: 'fake.wav' }])), 422, 'AVATAR_ERR_HTTP_UPLOAD_UNDECODABLE');
    expect(error.message).toContain('fake.wav');
    // too short to measure: the voice stage says so
    const short = speech(work, 'short', 'Hi.');
    expectError(await post('/v1/voices', await form([{ name: 'sample', data: short, filename: 'short.wav' }])), 400, 'AVATAR_ERR_INPUT_AUDIO_TOO_SHORT');
    // 2 s and 64 KiB on the small server: OGG keeps a longer recording under the byte limit
    const ogg = speech(work, 'long', 'This sentence goes on for quite a bit longer than two seconds, for the limit.', 'ogg');
    expect(ogg.length).toBeLessThan(64 * 1024);
    expectError(await post('/v1/voices', await form([{ name: 'sample', data: ogg, filename: 'long.ogg' }]), small.app), 413, 'AVATAR_ERR_HTTP_UPLOAD_AUDIO_TOO_LONG');
    expectError(await post('/v1/voices', await form([{ name: 'sample', data: sample, filename: 'big.wav' }]), small.app), 413, 'AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE');
    expectError(await post('/v1/voices', await form([{ name: 'sample', data: sample, filename: 'a.wav' }, { name: 'name', value: 'x'.repeat(101) }])), 400, 'AVATAR_ERR_HTTP_VALIDATION');
    expectError(await post('/v1/voices', await form([{ name: 'name', value: 'no sample' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_MISSING');
    await expectNothingStored(ctx.storageDir);
    await expectNothingStored(small.ctx.storageDir);
  });

  it('takes a job as a multipart form: files stored under server names, the same checks as JSON', async () => {
    const mp3 = speech(work, 'line', 'This is what the portrait will say.', 'mp3');
    const res = await post('/v1/jobs', await form([
      { name: 'jobType', value: 'video_lipsync' },
      { name: 'quality', value: 'low' },
      { name: 'transcript', value: 'This is what the portrait will say.' },
      { name: 'avatar', data: grace, filename: '../../me.jpg', type: 'image/jpeg' },
      { name: 'audio', data: mp3, filename: 'line.mp3', type: 'audio/mpeg' },
    ]));
    expect(res.statusCode, res.body).toBe(202);
    const job = res.json<Job>();
    expect(res.headers.location).toBe(`/v1/jobs/${job.jobId}`);
    expect(job.jobType).toBe('video_lipsync');
    // its captions' transcript, as a text field
    expect(job.params.transcript).toBe('This is what the portrait will say.');
    expect(job.params.config).toEqual({ videoQuality: 'low' });
    const avatarPath = String(job.params.avatarImagePath);
    const audioPath = String(job.params.audioPath);
    expect(avatarPath).toMatch(/^uploads\/up-[0-9a-f]{12}\/avatar\.jpg$/);
    expect(audioPath).toBe(avatarPath.replace('avatar.jpg', 'audio.mp3'));
    expect((await readFile(join(ctx.storageDir, avatarPath))).equals(grace)).toBe(true);
    expect((await readFile(join(ctx.storageDir, audioPath))).equals(mp3)).toBe(true);
    expect(await filesUnder(join(ctx.storageDir, 'uploads'))).toEqual([audioPath.slice('uploads/'.length), avatarPath.slice('uploads/'.length)].sort());
    expect((await ctx.store.get(job.jobId))?.params).toEqual(job.params);

    // text fields alone, as a form, and the JSON path beside it
    const voice = await post('/v1/jobs', await form([{ name: 'jobType', value: 'voice_synthesis' }, { name: 'text', value: 'Hello.' }, { name: 'maxSeconds', value: '10' }]));
    expect(voice.statusCode, voice.body).toBe(202);
    expect(voice.json<Job>().params).toEqual({ text: 'Hello.', maxSeconds: 10 });
    const json = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Hello.' } } });
    expect(json.statusCode, json.body).toBe(202);
    await rm(join(ctx.storageDir, 'uploads'), { recursive: true, force: true });
  });

  it('recognises every accepted format from its bytes and names the stored file after it', async () => {
    const wav = join(work, 'formats.wav');
    execFileSync('flite', ['-t', 'One format after another.', '-o', wav]);
    const audio: [string, string[]][] = [['wav', []], ['mp3', []], ['ogg', []], ['flac', []], ['m4a', ['-c:a', 'aac']]];
    for (const [ext, args] of audio) {
      const out = join(work, `formats-out.${ext}`);
      if (ext !== 'wav') execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-i', wav, ...args, out]);
      // the file name says nothing true: the bytes decide
      const res = await post('/v1/jobs', await form([{ name: 'jobType', value: 'voice_clone' }, { name: 'audio', data: await readFile(ext === 'wav' ? wav : out), filename: 'recording.bin', type: 'text/plain' }]));
      expect(res.statusCode, `${ext}: ${res.body}`).toBe(202);
      expect(String(res.json<Job>().params.referencePath), ext).toMatch(new RegExp(`/audio\\.${ext}$`));
    }
    const webp = join(work, 'grace.webp');
    execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-i', fileURLToPath(new URL('grace_hopper.jpg', FIXTURES)), webp]);
    const images: [string, Buffer][] = [['jpg', grace], ['png', await fixture('faces/cameraman.png')], ['webp', await readFile(webp)]];
    for (const [ext, data] of images) {
      const res = await post('/v1/jobs', await form([{ name: 'jobType', value: 'avatar_generation' }, { name: 'avatar', data, filename: 'picture.gif', type: 'image/gif' }]));
      expect(res.statusCode, `${ext}: ${res.body}`).toBe(202);
      expect(String(res.json<Job>().params.imagePath), ext).toMatch(new RegExp(`/avatar\\.${ext}$`));
    }
    await rm(join(ctx.storageDir, 'uploads'), { recursive: true, force: true });
  });

  it('refuses bad multipart jobs and keeps none of their files', async () => {
    const photo = { name: 'avatar', data: grace, filename: 'me.jpg' } as const;
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'make_coffee' }, photo])), 400, 'AVATAR_ERR_HTTP_VALIDATION');
    expectError(await post('/v1/jobs', await form([photo])), 400, 'AVATAR_ERR_HTTP_VALIDATION');
    // the audio is no input of full_pipeline
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, photo, { name: 'audio', data: sample, filename: 'a.wav' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    // video_lipsync needs the audio too
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'video_lipsync' }, photo])), 400, 'AVATAR_ERR_JOB_PARAMS_INVALID');
    // a path field that leaves the storage folder
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, { name: 'avatarImagePath', value: '../../etc/passwd' }])), 400, 'AVATAR_ERR_HTTP_VALIDATION');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, { name: 'avatarImagePath', value: 'a.jpg' }, photo])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, { name: 'config', value: '{not json' }, photo])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, { name: 'quality', value: 'ultra' }, photo])), 400, 'AVATAR_ERR_HTTP_VALIDATION');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'full_pipeline' }, { name: 'text', value: 'Hi' }, { name: 'avatar', data: pngDeclaring(30000, 30000, 4_000_000), filename: 'bomb.png' }])), 413, 'AVATAR_ERR_HTTP_UPLOAD_PIXELS');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'voice_clone' }, { name: 'audio', data: grace, filename: 'a.wav' }])), 415, 'AVATAR_ERR_INPUT_NOT_AUDIO');
    expectError(await post('/v1/jobs', await form([{ name: 'jobType', value: 'voice_synthesis' }, { name: 'unknown', value: 'x' }])), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
    // no body at all, or one that is neither JSON nor a form
    expectError(await app.inject({ method: 'POST', url: '/v1/jobs' }) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');
    expectError(await app.inject({ method: 'POST', url: '/v1/jobs', payload: 'jobType=voice_synthesis', headers: { 'content-type': 'text/plain' } }) as unknown as Inject, 415, 'AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA');
    await expectNothingStored(ctx.storageDir);
  });

  it('documents the multipart bodies in the OpenAPI document', async () => {
    const doc = (await app.inject({ url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, { format?: string }> } }> } }>> }>();
    expect(doc.paths['/v1/avatars']?.post?.requestBody?.content['multipart/form-data']?.schema.properties.photo?.format).toBe('binary');
    expect(doc.paths['/v1/voices']?.post?.requestBody?.content['multipart/form-data']?.schema.properties.sample?.format).toBe('binary');
    const jobs = doc.paths['/v1/jobs']?.post?.requestBody?.content;
    expect(Object.keys(jobs ?? {}).sort()).toEqual(['application/json', 'multipart/form-data']);
    expect(jobs?.['multipart/form-data']?.schema.properties.avatar?.format).toBe('binary');
    for (const path of ['/v1/avatars', '/v1/avatars/{id}', '/v1/avatars/{id}/photo', '/v1/voices', '/v1/voices/{id}']) expect(doc.paths[path], path).toBeDefined();
  });
});

describe('the speech engines\' own voices', () => {
  it('GET /v1/engine-voices lists each installed engine\'s voices with their languages; by engine and language; a profile from one speaks its language', async () => {
    const ctx = await makeTestContext('avatar-engine-voices-', { plugins: [[flitePlugin, '@avatar/tts'], [espeakPlugin, '@avatar/tts']] });
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false } as ServerOptions);
    try {
      type Voices = { voices: { engine: string; voice: string; language: string; gender?: string }[] };
      const all = (await app.inject({ url: '/v1/engine-voices' })).json<Voices>().voices;
      expect(all).toContainEqual({ engine: 'flite', voice: 'rms', language: 'en-US', gender: 'male', description: expect.any(String) });
      expect(all.filter((v) => v.engine === 'espeak-ng').length).toBeGreaterThan(100);
      const portuguese = (await app.inject({ url: '/v1/engine-voices?language=pt' })).json<Voices>().voices;
      expect(portuguese.map((v) => `${v.engine}:${v.voice}`).sort()).toEqual(['espeak-ng:pt', 'espeak-ng:pt-br']);
      const flite = (await app.inject({ url: '/v1/engine-voices?engine=flite' })).json<Voices>().voices;
      expect(new Set(flite.map((v) => v.engine))).toEqual(new Set(['flite']));
      expectError((await app.inject({ url: '/v1/engine-voices?engine=nonesuch' })) as unknown as Inject, 400, 'AVATAR_ERR_PLUGIN_NOT_FOUND');
      expectError((await app.inject({ url: '/v1/engine-voices?engine=../x' })) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');

      // a profile from one of them speaks its language, and a job can name it
      const made = await app.inject({ method: 'POST', url: '/v1/voices/from-engine', payload: { engine: 'espeak-ng', voice: 'pt-br', rate: 1.1, name: 'Brasil' } });
      expect(made.statusCode, made.body).toBe(201);
      const profile = made.json<{ voice: { voiceProfileId: string; engine: string; voice: string; language: string; rate: number; name: string } }>().voice;
      expect(profile).toMatchObject({ engine: 'espeak-ng', voice: 'pt-br', language: 'pt-BR', rate: 1.1, name: 'Brasil' });
      expect(made.headers.location).toBe(`/v1/voices/${profile.voiceProfileId}`);
      const job = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Olá! Tudo bem?', voiceProfileId: profile.voiceProfileId } } });
      expect(job.statusCode, job.body).toBe(202);
      const notListed = expectError((await app.inject({ method: 'POST', url: '/v1/voices/from-engine', payload: { engine: 'flite', voice: 'hal9000' } })) as unknown as Inject, 400, 'AVATAR_ERR_CONFIG_INVALID');
      expect(notListed.message).toContain('hal9000');
      expect(notListed.hint).toContain('rms');
      expectError((await app.inject({ method: 'POST', url: '/v1/voices/from-engine', payload: { engine: 'nonesuch', voice: 'x' } })) as unknown as Inject, 400, 'AVATAR_ERR_PLUGIN_NOT_FOUND');
      expectError((await app.inject({ method: 'POST', url: '/v1/voices/from-engine', payload: { engine: 'flite', voice: 'rms', rate: 9 } })) as unknown as Inject, 400, 'AVATAR_ERR_HTTP_VALIDATION');
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });
});

describe('uploads over the wire', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let server: RunningServer;
  beforeAll(async () => {
    ctx = await makeContext();
    server = await startServer({ context: ctx, port: 0, apiKeys: [], worker: false, rateLimit: false, uploads: { photoBytes: 1024 * 1024 } } as StartOptions);
  });
  afterAll(async () => {
    await server?.close();
    await ctx?.cleanup();
  });

  /** Streams a form with one large "photo" to the server; `abortAfter` bytes cut the connection there. */
  const send = (size: number, abortAfter?: number): Promise<{ status: number; body: string } | 'aborted'> => new Promise((resolve, reject) => {
    const req = httpRequest(`${server.url}/v1/avatars`, { method: 'POST', headers: { 'content-type': 'multipart/form-data; boundary=bb' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', (error) => (abortAfter !== undefined ? setTimeout(() => resolve('aborted'), 300) : reject(error)));
    req.write('--bb\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n');
    let sent = 0;
    const chunk = Buffer.alloc(64 * 1024, 0x11);
    const pump = (): void => {
      while (sent < size) {
        if (abortAfter !== undefined && sent >= abortAfter) {
          req.destroy();
          return;
        }
        sent += chunk.length;
        if (!req.write(sent === chunk.length ? Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), chunk.subarray(3)]) : chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end('\r\n--bb--\r\n');
    };
    pump();
  });

  it('answers an upload over the limit at once and keeps none of it', async () => {
    const started = performance.now();
    const res = await send(30 * 1024 * 1024);
    expect(res).not.toBe('aborted');
    if (res === 'aborted') return;
    expect(res.status, res.body).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe('AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE');
    expect(performance.now() - started).toBeLessThan(5000);
    await expectNothingStored(ctx.storageDir);
  });

  it('removes what a client sent before it went away', async () => {
    expect(await send(10 * 1024 * 1024, 256 * 1024)).toBe('aborted');
    await expectNothingStored(ctx.storageDir);
    // and still answers
    expect((await server.app.inject({ url: '/v1/avatars' })).json()).toEqual({ avatars: [] });
  });
});

describe('uploads: client gone, load, left-overs', () => {
  let work: string;
  let grace: Buffer;
  let sample: Buffer;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'avatar-assets-more-'));
    grace = await fixture('grace_hopper.jpg');
    sample = speech(work, 'short', 'Hello there, this is a short recording.');
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  it('a client gone during the face check: nothing kept in avatars/, and no 500', async () => {
    // the real face plugin, held at the start of its run until the client has gone
    let faceStarted = (): void => undefined;
    const started = new Promise<void>((ok) => (faceStarted = ok));
    let letGo = (): void => undefined;
    const gate = new Promise<void>((ok) => (letGo = ok));
    const held: typeof onnxFacePlugin = {
      ...onnxFacePlugin,
      load: async (loadCtx) => {
        const loaded = await onnxFacePlugin.load(loadCtx);
        return {
          run: async (input, runCtx) => {
            faceStarted();
            await gate;
            return loaded.run(input, runCtx);
          },
          unload: () => loaded.unload(),
        };
      },
    };
    const log = new MemoryLogger();
    const ctx = await makeContext(held);
    const statuses: number[] = [];
    const app = await buildServer({ context: { ...ctx, log }, apiKeys: [], worker: false, rateLimit: false } as ServerOptions);
    // every answer the route gives, whether or not the client is still there to read it
    app.addHook('onSend', async (request, reply) => {
      if (request.url === '/v1/avatars') statuses.push(reply.statusCode);
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const server = { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, close: () => app.close() };
    try {
      const body = await form([{ name: 'photo', data: grace, filename: 'grace.jpg', type: 'image/jpeg' }]);
      const req = httpRequest(`${server.url}/v1/avatars`, { method: 'POST', headers: body.headers });
      req.on('error', () => undefined);
      req.end(body.payload);
      await started;
      req.destroy();
      await sleep(150);
      letGo();
      await until(() => statuses.length > 0);
      await sleep(100);
      expect(statuses.every((s) => s < 500), String(statuses)).toBe(true);
      expect(log.entries.filter((e) => e.level === 'error'), JSON.stringify(log.entries)).toEqual([]);
      // no avatar folder, no avatar.json without its photo, no staging folder left
      expect(await filesUnder(join(ctx.storageDir, 'avatars'))).toEqual([]);
      await expectNothingStored(ctx.storageDir);
    } finally {
      letGo();
      await server.close();
      await ctx.cleanup();
    }
  });

  it('checks the job form before decoding any file', async () => {
    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false } as ServerOptions);
    const before = process.env.AVATAR_FFMPEG;
    // a decode would fail with AVATAR_ERR_TOOL_MISSING: the answers show none was started
    process.env.AVATAR_FFMPEG = join(work, 'no-such-ffmpeg');
    try {
      const post = async (parts: Part[]): Promise<Inject> => {
        const body = await form(parts);
        return (await app.inject({ method: 'POST', url: '/v1/jobs', payload: body.payload, headers: body.headers })) as unknown as Inject;
      };
      const audio = { name: 'audio', data: sample, filename: 'a.wav' } as const;
      expectError(await post([{ name: 'jobType', value: 'make_coffee' }, audio]), 400, 'AVATAR_ERR_HTTP_VALIDATION');
      expectError(await post([audio]), 400, 'AVATAR_ERR_HTTP_VALIDATION');
      expectError(await post([{ name: 'jobType', value: 'voice_synthesis' }, { name: 'text', value: 'Hi' }, audio]), 400, 'AVATAR_ERR_HTTP_UPLOAD_FIELD');
      expectError(await post([{ name: 'jobType', value: 'video_encoding' }, audio]), 400, 'AVATAR_ERR_JOB_PARAMS_INVALID');
      // a valid form does reach the decoder
      expectError(await post([{ name: 'jobType', value: 'voice_clone' }, audio]), 503, 'AVATAR_ERR_TOOL_MISSING');
      await expectNothingStored(ctx.storageDir);
    } finally {
      if (before === undefined) delete process.env.AVATAR_FFMPEG;
      else process.env.AVATAR_FFMPEG = before;
      await app.close();
      await ctx.cleanup();
    }
  });

  it('answers 503 AVATAR_ERR_HTTP_BUSY with Retry-After when every check slot and the queue are taken', async () => {
    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false, uploads: { decodeConcurrency: 1, decodeQueue: 0 } } as ServerOptions);
    // the real ffmpeg, started a second late, so the first upload holds the only slot for a while
    const slow = join(work, 'slow-ffmpeg');
    await writeFile(slow, '#!/bin/sh\nsleep 1\nexec ffmpeg "$@"\n');
    await chmod(slow, 0o755);
    const before = process.env.AVATAR_FFMPEG;
    process.env.AVATAR_FFMPEG = slow;
    try {
      const body = await form([{ name: 'jobType', value: 'voice_clone' }, { name: 'audio', data: sample, filename: 'a.wav' }]);
      const send = async (): Promise<Inject> => (await app.inject({ method: 'POST', url: '/v1/jobs', payload: body.payload, headers: body.headers })) as unknown as Inject;
      const first = send();
      const gate = app.avatarUploads.gate;
      await until(() => gate.stats.running === 1);
      const second = await send();
      expectError(second, 503, 'AVATAR_ERR_HTTP_BUSY');
      expect(second.headers['retry-after']).toBe('5');
      expect((await first).statusCode).toBe(202);
      expect(gate.stats).toEqual({ running: 0, queued: 0 });
      // the slot is free again
      expect((await send()).statusCode).toBe(202);
      // nothing of the refused one: two job upload folders, no staging folder
      expect((await readdir(join(ctx.storageDir, 'uploads'))).filter((n) => n.startsWith('.'))).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.AVATAR_FFMPEG;
      else process.env.AVATAR_FFMPEG = before;
      await app.close();
      await ctx.cleanup();
    }
  });

  it('removes staging and deleted folders older than an hour when the server starts, and keeps younger ones', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-assets-sweep-'));
    const old = [join(storageDir, 'avatars', '.upload-0123456789abcdef'), join(storageDir, 'voices', '.upload-fedcba9876543210'), join(storageDir, 'uploads', '.upload-00000000000000aa'), join(storageDir, 'avatars', '.deleted-av-12345678-abcd')];
    const young = join(storageDir, 'uploads', '.upload-00000000000000bb');
    const kept = join(storageDir, 'avatars', 'av-0000abcd');
    for (const dir of [...old, young, kept]) {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'photo.upload'), 'x');
    }
    const twoHoursAgo = new Date(Date.now() - 2 * 3600 * 1000);
    for (const dir of [...old, kept]) await utimes(dir, twoHoursAgo, twoHoursAgo);
    const log = new MemoryLogger();
    const ctx = await makeContext(onnxFacePlugin, storageDir);
    const app = await buildServer({ context: { ...ctx, log }, apiKeys: [], worker: false, rateLimit: false } as ServerOptions);
    try {
      await app.ready();
      for (const dir of old) await expect(stat(dir), dir).rejects.toThrow();
      expect((await stat(young)).isDirectory()).toBe(true);
      expect((await stat(kept)).isDirectory()).toBe(true);
      expect(log.entries.filter((e) => e.level === 'info' && /left over/.test(e.message))).toHaveLength(old.length);
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });

  it('installs uploads once per server: a second install is refused, not silently ignored', async () => {
    const ctx = await makeContext();
    const app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false, uploads: { photoBytes: 1000 } } as ServerOptions);
    try {
      expect(() => installUploads(app as unknown as Api, { storageDir: ctx.storageDir, limits: { photoBytes: 5 } })).toThrow(AvatarError);
      expect(app.avatarUploads.limits.photoBytes).toBe(1000);
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });
});

async function until(test: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(10);
  }
}
