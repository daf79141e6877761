import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { PluginRegistry } from '@avatar/core';
import type { Job } from '@avatar/core';
import { flitePlugin } from '@avatar/tts';
import { buildServer, startServer } from './server.js';
import type { RunningServer } from './server.js';
import { decodeCursor, encodeCursor } from './paging.js';
import { createRedactor } from './redact.js';
import { concurrencyFromBudget } from './security.js';
import { makeTestContext } from './context.test-helpers.js';

const makeContext = () => makeTestContext('avatar-jobs-api-');
const PORTRAIT = new URL('../../../tests/fixtures/grace_hopper.jpg', import.meta.url).pathname;

function getText(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

type Page = { jobs: Job[]; nextCursor: string | null };

describe('GET /v1/jobs: cursor paging', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let app: FastifyInstance;
  const submitted: Job[] = [];

  beforeAll(async () => {
    ctx = await makeContext();
    app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false });
    // inputs are checked at submit: the reference recording must be there
    await writeFile(join(ctx.storageDir, 'ref.wav'), 'RIFF');
    // several within one millisecond: the cursor must still give each exactly once
    for (let i = 0; i < 11; i++) {
      const res = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: i % 3 ? 'voice_synthesis' : 'voice_clone', params: i % 3 ? { text: `job ${i}` } : { referencePath: 'ref.wav' } } });
      expect(res.statusCode, res.body).toBe(202);
      submitted.push(res.json<Job>());
    }
  });
  afterAll(async () => {
    await app?.close();
    await ctx?.cleanup();
  });

  async function pageAll(query: string, limit: number): Promise<{ ids: string[]; pages: number }> {
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/v1/jobs?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await app.inject({ url });
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json<Page>();
      expect(page.jobs.length).toBeLessThanOrEqual(limit);
      ids.push(...page.jobs.map((j) => j.jobId));
      cursor = page.nextCursor;
      pages++;
      expect(pages).toBeLessThan(50);
    } while (cursor !== null);
    return { ids, pages };
  }

  it('pages through every job once, newest first, the last page saying so with nextCursor null', async () => {
    const whole = (await app.inject({ url: '/v1/jobs?limit=1000' })).json<Page>();
    expect(whole.nextCursor).toBeNull();
    expect(whole.jobs).toHaveLength(submitted.length);
    const { ids, pages } = await pageAll('', 4);
    expect(ids).toEqual(whole.jobs.map((j) => j.jobId));
    expect(new Set(ids).size).toBe(submitted.length);
    // 11 jobs by 4: 3 pages, no empty fourth one
    expect(pages).toBe(3);
    // exactly a page's worth: no further page promised
    const exact = (await app.inject({ url: `/v1/jobs?limit=${submitted.length}` })).json<Page>();
    expect(exact.nextCursor).toBeNull();
  });

  it('keeps the filters across pages', async () => {
    const clones = submitted.filter((j) => j.jobType === 'voice_clone').map((j) => j.jobId);
    const { ids } = await pageAll('&type=voice_clone', 2);
    expect(new Set(ids)).toEqual(new Set(clones));
    expect(ids).toHaveLength(clones.length);
  });

  it('a job submitted while paging does not shift later pages', async () => {
    const first = (await app.inject({ url: '/v1/jobs?limit=3' })).json<Page>();
    const extra = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'late' } } });
    expect(extra.statusCode).toBe(202);
    const second = (await app.inject({ url: `/v1/jobs?limit=3&cursor=${first.nextCursor}` })).json<Page>();
    const before = first.jobs.map((j) => j.jobId);
    for (const j of second.jobs) expect(before).not.toContain(j.jobId);
    expect(second.jobs.map((j) => j.jobId)).not.toContain(extra.json<Job>().jobId);
  });

  it('refuses a cursor it did not give, and bad limits', async () => {
    for (const cursor of ['nonsense', Buffer.from('2026-01-01T00:00:00.000Z ../../etc').toString('base64url'), 'a%2Fb', 'x'.repeat(300)]) {
      const res = await app.inject({ url: `/v1/jobs?cursor=${cursor}` });
      expect(res.statusCode, cursor).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('AVATAR_ERR_HTTP_VALIDATION');
    }
    expect((await app.inject({ url: '/v1/jobs?limit=0' })).statusCode).toBe(400);
    expect((await app.inject({ url: '/v1/jobs?cursor=' })).statusCode).toBe(400);
  });

  it('cursors round-trip', () => {
    const job = { createdAt: '2026-03-04T05:06:07.089Z', jobId: 'job-20260304050607-0123abcd' };
    expect(decodeCursor(encodeCursor(job))).toEqual(job);
  });
});

describe('path redaction: no server path reaches a client', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let server: RunningServer;

  beforeAll(async () => {
    ctx = await makeContext();
    server = await startServer({ context: ctx, port: 0, apiKeys: [], worker: { pollMs: 50 }, eventsIntervalMs: 50, rateLimit: false, webhooks: { pollIntervalMs: 50 } });
  });
  afterAll(async () => {
    await server?.close();
    await ctx?.cleanup();
  });

  it('rewrites paths in text: storage-relative inside the storage folder, base name elsewhere, urls and routes kept', () => {
    const r = createRedactor('/srv/avatar-storage');
    expect(r.text('cannot read /srv/avatar-storage/uploads/a b.png')).toBe('cannot read uploads/a b.png');
    expect(r.text('photo not found: /home/alice/Pictures/me.jpg.')).toBe('photo not found: me.jpg.');
    expect(r.text('"/opt/models/lipsync.onnx" (ENOENT)')).toBe('"lipsync.onnx" (ENOENT)');
    expect(r.text('/srv/avatar-storage')).toBe('.');
    expect(r.text('see https://example.com/a/b and GET /v1/jobs/x/events')).toBe('see https://example.com/a/b and GET /v1/jobs/x/events');
    expect(r.text('C:\\Users\\bob\\voice.wav missing')).toBe('voice.wav missing');
    expect(r.text('outputs/job.mp4 and 3/4 done')).toBe('outputs/job.mp4 and 3/4 done');
  });

  it('a failed job: message, error params and job params carry no absolute path on any route or in events', async () => {
    const { store, storageDir } = ctx;
    const outside = '/home/someone/private/secret-photo.png';
    const inside = join(storageDir, 'uploads', 'photo.png');
    // a job another process queued with absolute paths (the CLI allows them), failed by a worker
    const job = await store.submit('video_lipsync', { avatarImagePath: outside, audioPath: inside });
    // claim it before the in-process worker can: poll the queue as a worker would
    let claimed: Job | undefined;
    for (let i = 0; i < 50 && !claimed; i++) {
      claimed = await store.claim('test-worker', { leaseMs: 30_000 });
      if (claimed && claimed.jobId !== job.jobId) {
        await store.release(claimed.jobId, 'test-worker');
        claimed = undefined;
      }
      if (!claimed) await sleep(5);
    }
    // the in-process worker may have taken it: then it fails by itself with the same kind of message
    if (claimed) {
      await store.fail(job.jobId, 'test-worker', {
        code: 'AVATAR_ERR_INPUT_FILE_MISSING',
        message: `photo not found: ${outside}; audio at ${inside}`,
        hint: 'Check the path.',
        params: { input: 'photo', path: outside, other: inside },
      });
    } else {
      for (let i = 0; i < 200 && (await store.get(job.jobId))?.status !== 'failed'; i++) await sleep(25);
    }
    const raw = await store.get(job.jobId);
    expect(raw?.status).toBe('failed');
    expect(JSON.stringify(raw)).toContain(storageDir);

    const check = (text: string): void => {
      expect(text).not.toContain(storageDir);
      expect(text).not.toContain('/home/someone');
      expect(text).toContain('secret-photo.png');
    };
    const one = await server.app.inject({ url: `/v1/jobs/${job.jobId}` });
    check(one.body);
    const redacted = one.json<Job>();
    expect(redacted.params.audioPath).toBe('uploads/photo.png');
    expect(redacted.params.avatarImagePath).toBe('secret-photo.png');
    check((await server.app.inject({ url: '/v1/jobs?status=failed' })).body);
    const events = await getText(`${server.url}/v1/jobs/${job.jobId}/events`);
    expect(events.status).toBe(200);
    expect(events.body).toContain('event: end');
    check(events.body);
  });

  it('a completed job: result.outputPath is storage-relative; its stage timings reach /metrics', async () => {
    const submit = await server.app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Timing the stages.' } } });
    expect(submit.statusCode, submit.body).toBe(202);
    const id = submit.json<Job>().jobId;
    let job: Job | undefined;
    for (let i = 0; i < 400; i++) {
      job = (await server.app.inject({ url: `/v1/jobs/${id}` })).json<Job>();
      if (job.status === 'completed' || job.status === 'failed') break;
      await sleep(25);
    }
    expect(job?.status, JSON.stringify(job?.error)).toBe('completed');
    expect(job?.result?.outputPath).toBe(`outputs/${id}.wav`);
    expect(job?.result?.engines).toEqual({ tts: { name: 'flite', package: '@avatar/tts', license: expect.objectContaining({ code: expect.stringContaining('flite'), commercialUse: true }) } });
    expect(JSON.stringify(job)).not.toContain(ctx.storageDir);
    // the file is still served from its real place
    const file = await server.app.inject({ url: `/v1/jobs/${id}/result` });
    expect(file.statusCode).toBe(200);
    expect(file.rawPayload.subarray(0, 4).toString('latin1')).toBe('RIFF');

    const stages = (job?.result?.stages ?? []) as { stage: string; wallSeconds: number }[];
    expect(stages.map((s) => s.stage)).toContain('synthesize_speech');
    let metrics = '';
    for (let i = 0; i < 100; i++) {
      metrics = (await server.app.inject({ url: '/metrics' })).body;
      if (/avatar_stage_duration_seconds_count\{stage="synthesize_speech"\} [1-9]/.test(metrics)) break;
      await sleep(25);
    }
    expect(metrics).toMatch(/avatar_stage_duration_seconds_count\{stage="synthesize_speech"\} 1\b/);
    const sum = Number(/avatar_stage_duration_seconds_sum\{stage="synthesize_speech"\} ([0-9.e-]+)/.exec(metrics)?.[1]);
    const reported = stages.find((s) => s.stage === 'synthesize_speech')?.wallSeconds ?? -1;
    expect(sum).toBeCloseTo(reported, 6);
    expect(metrics).toMatch(/avatar_job_duration_seconds_count\{type="voice_synthesis",status="completed"\} 1\b/);
    expect(metrics).toMatch(/avatar_queue_depth \d+/);
    expect(metrics).toMatch(/avatar_jobs\{status="completed"\} \d+/);
  });
});

describe('worker concurrency from the resource budget', () => {
  it('one job per model-sized share of memory, at most one per two cores, at least one', () => {
    const registry = new PluginRegistry();
    registry.register(flitePlugin, '@avatar/tts');
    const budget = (ramMB: number) => ({ budgets: { ramMB, vramMB: undefined } });
    expect(concurrencyFromBudget(registry, budget(100), 16)).toBe(1);
    expect(concurrencyFromBudget(registry, budget(1024), 16)).toBe(4);
    expect(concurrencyFromBudget(registry, budget(1 << 20), 16)).toBe(8);
    expect(concurrencyFromBudget(registry, budget(1 << 20), 1)).toBe(1);
  });

  it('a job submitted to a server with a worker is claimed at once, not at the worker\'s next poll', async () => {
    const ctx = await makeContext();
    // (a poll a minute apart: without the wake the job would wait for it)
    const app = await buildServer({ context: ctx, apiKeys: [], rateLimit: false, worker: { pollMs: 60_000 } });
    try {
      await app.ready();
      await new Promise((resolve) => setTimeout(resolve, 200)); // the worker's first look found nothing
      const submitted = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Straight away.' } } });
      expect(submitted.statusCode, submitted.body).toBe(202);
      const { jobId } = submitted.json<{ jobId: string }>();
      let status = '';
      for (const started = Date.now(); Date.now() - started < 15_000 && status !== 'completed' && status !== 'failed'; await new Promise((r) => setTimeout(r, 50))) {
        status = (await app.inject({ url: `/v1/jobs/${jobId}` })).json<{ status: string }>().status;
      }
      expect(status).toBe('completed');
    } finally {
      await app.close();
      await ctx.cleanup();
    }
  });

  it("'auto' builds a server whose worker is sized from the budget", async () => {
    const ctx = await makeContext();
    try {
      const app = await buildServer({ context: ctx, concurrency: 'auto', rateLimit: false });
      await app.ready();
      await app.close();
    } finally {
      await ctx.cleanup();
    }
  });
});

describe('pipeline settings are checked at submit', () => {
  let ctx: Awaited<ReturnType<typeof makeContext>>;
  let app: FastifyInstance;

  beforeAll(async () => {
    ctx = await makeContext();
    app = await buildServer({ context: ctx, apiKeys: [], worker: false, rateLimit: false });
    await mkdir(join(ctx.storageDir, 'avatars'), { recursive: true });
    await copyFile(PORTRAIT, join(ctx.storageDir, 'avatars/me.jpg'));
  });
  afterAll(async () => {
    await app?.close();
    await ctx?.cleanup();
  });

  const form = (fields: Record<string, string>): { payload: string; headers: Record<string, string> } => {
    const boundary = 'avatar-test-boundary-5b1e';
    const parts = Object.entries(fields).map(([name, value]) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
    return { payload: `${parts.join('')}--${boundary}--\r\n`, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
  };
  const errorOf = (body: string) => (JSON.parse(body) as { error: { code: string; message: string } }).error;

  it('a bad setting in JSON or in a form is refused with 400 AVATAR_ERR_CONFIG_INVALID and nothing is queued', async () => {
    const json = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'full_pipeline', params: { text: 'hi', avatarImagePath: 'avatars/me.jpg', config: { videoQuality: 'ultra' } } } });
    expect(json.statusCode).toBe(400);
    expect(errorOf(json.body).code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(errorOf(json.body).message).toContain('videoQuality');

    const unknown = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'full_pipeline', params: { text: 'hi', avatarImagePath: 'avatars/me.jpg', config: { videoQualty: 'high' } } } });
    expect(unknown.statusCode).toBe(400);
    expect(errorOf(unknown.body).code).toBe('AVATAR_ERR_CONFIG_INVALID');

    const multipart = form({ jobType: 'full_pipeline', text: 'hi', avatarImagePath: 'avatars/me.jpg', config: '{"videoQuality":"ultra"}' });
    const viaForm = await app.inject({ method: 'POST', url: '/v1/jobs', ...multipart });
    expect(viaForm.statusCode).toBe(400);
    expect(errorOf(viaForm.body).code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(await ctx.store.list()).toHaveLength(0);

    const good = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'full_pipeline', params: { text: 'hi', avatarImagePath: 'avatars/me.jpg', config: { videoQuality: 'high', seed: 7 } } } });
    expect(good.statusCode, good.body).toBe(202);
    const goodForm = await app.inject({ method: 'POST', url: '/v1/jobs', ...form({ jobType: 'full_pipeline', text: 'hi', avatarImagePath: 'avatars/me.jpg', config: '{"encodingCrf": 20}' }) });
    expect(goodForm.statusCode, goodForm.body).toBe(202);
    expect(await ctx.store.list()).toHaveLength(2);
  });

  it('inputs are checked at submit as a run checks them: files, text, voice; nothing bad is queued', async () => {
    const before = (await ctx.store.list()).length;
    const submit = (params: Record<string, unknown>, jobType = 'full_pipeline') => app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType, params } });
    const refused: [Record<string, unknown>, number, string, string?][] = [
      [{ text: 'hi', avatarImagePath: 'avatars/missing.jpg' }, 400, 'AVATAR_ERR_INPUT_FILE_MISSING'],
      [{ text: ' \n\t ', avatarImagePath: 'avatars/me.jpg' }, 400, 'AVATAR_ERR_INPUT_TEXT_EMPTY'],
      [{ text: '\u{1F600}\u{1F600}', avatarImagePath: 'avatars/me.jpg' }, 400, 'AVATAR_ERR_INPUT_TEXT_UNSAYABLE'],
      [{ text: 'hi', avatarImagePath: 'avatars/me.jpg', voiceProfileId: 'vp-0123abcd' }, 404, 'AVATAR_ERR_VOICE_NOT_FOUND'],
      [{ text: 'hi', avatarImagePath: 'avatars' }, 400, 'AVATAR_ERR_INPUT_FILE_UNREADABLE'],
      [{ imagePath: 'avatars/me.jpg', audioPath: 'avatars/none.wav' }, 400, 'AVATAR_ERR_INPUT_FILE_MISSING', 'video_encoding'],
    ];
    for (const [params, status, code, jobType] of refused) {
      const res = await submit(params, jobType);
      expect(res.statusCode, `${JSON.stringify(params)}: ${res.body}`).toBe(status);
      expect(errorOf(res.body).code, JSON.stringify(params)).toBe(code);
    }
    expect(await ctx.store.list()).toHaveLength(before);
  });

  it('engine choices in params.config are checked at submit: an unknown engine or a bad option is a 400 naming it, nothing queued', async () => {
    const before = (await ctx.store.list()).length;
    const submit = (config: Record<string, unknown>) => app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Which engine?', config } } });
    const unknown = await submit({ engines: { tts: 'shout' } });
    expect(unknown.statusCode).toBe(400);
    expect(errorOf(unknown.body)).toMatchObject({ code: 'AVATAR_ERR_PLUGIN_NOT_FOUND', message: 'no tts engine named "shout" is installed (installed: flite)' });
    const badOption = await submit({ engineOptions: { tts: { speed: 2 } } });
    expect(badOption.statusCode).toBe(400);
    expect(errorOf(badOption.body)).toMatchObject({ code: 'AVATAR_ERR_ENGINE_OPTION_INVALID', message: 'option speed of the tts engine "flite" (@avatar/tts) is not an option of this engine' });
    const notStage = await submit({ engines: { mouth: 'warp' } });
    expect(errorOf(notStage.body).code).toBe('AVATAR_ERR_CONFIG_INVALID');
    expect(await ctx.store.list()).toHaveLength(before);
    const named = await submit({ engines: { tts: 'flite' } });
    expect(named.statusCode, named.body).toBe(202);
    // a speech job takes the engine settings only
    const video = await submit({ videoFps: 30 });
    expect(errorOf(video.body)).toMatchObject({ code: 'AVATAR_ERR_JOB_PARAMS_INVALID', message: 'job parameter config.videoFps is not a setting of voice_synthesis' });
  });

  it('job parameters over HTTP are core\'s own: the same limits refused the same way, no output path', async () => {
    const { HTTP_JOB_PARAMS } = await import('./schemas.js');
    const { JOB_PARAM_SPECS } = await import('@avatar/core');
    expect([...HTTP_JOB_PARAMS, 'outputPath'].sort()).toEqual(Object.keys(JOB_PARAM_SPECS).sort());
    const long = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'x'.repeat(20_001) } } });
    expect(long.statusCode).toBe(400);
    const out = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Hi', outputPath: '/tmp/x.wav' } } });
    expect(out.statusCode).toBe(400);
    const seconds = await app.inject({ method: 'POST', url: '/v1/jobs', payload: { jobType: 'voice_synthesis', params: { text: 'Hi', maxSeconds: 3601 } } });
    expect(seconds.statusCode).toBe(400);
  });

  it('GET /v1/plugins describes the installed engines as `avatar plugins list` does', async () => {
    const res = await app.inject({ url: '/v1/plugins' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual([expect.objectContaining({
      stage: 'tts', name: 'flite', package: '@avatar/tts', default: true, options: null,
      license: expect.objectContaining({ commercialUse: true }), defaultVoice: { voice: 'rms', language: 'en-US' }, check: expect.objectContaining({ ok: true }),
    })]);
    expect((await app.inject({ url: '/v1/plugins?stage=face' })).json()).toEqual([]);
    expect((await app.inject({ url: '/v1/plugins?stage=mouth' })).statusCode).toBe(400);
  });
});
