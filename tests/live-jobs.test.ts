import { spawnSync } from 'node:child_process';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@avatar/core';
import type { Job } from '@avatar/core';
import { openContext } from '@avatar/cli';
import type { CliContext } from '@avatar/cli';
import { startServer } from '@avatar/server';
import type { RunningServer } from '@avatar/server';
import { PORTRAIT, tempDir } from './helpers/cli.js';

const KEY = 'live-test-key-0123456789';

// A job submitted with "live": true is published as HLS while it is made: the playlist and its segments
// are served (behind the same keys as results) before the job completes, and the playlist ends when the
// video is whole. A job that fails or is cancelled takes its live files with it.
describe('live jobs: HLS while the video is made', () => {
  let storage: string;
  let ctx: CliContext;
  let server: RunningServer;
  const auth = { authorization: `Bearer ${KEY}` };
  const get = (path: string): Promise<Response> => fetch(`${server.url}${path}`, { headers: auth });
  const submit = async (body: unknown): Promise<Job> => {
    const res = await fetch(`${server.url}/v1/jobs`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.status, await res.clone().text()).toBe(202);
    return res.json() as Promise<Job>;
  };
  const job = async (id: string): Promise<Job> => (await get(`/v1/jobs/${id}`)).json() as Promise<Job>;
  const errorCode = async (res: Response): Promise<string> => ((await res.json()) as { error: { code: string; message: string } }).error.code;

  beforeAll(async () => {
    storage = await tempDir('avatar-live-jobs-');
    await writeFile(join(storage, 'portrait.jpg'), await (await import('node:fs/promises')).readFile(PORTRAIT));
    ctx = await openContext({ storage, log: silentLogger });
    server = await startServer({ context: ctx, port: 0, apiKeys: [KEY], worker: { pollMs: 25 }, eventsIntervalMs: 50 });
  });

  afterAll(async () => {
    await server?.close();
    await ctx?.close();
    if (storage) await rm(storage, { recursive: true, force: true });
  });

  it('serves the playlist and segments before the job completes; the playlist ends when the video is whole', async () => {
    const queued = await submit({ jobType: 'full_pipeline', params: { text: 'This video is watched while it is being made, a second at a time.', avatarImagePath: 'portrait.jpg', live: true, config: { videoQuality: 'low' } } });
    let seenOpen = false;
    let seenWhileRunning = false;
    let status = queued.status;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const res = await get(`/v1/jobs/${queued.jobId}/live/playlist.m3u8`);
      status = (await job(queued.jobId)).status;
      if (res.status === 200) {
        const text = await res.text();
        if (!text.includes('#EXT-X-ENDLIST')) {
          seenOpen = true;
          if (status === 'running') seenWhileRunning = true;
        }
      } else {
        await res.arrayBuffer();
      }
      if (status === 'completed' || status === 'failed') break;
      await sleep(20);
    }
    expect(status).toBe('completed');
    expect(seenOpen, 'a playlist that had not ended yet').toBe(true);
    expect(seenWhileRunning, 'the playlist while the job ran').toBe(true);

    const playlist = await get(`/v1/jobs/${queued.jobId}/live/playlist.m3u8`);
    expect(playlist.headers.get('content-type')).toBe('application/vnd.apple.mpegurl');
    expect(playlist.headers.get('cache-control')).toBe('no-cache');
    const text = await playlist.text();
    expect(text.trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
    const segments = text.match(/^seg-\d{5}\.m4s$/gm) ?? [];
    expect(segments.length).toBeGreaterThanOrEqual(3);
    // what a player fetches: the header and every segment, as MP4 pieces; put together they play
    const local = join(storage, 'played');
    await (await import('node:fs/promises')).mkdir(local, { recursive: true });
    for (const name of ['init.mp4', ...segments]) {
      const res = await get(`/v1/jobs/${queued.jobId}/live/${name}`);
      expect(res.status, name).toBe(200);
      expect(res.headers.get('content-type')).toBe('video/mp4');
      await writeFile(join(local, name), Buffer.from(await res.arrayBuffer()));
    }
    await writeFile(join(local, 'playlist.m3u8'), text);
    const probe = spawnSync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name:format=duration', '-of', 'json', join(local, 'playlist.m3u8')], { encoding: 'utf8' });
    expect(probe.status, probe.stderr).toBe(0);
    const info = JSON.parse(probe.stdout) as { streams: { codec_name: string }[]; format: { duration: string } };
    expect(info.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    const done = await job(queued.jobId);
    // the job's result says which way it ran
    expect((done.result as { paths?: { encode?: { path: string } } }).paths?.encode?.path).toBe('libx264');
    expect(Math.abs(Number(info.format.duration) - Number(done.result?.durationSeconds))).toBeLessThan(0.15);
    // the result is the same encode, kept as a file
    const result = await get(`/v1/jobs/${queued.jobId}/result`);
    expect(result.status).toBe(200);
    expect(Buffer.from(await result.arrayBuffer()).toString('latin1', 4, 8)).toBe('ftyp');
    // behind the keys, as results are
    expect((await fetch(`${server.url}/v1/jobs/${queued.jobId}/live/playlist.m3u8`)).status).toBe(401);
    // its captions, as written and timed by the speech engine, beside it; the live stream carried none
    expect((done.result as { captions?: unknown }).captions).toMatchObject({ mode: 'soft', cues: 2, timing: 'engine', notInVideo: 'a live stream carries video and audio only' });
    const vtt = await get(`/v1/jobs/${queued.jobId}/captions/vtt`);
    expect(vtt.status).toBe(200);
    expect(vtt.headers.get('content-type')).toBe('text/vtt; charset=utf-8');
    // (two cues on a 256-pixel square: its lines hold 31 characters)
    expect(await vtt.text()).toMatch(/^WEBVTT\n\n00:00:00\.\d{3} --> 00:00:0\d\.\d{3}\nThis video is watched\nwhile it is being made,\n\n00:00:0\d\.\d{3} --> 00:00:0\d\.\d{3}\na second at a time\.\n$/);
    const srt = await get(`/v1/jobs/${queued.jobId}/captions/srt`);
    expect(await srt.text()).toMatch(/^1\n00:00:00,\d{3} --> /);
    expect((await fetch(`${server.url}/v1/jobs/${queued.jobId}/captions/vtt`)).status).toBe(401);
    expect((await get(`/v1/jobs/${queued.jobId}/captions/txt`)).status).toBe(400);
  });

  it('answers 404 with the reason for a job without a live video, a name it does not serve, and a cancelled job', async () => {
    const plain = await submit({ jobType: 'voice_synthesis', params: { text: 'No live video here.' } });
    const none = await get(`/v1/jobs/${plain.jobId}/live/playlist.m3u8`);
    // (nor captions: speech alone makes none)
    const captionless = await get(`/v1/jobs/${plain.jobId}/captions/vtt`);
    expect([409]).toContain(captionless.status);
    expect(await errorCode(captionless)).toMatch(/AVATAR_ERR_JOB_(NO_RESULT|NOT_FINISHED)/);
    expect(none.status).toBe(404);
    expect(await errorCode(none)).toBe('AVATAR_ERR_JOB_NO_LIVE');
    for (const name of ['live.mp4', 'seg-1.m4s', '..%2Fresult', '.playlist.m3u8.tmp-1-ab']) {
      const res = await get(`/v1/jobs/${plain.jobId}/live/${name}`);
      expect([400, 404], name).toContain(res.status);
      await res.arrayBuffer();
    }

    // cancelled once its playlist is there: the live files go with it
    const long = await submit({ jobType: 'full_pipeline', params: { text: 'This one is cancelled while it is being made. '.repeat(12), avatarImagePath: 'portrait.jpg', live: true, config: { videoQuality: 'low' } } });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && (await get(`/v1/jobs/${long.jobId}/live/playlist.m3u8`)).status !== 200) await sleep(20);
    const cancel = await fetch(`${server.url}/v1/jobs/${long.jobId}`, { method: 'DELETE', headers: auth });
    expect(cancel.status).toBe(200);
    let status = '';
    while (Date.now() < deadline && status !== 'cancelled') {
      status = (await job(long.jobId)).status;
      await sleep(25);
    }
    expect(status).toBe('cancelled');
    const gone = await get(`/v1/jobs/${long.jobId}/live/playlist.m3u8`);
    expect(gone.status).toBe(404);
    expect(((await gone.json()) as { error: { message: string } }).error.message).toContain('ended cancelled');
    expect(await readdir(join(storage, 'live')).catch(() => [])).not.toContain(long.jobId);
  });

  it('refuses a live job that asks for WebM when it is submitted', async () => {
    const res = await fetch(`${server.url}/v1/jobs`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ jobType: 'full_pipeline', params: { text: 'Hi.', avatarImagePath: 'portrait.jpg', live: true, config: { outputFormat: 'webm' } } }),
    });
    expect(res.status).toBe(400);
    expect(await errorCode(res)).toBe('AVATAR_ERR_JOB_PARAMS_INVALID');
  });
});
