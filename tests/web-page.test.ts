import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium } from 'playwright-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { silentLogger } from '@avatar/core';
import type { Job } from '@avatar/core';
import { openContext } from '@avatar/cli';
import type { CliContext } from '@avatar/cli';
import { startServer } from '@avatar/server';
import type { RunningServer } from '@avatar/server';
import { PORTRAIT, ROOT, tempDir } from './helpers/cli.js';

/**
 * The web page in a real browser (Debian's chromium, driven by playwright-core) against a real
 * server with every built-in engine: a photo checked, a video made, followed live, played and
 * downloaded; a photo without a face refused; the same page behind API keys.
 */

const CHROMIUM = process.env.AVATAR_CHROMIUM ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === 'true' || process.env.CI === '1';
const NO_FACE = join(ROOT, 'tests/fixtures/faces/coffee.jpg');
const KEY = 'page-test-key-4f1c9a';
const SKIP_REASON = `no chromium at ${CHROMIUM}: install it with "apt-get install chromium" (scripts/bootstrap does) or set AVATAR_CHROMIUM`;

if (!HAVE_CHROMIUM && !IN_CI) console.warn(`web page test skipped: ${SKIP_REASON}`);

/** What the browser said that a page must never say: script errors and policy refusals. */
interface Complaints {
  errors: string[];
}

async function openPage(context: BrowserContext, url: string): Promise<{ page: Page; complaints: Complaints }> {
  const page = await context.newPage();
  const complaints: Complaints = { errors: [] };
  page.on('pageerror', (error) => complaints.errors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    const text = message.text();
    // an error answer (401, 422) is logged by the browser as a failed load: expected, not a fault
    if (message.type() === 'error' && !/^Failed to load resource: the server responded with a status of (401|404|422)/.test(text)) {
      complaints.errors.push(`console: ${text}`);
    }
  });
  const response = await page.goto(url);
  expect(response?.status()).toBe(200);
  return { page, complaints };
}

/** A request's status, its body read to the end: a body left unread holds the connection open and the server's close waits for it. */
async function statusOf(url: string, init?: RequestInit): Promise<number> {
  const response = await fetch(url, init);
  await response.arrayBuffer();
  return response.status;
}

/** The result's file on disk: the API shows paths relative to the storage folder. */
const resultFile = (job: Job | undefined): string => {
  const path = String(job?.result?.outputPath ?? '');
  return isAbsolute(path) ? path : join(storageDir, path);
};
let storageDir = '';

const waitReady = (page: Page): Promise<unknown> => page.waitForSelector('html[data-ready="true"]', { timeout: 15_000 });

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)(`the web page in a real browser${HAVE_CHROMIUM ? '' : ` (${SKIP_REASON})`}`, () => {
  let storage: string;
  let ctx: CliContext;
  let server: RunningServer;
  let keyed: RunningServer;
  let browser: Browser;
  let context: BrowserContext;
  let finishedJob: Job | undefined;
  let sample: string;

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) throw new Error(`the web page test needs a browser: ${SKIP_REASON}`);
    storage = await tempDir('avatar-page-');
    storageDir = storage;
    // a real recording of speech for the voice upload: espeak-ng reading a few sentences (voice matching needs 3 s of voiced speech)
    sample = join(storage, 'sample.wav');
    const spoken = spawnSync('espeak-ng', ['-w', sample, 'This is a recording of my own voice. I read it slowly and clearly, so that the pitch and the pace of my speech can be measured.']);
    if (spoken.status !== 0) throw new Error(`espeak-ng could not make the voice sample: ${String(spoken.stderr)}`);
    ctx = await openContext({ storage, log: silentLogger });
    server = await startServer({ context: ctx, port: 0, apiKeys: [], worker: { pollMs: 50 }, eventsIntervalMs: 50 });
    // the same storage behind keys, without a worker of its own: the first server's worker runs its jobs
    keyed = await startServer({ context: ctx, port: 0, apiKeys: [KEY], worker: false, eventsIntervalMs: 50 });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--autoplay-policy=no-user-gesture-required'],
    });
    context = await browser.newContext({ acceptDownloads: true });
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await keyed?.close();
    await server?.close();
    await ctx?.close();
    if (storage) await rm(storage, { recursive: true, force: true });
  });

  it('serves the page and its files without a key, cached by version, and nothing under /v1 without one', async () => {
    const page = await fetch(`${keyed.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    expect(html).not.toMatch(/<script>|<style|style=/);
    const script = /src="(\/static\/[0-9a-f]{12}\/app\.js)"/.exec(html)?.[1];
    expect(script, html).toBeDefined();

    const js = await fetch(`${keyed.url}${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(js.headers.get('cache-control')).toContain('immutable');
    expect(await js.text()).toMatch(/^\/\/ The avatar web page/);
    const etag = js.headers.get('etag');
    expect(etag).toMatch(/^"/);
    expect(await statusOf(`${keyed.url}${script}`, { headers: { 'if-none-match': etag ?? '' } })).toBe(304);

    expect(await statusOf(`${keyed.url}/static/000000000000/nothing.js`)).toBe(404);
    expect(await statusOf(`${keyed.url}/docs`)).toBe(200);
    // the API's description is public like /docs; everything it describes needs the key
    expect(await statusOf(`${keyed.url}/openapi.json`)).toBe(200);
    expect(await statusOf(`${keyed.url}/v1/jobs`)).toBe(401);
    expect(await statusOf(`${keyed.url}/metrics`)).toBe(401);
  });

  it('checks the photo, makes a video, shows its progress live, plays it and downloads it', async () => {
    const { page, complaints } = await openPage(context, server.url);
    await waitReady(page);

    // every control the user can reach has a label
    const unlabelled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea')]
        .filter((c) => (c as HTMLInputElement).type !== 'hidden' && (c as HTMLInputElement).labels?.length === 0 && !c.getAttribute('aria-label'))
        .map((c) => c.id || c.outerHTML));
    expect(unlabelled).toEqual([]);
    expect(await page.locator('#progress-section').getAttribute('hidden')).not.toBeNull();

    await page.setInputFiles('#photo', PORTRAIT);
    await page.waitForSelector('#photo-verdict[data-verdict]', { timeout: 30_000 });
    expect(await page.getAttribute('#photo-verdict', 'data-verdict')).toBe('usable');
    expect(await page.textContent('#photo-verdict')).toMatch(/Usable: a face was found/);
    expect(await page.evaluate(() => (document.getElementById('photo-preview') as HTMLImageElement).src)).toMatch(/^blob:/);

    // a voice from a recording: uploaded, measured, saved and chosen
    await page.click('#voice-box summary');
    await page.setInputFiles('#voice-file', sample);
    await page.fill('#voice-name', 'Page voice');
    await page.click('#voice-upload');
    await page.waitForFunction(() => /Saved as|could not|cannot|failed/i.test(document.getElementById('voice-status')?.textContent ?? ''), undefined, { timeout: 60_000 });
    expect(await page.textContent('#voice-status')).toMatch(/Saved as "Page voice"/);
    const voiceProfileId = await page.inputValue('#voice');
    expect(voiceProfileId).toMatch(/^vp-[0-9a-f]{8}$/);
    expect(await page.locator('#voice option:checked').textContent()).toMatch(/^Page voice/);

    await page.fill('#text', 'Hello from the web page.');
    await page.check('input[name="quality"][value="low"]');
    await page.check('input[name="head-motion"][value="lively"]');
    await page.fill('#blink-rate', '24');
    expect(await page.textContent('#blink-rate-value')).toBe('24');

    // record what the progress area shows while the job runs, to see it move rather than jump to the end
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seenProgress: string[] }).seenProgress = seen;
      const note = (): void => {
        const text = `${document.getElementById('progress-text')?.textContent ?? ''}|${(document.getElementById('progress') as HTMLProgressElement).value}`;
        if (seen.at(-1) !== text) seen.push(text);
      };
      new MutationObserver(note).observe(document.getElementById('progress-section') as HTMLElement, { subtree: true, childList: true, characterData: true, attributes: true });
    });

    // by keyboard: focus the button, press Enter
    await page.focus('#submit');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => ['completed', 'failed', 'cancelled'].includes(document.getElementById('progress-section')?.dataset.status ?? ''), undefined, { timeout: 90_000 });
    const status = await page.getAttribute('#progress-section', 'data-status');
    expect(status, await page.textContent('#progress-text') ?? '').toBe('completed');

    const seen = await page.evaluate(() => (window as unknown as { seenProgress: string[] }).seenProgress);
    const messages = new Set(seen.map((s) => s.split('|')[0]));
    expect(messages.size, seen.join('\n')).toBeGreaterThanOrEqual(3); // several stages named as they came
    expect(seen.some((s) => /Moving the lips|Encoding the video/.test(s)), seen.join('\n')).toBe(true);
    expect(await page.evaluate(() => (document.getElementById('progress') as HTMLProgressElement).value)).toBe(100);
    expect(await page.textContent('#progress-text')).toMatch(/Done/);
    expect(await page.locator('#stages li.done').count()).toBeGreaterThanOrEqual(5);
    expect(await page.getAttribute('#progress-text', 'aria-live')).toBe('polite');
    expect(await page.isVisible('#cancel')).toBe(false); // nothing left to cancel

    // the job the page made is exactly what was asked
    const jobId = await page.getAttribute('#result-section', 'data-job-id');
    expect(jobId).toMatch(/^job-/);
    const job = (await server.app.inject({ url: `/v1/jobs/${jobId}` })).json<Job>();
    expect(job).toMatchObject({ status: 'completed', jobType: 'full_pipeline', params: { text: 'Hello from the web page.', voiceProfileId, config: { videoQuality: 'low', headMotion: 'lively', blinkRate: 24, captions: 'soft' } } });
    // its captions play with it, as a track shown at once, its cue the words as typed
    await page.waitForFunction(() => {
      const track = (document.getElementById('video') as HTMLVideoElement).textTracks[0];
      return track?.mode === 'showing' && (track.cues?.length ?? 0) > 0;
    }, undefined, { timeout: 20_000 });
    expect(await page.evaluate(() => [...((document.getElementById('video') as HTMLVideoElement).textTracks[0]?.cues ?? [])].map((c) => (c as VTTCue).text).join(' '))).toBe('Hello from the web page.');
    expect(String(job.params.avatarImagePath)).not.toMatch(/^\//);
    finishedJob = job;

    // the video plays in the browser
    await page.waitForFunction(() => {
      const v = document.getElementById('video') as HTMLVideoElement;
      return v.readyState >= 2 && v.duration > 0;
    }, undefined, { timeout: 20_000 });
    const played = await page.evaluate(async () => {
      const v = document.getElementById('video') as HTMLVideoElement;
      v.muted = true;
      await v.play();
      await new Promise<void>((resolve) => {
        const check = (): void => (v.currentTime > 0.1 ? resolve() : void setTimeout(check, 50));
        check();
      });
      v.pause();
      return { duration: v.duration, width: v.videoWidth, height: v.videoHeight, src: v.currentSrc, error: v.error?.code ?? null };
    });
    expect(played.error).toBeNull();
    expect(played.duration).toBeGreaterThan(0.5);
    expect(played.width).toBeGreaterThan(0);
    expect(played.src).toBe(`${server.url}/v1/jobs/${jobId}/result`);

    // the download link saves the same file the server holds
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    expect(download.suggestedFilename()).toBe(`${jobId}.mp4`);
    const saved = await readFile(await download.path());
    const onServer = await stat(resultFile(job));
    expect(saved.length).toBe(onServer.size);
    expect(saved.subarray(4, 8).toString('latin1')).toBe('ftyp');

    // and the job is listed, done, with its links
    await page.click('#jobs-refresh');
    const row = page.locator(`#jobs tr[data-job-id="${jobId}"]`);
    await row.waitFor();
    expect(await row.locator('.job-status').textContent()).toBe('Done');
    expect(await row.locator('a').getAttribute('href')).toBe(`/v1/jobs/${jobId}/result`);

    // any voice an engine has, in its language: Brazilian Portuguese from espeak-ng, saved as a profile
    // once and named by the job
    const portuguese = page.locator('#voice optgroup[label="espeak-ng voices"] option[lang="pt-BR"]');
    expect(await portuguese.count()).toBe(1);
    expect(await page.locator('#voice optgroup[label="espeak-ng voices"] option').count()).toBeGreaterThan(100);
    await page.selectOption('#voice', await portuguese.getAttribute('value') ?? '');
    await page.fill('#text', 'Olá! Este vídeo foi feito a partir de uma foto.');
    await page.click('#submit');
    await page.waitForFunction(() => /Queued as job-/.test(document.getElementById('form-status')?.textContent ?? ''), undefined, { timeout: 20_000 });
    const spoken = (await page.textContent('#form-status'))!.match(/job-\d{14}-[0-9a-f]{8}/)![0];
    const inPortuguese = (await server.app.inject({ url: `/v1/jobs/${spoken}` })).json<Job>();
    const profile = (await server.app.inject({ url: `/v1/voices/${String(inPortuguese.params.voiceProfileId)}` })).json<{ engine: string; voice: string; language: string }>();
    expect(profile).toMatchObject({ engine: 'espeak-ng', voice: 'pt-br', language: 'pt-BR' });
    await server.app.inject({ method: 'DELETE', url: `/v1/jobs/${spoken}` });

    expect(complaints.errors).toEqual([]);
    await page.close();
  });

  it('plays the video live while it is made, before the job completes, then the finished file (behind a key: through hls.js)', async () => {
    // Behind a key, as the browser's own HLS cannot send it: hls.js plays (this Chromium has HLS of its
    // own, which the page uses without a key)
    const { page, complaints } = await openPage(context, keyed.url);
    await waitReady(page);
    await page.fill('#key', KEY);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => sessionStorage.getItem('avatar.apiKey') !== null, undefined, { timeout: 10_000 });
    await page.setInputFiles('#photo', PORTRAIT);
    await page.waitForSelector('#photo-verdict[data-verdict="usable"]', { timeout: 30_000 });
    // long enough that encoding it outlasts starting the player
    await page.fill('#text', 'This video is played while it is being made. '.repeat(12));
    await page.check('input[name="quality"][value="medium"]');
    await page.click('#submit');
    await page.waitForSelector('#result-section[data-live="playing"]', { timeout: 90_000 });
    const jobId = await page.getAttribute('#result-section', 'data-job-id');
    const during = (await server.app.inject({ url: `/v1/jobs/${jobId}` })).json<Job>();
    expect(during.params.live).toBe(true);
    expect(during.status, 'the job when the live video started to play').toBe('running');
    expect(await page.getAttribute('#result-section', 'data-live-player')).toBe('hls.js');
    // once the job is done, the finished file takes over
    // (the download link, hidden while the video was not whole, comes back with the file)
    await page.waitForSelector('#download', { state: 'visible', timeout: 90_000 });
    expect((await server.app.inject({ url: `/v1/jobs/${jobId}` })).json<Job>().status).toBe('completed');
    expect(await page.getAttribute('#result-section', 'data-live')).toBeNull();
    const switched = await page.evaluate(() => ({ src: (document.getElementById('video') as HTMLVideoElement).currentSrc, href: (document.getElementById('download') as HTMLAnchorElement).href }));
    expect(switched.href).toMatch(/^blob:/);
    expect(switched.src).toBe(switched.href);
    expect(complaints.errors).toEqual([]);
    await page.close();
  });

  it('shows why a photo without a face cannot be used and does not submit', async () => {
    const before = (await server.app.inject({ url: '/v1/jobs' })).json<{ jobs: Job[] }>().jobs.length;
    const { page, complaints } = await openPage(context, server.url);
    await waitReady(page);
    await page.setInputFiles('#photo', NO_FACE);
    await page.waitForSelector('#photo-verdict[data-verdict]', { timeout: 30_000 });
    expect(await page.getAttribute('#photo-verdict', 'data-verdict')).toBe('unusable');
    expect(await page.textContent('#photo-verdict .verdict-title')).toMatch(/cannot be used/);
    const reasons = await page.locator('#photo-verdict li').allTextContents();
    expect(reasons.length).toBeGreaterThan(0);
    expect(reasons.join(' ')).toMatch(/face/i);

    await page.fill('#text', 'This should never be spoken.');
    await page.click('#submit');
    await page.waitForFunction(() => (document.getElementById('form-status')?.textContent ?? '') !== '');
    expect(await page.textContent('#form-status')).toMatch(/cannot be used/);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('photo');
    expect(await page.locator('#progress-section').getAttribute('hidden')).not.toBeNull();
    expect((await server.app.inject({ url: '/v1/jobs' })).json<{ jobs: Job[] }>().jobs.length).toBe(before);
    expect(complaints.errors).toEqual([]);
    await page.close();
  });

  it('behind API keys: asks for the key, then sends it, and plays and saves results through blobs', async () => {
    expect(finishedJob, 'needs the video made by the test before').toBeDefined();
    const jobId = finishedJob?.jobId ?? '';
    const { page, complaints } = await openPage(context, keyed.url);
    await waitReady(page);
    // without a key every /v1 call is refused: the page opens the key box and says so
    expect(await page.evaluate(() => (document.getElementById('key-box') as HTMLDetailsElement).open)).toBe(true);
    expect(await page.textContent('#key-status')).toMatch(/needs an API key/);
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('key');

    await page.fill('#key', KEY);
    await page.keyboard.press('Enter');
    const row = page.locator(`#jobs tr[data-job-id="${jobId}"]`);
    await row.waitFor({ timeout: 10_000 });
    expect(await page.evaluate(() => sessionStorage.getItem('avatar.apiKey'))).toBe(KEY);

    await row.locator('button', { hasText: 'Play' }).click();
    await page.waitForFunction(() => {
      const v = document.getElementById('video') as HTMLVideoElement;
      return v.currentSrc.startsWith('blob:') && v.readyState >= 2 && v.duration > 0;
    }, undefined, { timeout: 20_000 });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
    expect(download.suggestedFilename()).toBe(`${jobId}.mp4`);
    const saved = await readFile(await download.path());
    expect(saved.length).toBe((await stat(resultFile(finishedJob))).size);

    // the key stays in this tab: a reload keeps it, no request put it in a URL
    await page.reload();
    await waitReady(page);
    await row.waitFor({ timeout: 10_000 });
    expect(complaints.errors).toEqual([]);
    await page.close();
  });

  it('streams progress events the way the server writes them, split anywhere', async () => {
    const { page } = await openPage(context, server.url);
    await waitReady(page);
    // a string, not a function: the test runner would rewrite import() inside a function's source
    const results = await page.evaluate(`(async () => {
      const src = document.querySelector('script[type="module"]').getAttribute('src');
      const { SseParser } = await import(src.replace('app.js', 'sse.js'));
      const text = 'event: state\\ndata: {"a":1}\\n\\n: keep-alive\\r\\n\\r\\nevent: progress\\r\\ndata: {"b":\\r\\ndata: 2}\\r\\n\\r\\nevent: end\\rdata: {"c":3}\\r\\r';
      const runs = [];
      for (let cut = 0; cut <= text.length; cut++) {
        const got = [];
        const parser = new SseParser((m) => got.push(m.event + '=' + m.data));
        parser.push(text.slice(0, cut));
        parser.push(text.slice(cut));
        parser.end();
        runs.push(got.join(' '));
      }
      return [...new Set(runs)];
    })()`);
    expect(results).toEqual(['state={"a":1} progress={"b":\n2} end={"c":3}']);
    await page.close();
  });

  it('renders the API reference at /docs from the OpenAPI document', async () => {
    const { page, complaints } = await openPage(context, `${keyed.url}/docs`);
    expect(await page.title()).toMatch(/reference/);
    const toc = await page.locator('.toc li').allTextContents();
    expect(toc.some((t) => /POST\s*\/v1\/jobs/.test(t))).toBe(true);
    expect(toc.some((t) => /GET\s*\/v1\/jobs\/\{id\}\/events/.test(t))).toBe(true);
    // nothing of the page itself is listed: it is not part of the API
    expect(toc.some((t) => /\/static\/|\/docs/.test(t))).toBe(false);
    const submit = page.locator('#route-post-v1-jobs');
    await submit.waitFor();
    const body = await page.locator('section[aria-labelledby="route-post-v1-jobs"]').textContent();
    expect(body).toMatch(/jobType required: one of full_pipeline/);
    expect(body).toMatch(/text: string — the text to speak; 1–20000 characters/);
    expect(body).toMatch(/Needs Authorization: Bearer/);
    expect(await page.locator('#schema-def-0').textContent()).toBe('ErrorBody');
    expect(complaints.errors).toEqual([]);
    await page.close();
  });
});
