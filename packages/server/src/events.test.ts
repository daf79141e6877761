import { mkdtemp, rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileJobStore, NoGpuProvider, PipelineCoordinator, PluginRegistry, ResourceManager, VoiceProfileStore } from '@avatar/core';
import type { Job, JobStore } from '@avatar/core';
import { DEFAULT_VOICE } from '@avatar/tts';
import { startServer } from './server.js';
import type { RunningServer } from './server.js';

interface SseEvent { event: string; data: unknown }

function parseSse(text: string): SseEvent[] {
  return text.split('\n\n').filter((b) => b.startsWith('event:')).map((block) => ({
    event: /^event: (.*)$/m.exec(block)?.[1] ?? '',
    data: JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') as unknown,
  }));
}

/** An event stream read as it arrives; `done` resolves with everything once the server ends it. */
interface Stream { text(): string; done: Promise<string>; close(): void }

function openStream(url: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    // its own connection each, as separate browsers would have
    const req = httpGet(url, { agent: false }, (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      // a stream closed from this side ends with an error: that is its end too
      const done = new Promise<string>((ok) => {
        res.on('data', (chunk: string) => { text += chunk; });
        res.on('end', () => ok(text));
        res.on('error', () => ok(text));
        res.on('close', () => ok(text));
      });
      resolve({ text: () => text, done, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}


async function until(what: string, test: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The real file store, with its reads of single jobs counted. */
function countingStore(store: FileJobStore): { store: JobStore; reads(): number } {
  let reads = 0;
  const counted = new Proxy(store, {
    get(target, prop) {
      if (prop === 'get') {
        return (id: string) => {
          reads++;
          return target.get(id);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { store: counted, reads: () => reads };
}

describe('events: one watcher per job, shared by its clients', () => {
  let storageDir: string;
  let files: FileJobStore;
  let counter: ReturnType<typeof countingStore>;
  let server: RunningServer;
  const INTERVAL = 50;

  beforeEach(async () => {
    storageDir = await mkdtemp(join(tmpdir(), 'avatar-events-'));
    files = new FileJobStore({ storageDir });
    counter = countingStore(files);
    const registry = new PluginRegistry();
    const coordinator = new PipelineCoordinator({
      registry, storageDir, resources: new ResourceManager({ gpu: new NoGpuProvider('none') }), voices: new VoiceProfileStore(storageDir), defaultVoice: DEFAULT_VOICE,
    });
    server = await startServer({ context: { storageDir, registry, store: counter.store, coordinator }, port: 0, apiKeys: [], worker: false, eventsIntervalMs: INTERVAL });
  });
  afterEach(async () => {
    await server?.close();
    await files?.close();
    await rm(storageDir, { recursive: true, force: true });
  });

  const gauge = async (name: string): Promise<number> => {
    const body = (await server.app.inject({ url: '/metrics' })).body;
    return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(body)?.[1] ?? NaN);
  };

  it('200 clients on one job: one store read per interval, every client gets every change and the end', async () => {
    const { jobId } = await files.submit('voice_synthesis', { text: 'watched' });
    await files.claim('w1', { leaseMs: 60_000 });
    const url = `${server.url}/v1/jobs/${jobId}/events`;
    const readsBefore = counter.reads();
    const streams = await Promise.all(Array.from({ length: 200 }, () => openStream(url)));
    await until('every state event', () => streams.every((s) => s.text().includes('event: state')));
    // connecting reads the job only until its watcher exists
    const connectReads = counter.reads() - readsBefore;
    expect(connectReads).toBeLessThan(40);
    expect(await gauge('avatar_http_event_streams')).toBe(200);
    expect(await gauge('avatar_http_event_watchers')).toBe(1);

    const start = counter.reads();
    const t0 = Date.now();
    const steps = [0.2, 0.4, 0.6, 0.8];
    for (const [i, p] of steps.entries()) {
      await files.progress(jobId, 'w1', p, `stage-${i}`);
      await until(`progress ${p} everywhere`, () => streams.every((s) => s.text().includes(`"progress":${p},`)));
    }
    const elapsed = Date.now() - t0;
    const reads = counter.reads() - start;
    // one read per interval (a tolerance for timer slack), where 200 pollers would make 200
    expect(reads).toBeLessThanOrEqual(Math.ceil(elapsed / INTERVAL) + 2);
    expect(reads).toBeGreaterThan(0);

    await files.complete(jobId, 'w1', { outputPath: 'none' });
    const texts = await Promise.all(streams.map((s) => s.done));
    for (const text of texts) {
      const events = parseSse(text);
      expect(events[0]?.event).toBe('state');
      expect(events.filter((e) => e.event === 'progress').map((e) => (e.data as Job).progress)).toEqual([...steps, 1]);
      expect(events.filter((e) => e.event === 'stage').map((e) => (e.data as { stage: string }).stage)).toEqual(steps.map((_, i) => `stage-${i}`));
      const last = events.at(-1);
      expect(last?.event).toBe('end');
      expect((last?.data as Job).status).toBe('completed');
    }
    expect(await gauge('avatar_http_event_streams')).toBe(0);
    expect(await gauge('avatar_http_event_watchers')).toBe(0);
  });

  it('stops reading when the last client leaves, and tells clients when the job is deleted', async () => {
    const { jobId } = await files.submit('voice_synthesis', { text: 'left alone' });
    const url = `${server.url}/v1/jobs/${jobId}/events`;
    const streams = await Promise.all(Array.from({ length: 5 }, () => openStream(url)));
    await until('state events', () => streams.every((s) => s.text().includes('event: state')));
    for (const s of streams) s.close();
    await sleep(INTERVAL * 3);
    const after = counter.reads();
    await sleep(INTERVAL * 6);
    expect(counter.reads() - after).toBe(0);
    expect(await gauge('avatar_http_event_watchers')).toBe(0);

    const again = await openStream(url);
    await until('state', () => again.text().includes('event: state'));
    await files.delete(jobId);
    const events = parseSse(await again.done);
    expect(events.map((e) => e.event)).toEqual(['state', 'error']);
    expect((events[1]?.data as { code: string }).code).toBe('AVATAR_ERR_JOB_NOT_FOUND');
  });

  it('a client that does not read: skipped while its socket is full, bounded buffer, then the latest state and the end', async () => {
    const { jobId } = await files.submit('voice_synthesis', { text: 'slow reader' });
    await files.claim('w1', { leaseMs: 60_000 });
    // the server side of the slow client's connection, to see what it holds
    const serverSockets: Socket[] = [];
    server.app.server.on('connection', (s: Socket) => serverSockets.push(s));
    const { port } = new URL(server.url);
    const client = connect(Number(port), '127.0.0.1');
    const received: Buffer[] = [];
    client.on('data', (b: Buffer) => received.push(b));
    const closed = new Promise<void>((r) => client.on('close', () => r()));
    client.write(`GET /v1/jobs/${jobId}/events HTTP/1.0\r\n\r\n`);
    await until('the state event', () => Buffer.concat(received).includes('event: state'));
    client.pause();
    const socket = serverSockets[0];
    expect(socket).toBeDefined();

    // each change is ~3 x 256 KiB of events (stage, previous stage, progress): far more than socket buffers hold
    const big = 's'.repeat(256 * 1024);
    const updates = 60;
    let peakBuffered = 0;
    const sample = setInterval(() => { peakBuffered = Math.max(peakBuffered, socket?.writableLength ?? 0); }, 5);
    try {
      for (let i = 1; i <= updates; i++) {
        await files.progress(jobId, 'w1', i / (updates + 1), `${big}-${i}`);
        await sleep(INTERVAL / 2 + 5);
        peakBuffered = Math.max(peakBuffered, socket?.writableLength ?? 0);
      }
    } finally {
      clearInterval(sample);
    }
    const generated = updates * 3 * big.length;
    // one catch-up beyond the stream's own high-water mark at most, never the backlog
    expect(peakBuffered).toBeLessThan(2 * 1024 * 1024);
    expect(generated).toBeGreaterThan(40 * 1024 * 1024);

    await files.complete(jobId, 'w1', { outputPath: 'none' });
    client.resume();
    await closed;
    const text = Buffer.concat(received).toString('utf8');
    // HTTP/1.0: no chunked framing, the body is the stream as written
    const events = parseSse(text.slice(text.indexOf('\r\n\r\n') + 4));
    const progress = events.filter((e) => e.event === 'progress').map((e) => (e.data as Job).progress);
    // intermediate updates were skipped, the order kept, and the last ones are the latest state
    expect(progress.length).toBeLessThan(updates);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(progress.at(-1)).toBe(1);
    expect(text.length).toBeLessThan(generated / 2);
    const last = events.at(-1);
    expect(last?.event).toBe('end');
    expect((last?.data as Job).status).toBe('completed');
  });
});

describe('events: a client gone while its job is read', () => {
  it('is not counted as a stream and leaves no watcher polling', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-events-gone-'));
    const files = new FileJobStore({ storageDir });
    // the real store, with reads of single jobs held until released: the client leaves during one
    let hold: Promise<void> | undefined;
    let release = (): void => undefined;
    let reads = 0;
    let readStarted = (): void => undefined;
    const started = new Promise<void>((ok) => (readStarted = ok));
    const held = new Proxy(files, {
      get(target, prop) {
        if (prop === 'get') {
          return async (id: string) => {
            reads++;
            readStarted();
            if (hold) await hold;
            return target.get(id);
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as JobStore;
    const registry = new PluginRegistry();
    const coordinator = new PipelineCoordinator({
      registry, storageDir, resources: new ResourceManager({ gpu: new NoGpuProvider('none') }), voices: new VoiceProfileStore(storageDir), defaultVoice: DEFAULT_VOICE,
    });
    const server = await startServer({ context: { storageDir, registry, store: held, coordinator }, port: 0, apiKeys: [], worker: false, eventsIntervalMs: 20 });
    try {
      const { jobId } = await files.submit('voice_synthesis', { text: 'gone early' });
      hold = new Promise<void>((ok) => (release = ok));
      const url = new URL(server.url);
      const socket: Socket = connect(Number(url.port), url.hostname);
      socket.on('error', () => undefined);
      await new Promise<void>((ok) => socket.once('connect', () => ok()));
      socket.write(`GET /v1/jobs/${jobId}/events HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`);
      await started;
      socket.destroy();
      // the server sees the close while the read is still held, then the read completes
      await sleep(100);
      hold = undefined;
      release();
      await sleep(100);
      const metrics = async (name: string): Promise<number> =>
        Number(new RegExp(`^${name} (\\d+)$`, 'm').exec((await server.app.inject({ url: '/metrics' })).body)?.[1] ?? NaN);
      expect(await metrics('avatar_http_event_streams')).toBe(0);
      expect(await metrics('avatar_http_event_watchers')).toBe(0);
      // and nothing goes on reading the job for nobody
      const after = reads;
      await sleep(200);
      expect(reads - after).toBe(0);
    } finally {
      release();
      await server.close();
      await files.close();
      await rm(storageDir, { recursive: true, force: true });
    }
  });
});
