#!/usr/bin/env node
// Benchmarks the HTTP server (built packages, `npx turbo run build` first) under load from
// autocannon in this process, the server in a child process (`avatar serve --no-worker`):
//   (a) GET one job, 30 connections;
//   (b) JSON submissions (POST /v1/jobs);
//   (c) 1,000 event streams held on a few running jobs while their progress changes, server RSS
//       sampled from /proc, then ended by finishing the jobs (every stream must get its 'end');
//       a second GET run while they are held shows what the streams cost the rest of the API;
//   (d) GET one job over the file store and over the Redis store (a redis-server this script starts on a
//       loopback port), taking turns, several rounds: the Redis store's rate against the file store's.
// Prints a table and one `JSON {...}` line. `benchServer()` returns the figures for scripts/bench.mjs.
//
// Usage: node scripts/bench-server.mjs [--seconds 10] [--connections 30] [--post-connections 10]
//                                      [--streams 1000] [--stream-jobs 4] [--hold-seconds 20]
//        node scripts/bench-server.mjs --stores-only [--rounds 3] [--store-seconds 5]   # (d) alone
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Agent, get as httpGet } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';
import { treeRssMB } from './lib/proc.mjs';
import { startServe } from './lib/serve.mjs';

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const CORE = join(ROOT, 'packages/core/dist/index.js');

/** `avatar serve` without a worker on a free loopback port, over the given job store. */
const startServer = (storageDir, storeUrl = '') => startServe(storageDir, { extra: ['--no-worker'], env: { AVATAR_STORE: storeUrl } });

function cannon(options) {
  return new Promise((resolve, reject) => {
    autocannon(options, (error, result) => (error ? reject(error) : resolve(result)));
  });
}

const summary = (r) => ({
  requestsPerSecond: Math.round(r.requests.average),
  p50Ms: r.latency.p50,
  p99Ms: r.latency.p99,
  maxMs: r.latency.max,
  requests: r.requests.total,
  non2xx: r.non2xx,
  errors: r.errors,
  timeouts: r.timeouts,
});

/** CPU time a process has used, ms (user + system, from /proc; clock ticks of 10 ms). */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** autocannon's figures plus the server's CPU per request, which other load on the machine changes far less than the rate. */
async function measured(pid, options) {
  const before = cpuMs(pid);
  const result = summary(await cannon(options));
  return { ...result, serverCpuUsPerRequest: Math.round(((cpuMs(pid) - before) * 1000) / Math.max(1, result.requests)) };
}

/** Server RSS sampled every 200 ms until stop(); the largest value and the last. */
function sampleRss(pid) {
  let peak = 0;
  let last = 0;
  const timer = setInterval(() => { last = treeRssMB(pid); peak = Math.max(peak, last); }, 200);
  return { stop: () => { clearInterval(timer); return { peakMB: Math.round(peak), lastMB: Math.round(last) }; } };
}

async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** Opens `count` event streams (a connection each), resolving once every one has its 'state'. */
async function openStreams(url, ids, count) {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const streams = [];
  const opening = [];
  for (let i = 0; i < count; i++) {
    const s = { id: ids[i % ids.length], text: '', bytes: 0, state: false, ended: false, req: undefined };
    streams.push(s);
    opening.push(new Promise((resolve, reject) => {
      s.req = httpGet(`${url}/v1/jobs/${s.id}/events`, { agent }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`stream ${i}: HTTP ${res.statusCode}`));
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          s.bytes += chunk.length;
          // keep only the tail: enough to see the last event
          s.text = (s.text + chunk).slice(-4096);
          if (!s.state && s.text.includes('event: state')) { s.state = true; resolve(); }
        });
        res.on('end', () => { s.ended = true; });
        res.on('error', () => {});
      });
      s.req.on('error', reject);
    }));
    // a few at a time, as real clients arrive
    if (i % 100 === 99) await sleep(20);
  }
  await Promise.all(opening);
  return { streams, close: () => { for (const s of streams) s.req.destroy(); agent.destroy(); } };
}

/**
 * @param {{ seconds?: number, connections?: number, postConnections?: number, streams?: number, streamJobs?: number, holdSeconds?: number }} [o]
 */
export async function benchServer(o = {}) {
  const { seconds = 10, connections = 30, postConnections = 10, streams: streamCount = 1000, streamJobs = 4, holdSeconds = 20 } = o;
  if (!existsSync(CLI) || !existsSync(CORE)) throw new Error('build first: npx turbo run build');
  const { FileJobStore } = await import(pathToFileURL(CORE).href);
  const storageDir = await mkdtemp(join(tmpdir(), 'avatar-bench-server-'));
  const store = new FileJobStore({ storageDir });
  const { child, url } = await startServer(storageDir);
  try {
    const idleRssMB = Math.round(treeRssMB(child.pid));
    // the jobs the streams follow: submitted and claimed first, while nothing else is pending,
    // so they are running (their progress written from here, as a worker would) for the whole run
    const owner = new Map();
    for (let i = 0; i < streamJobs; i++) {
      await store.submit('voice_synthesis', { text: `watched ${i}` });
      const claimed = await store.claim(`bench-${i}`, { leaseMs: 10 * 60_000 });
      if (!claimed) throw new Error('could not claim a watched job');
      owner.set(claimed.jobId, claimed.workerId);
    }
    const running = [...owner.keys()];
    // a realistic job: a paragraph of text and a limit
    const params = { text: 'The quick brown fox jumps over the lazy dog. '.repeat(8), maxSeconds: 60 };
    const one = await store.submit('voice_synthesis', params);
    const jobUrl = `${url}/v1/jobs/${one.jobId}`;
    await cannon({ url: jobUrl, connections, duration: 2 }); // warm-up

    let rss = sampleRss(child.pid);
    const getOne = await measured(child.pid, { url: jobUrl, connections, duration: seconds });
    const getRss = rss.stop();

    rss = sampleRss(child.pid);
    const post = await measured(child.pid, {
      url: `${url}/v1/jobs`, method: 'POST', connections: postConnections, duration: seconds,
      headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jobType: 'voice_synthesis', params }),
    });
    const postRss = rss.stop();
    const accepted = (await store.list({ status: 'pending' })).length - 1;
    // a figure of refusals measures nothing
    for (const [name, r] of [['GET', getOne], ['POST', post]]) if (r.non2xx > 0 || r.errors > 0) throw new Error(`${name}: ${r.non2xx} answers not 2xx, ${r.errors} errors`);

    // ---- event streams on the running jobs ----
    const beforeStreamsMB = Math.round(treeRssMB(child.pid));
    rss = sampleRss(child.pid);
    const t0 = performance.now();
    const { streams, close } = await openStreams(url, running, streamCount);
    const connectSeconds = (performance.now() - t0) / 1000;
    const heldMB = Math.round(treeRssMB(child.pid));
    const watchers = await metric(url, 'avatar_http_event_watchers');
    const openGauge = await metric(url, 'avatar_http_event_streams');

    // progress moves on every job twice a second while the streams are held, and a GET run goes on beside them
    let step = 0;
    let moving = true;
    const mover = (async () => {
      while (moving) {
        step++;
        for (const id of running) await store.progress(id, owner.get(id), Math.min(0.99, step / 100), `stage-${step % 5}`);
        await sleep(500);
      }
    })();
    // first the streams alone (their memory), then a GET run beside them (what they cost the rest of the API)
    const getSeconds = Math.min(seconds, Math.max(1, Math.floor(holdSeconds / 2)));
    const quietCpu = cpuMs(child.pid);
    const quietStart = performance.now();
    await sleep((holdSeconds - getSeconds) * 1000);
    const streamsCpuPercent = Math.round(((cpuMs(child.pid) - quietCpu) * 100) / (performance.now() - quietStart));
    const streamRss = rss.stop();
    rss = sampleRss(child.pid);
    const getDuring = await measured(child.pid, { url: jobUrl, connections, duration: getSeconds });
    moving = false;
    await mover;
    const withGetRss = rss.stop();
    const lastProgress = `"progress":${Math.min(0.99, step / 100)},`;
    const upToDate = streams.filter((s) => s.text.includes(lastProgress)).length;

    const t1 = performance.now();
    for (const id of running) await store.complete(id, owner.get(id), { outputPath: 'none' });
    const deadline = Date.now() + 30_000;
    while (streams.some((s) => !s.ended) && Date.now() < deadline) await sleep(20);
    const endSeconds = (performance.now() - t1) / 1000;
    const ended = streams.filter((s) => s.ended && /event: end\ndata: \{[^\n]*"status":"completed"/.test(s.text)).length;
    close();
    await sleep(500);
    const afterMB = Math.round(treeRssMB(child.pid));
    const watchersAfter = await metric(url, 'avatar_http_event_watchers');

    return {
      url,
      seconds,
      connections,
      postConnections,
      getOne,
      getRssPeakMB: getRss.peakMB,
      post: { ...post, accepted },
      postRssPeakMB: postRss.peakMB,
      sse: {
        streams: streamCount,
        jobs: streamJobs,
        holdSeconds,
        connectSeconds: Number(connectSeconds.toFixed(2)),
        watchers,
        openStreams: openGauge,
        progressSteps: step,
        // the server's CPU while only the streams are open (the progress moving twice a second)
        streamsCpuPercent,
        upToDateAtEnd: upToDate,
        endedWithEnd: ended,
        endSeconds: Number(endSeconds.toFixed(2)),
        rssBeforeMB: beforeStreamsMB,
        rssHeldMB: heldMB,
        rssPeakMB: streamRss.peakMB,
        rssPeakWithGetMB: withGetRss.peakMB,
        rssAfterMB: afterMB,
        perStreamKB: Math.round(((streamRss.peakMB - beforeStreamsMB) * 1024) / streamCount),
        watchersAfter,
        getDuring,
      },
      idleRssMB,
      stores: await benchStoreGets({ connections }),
      cpus: cpus().length,
      cpu: cpus()[0]?.model,
      node: process.version,
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => { child.once('exit', r); setTimeout(r, 5000); });
    await store.close();
    await rm(storageDir, { recursive: true, force: true });
  }
}

/**
 * GET one job over each store, the stores taking turns for `rounds` rounds (each a fresh server, a warm-up
 * and `seconds` of load): the median rate of each and the Redis store's share of the file store's.
 */
export async function benchStoreGets(o = {}) {
  const { rounds = 3, seconds = 5, connections = 30 } = o;
  const testing = await import(pathToFileURL(join(ROOT, 'packages/queue-redis/dist/testing.js')).href);
  const found = testing.findRedisServer();
  if ('missing' in found) return { skipped: found.missing };
  const { openJobStore } = await import(pathToFileURL(CORE).href);
  const { jobStores } = await import(pathToFileURL(join(ROOT, 'packages/queue-redis/dist/index.js')).href);
  const redis = await testing.startRedisServer();
  const params = { text: 'The quick brown fox jumps over the lazy dog. '.repeat(8), maxSeconds: 60 };
  const runs = { file: [], redis: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      for (const kind of ['file', 'redis']) {
        const storageDir = await mkdtemp(join(tmpdir(), 'avatar-bench-stores-'));
        const storeUrl = kind === 'redis' ? `${redis.url}/0?prefix=get${round}` : '';
        const store = await openJobStore(storeUrl || undefined, { storageDir, kinds: jobStores });
        const { child, url } = await startServer(storageDir, storeUrl);
        try {
          const one = await store.submit('voice_synthesis', params);
          const jobUrl = `${url}/v1/jobs/${one.jobId}`;
          await cannon({ url: jobUrl, connections, duration: 2 });
          const r = await measured(child.pid, { url: jobUrl, connections, duration: seconds });
          if (r.non2xx > 0 || r.errors > 0) throw new Error(`${kind}: ${r.non2xx} answers not 2xx, ${r.errors} errors`);
          runs[kind].push(r);
        } finally {
          child.kill('SIGTERM');
          await new Promise((r) => { child.once('exit', r); setTimeout(r, 5000); });
          await store.close();
          await rm(storageDir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    await redis.dispose();
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const of = (kind) => ({
    requestsPerSecond: median(runs[kind].map((r) => r.requestsPerSecond)),
    p99Ms: median(runs[kind].map((r) => r.p99Ms)),
    serverCpuUsPerRequest: median(runs[kind].map((r) => r.serverCpuUsPerRequest)),
    runs: runs[kind].map((r) => r.requestsPerSecond),
  });
  const file = of('file');
  const onRedis = of('redis');
  return { rounds, seconds, connections, file, redis: onRedis, redisShare: Number((onRedis.requestsPerSecond / file.requestsPerSecond).toFixed(2)) };
}

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : Number(process.argv[i + 1]);
}

function printStores(g) {
  if (g.skipped) {
    console.log(`  GET over the Redis store: skipped (${g.skipped})`);
    return;
  }
  console.log(`  GET /v1/jobs/:id by store, ${g.rounds} interleaved rounds of ${g.seconds} s, ${g.connections} connections (medians):`);
  console.log(`    file store   ${g.file.requestsPerSecond} req/s, p99 ${g.file.p99Ms} ms, ${g.file.serverCpuUsPerRequest} µs CPU/req (runs ${g.file.runs.join(', ')})`);
  console.log(`    Redis store  ${g.redis.requestsPerSecond} req/s, p99 ${g.redis.p99Ms} ms, ${g.redis.serverCpuUsPerRequest} µs CPU/req (runs ${g.redis.runs.join(', ')})`);
  console.log(`    Redis / file ${g.redisShare}   target >= 0.8`);
}

if (process.argv[1] === SELF && process.argv.includes('--stores-only')) {
  const g = await benchStoreGets({ rounds: arg('rounds', 3), seconds: arg('store-seconds', 5), connections: arg('connections', 30) });
  printStores(g);
  console.log(`JSON ${JSON.stringify({ bench: 'server-stores', ...g })}`);
} else if (process.argv[1] === SELF) {
  const r = await benchServer({
    seconds: arg('seconds', 10), connections: arg('connections', 30), postConnections: arg('post-connections', 10),
    streams: arg('streams', 1000), streamJobs: arg('stream-jobs', 4), holdSeconds: arg('hold-seconds', 20),
  });
  const s = r.sse;
  const rows = [
    [`GET /v1/jobs/:id, ${r.connections} connections, ${r.seconds} s`, `${r.getOne.requestsPerSecond} req/s`, `p99 ${r.getOne.p99Ms} ms, ${r.getOne.serverCpuUsPerRequest} µs CPU/req`, 'target >= 3000 req/s, p99 < 20 ms'],
    [`POST /v1/jobs (JSON), ${r.postConnections} connections, ${r.seconds} s`, `${r.post.requestsPerSecond} req/s`, `p99 ${r.post.p99Ms} ms, ${r.post.serverCpuUsPerRequest} µs CPU/req`, 'target >= 500 req/s'],
    [`${s.streams} event streams on ${s.jobs} jobs, held ${s.holdSeconds} s`, `${s.endedWithEnd}/${s.streams} got 'end'`, `${s.watchers} watchers, server CPU ${s.streamsCpuPercent} %`, `all ended in ${s.endSeconds} s`],
    ['  server RSS before / opened / peak held / after', `${s.rssBeforeMB} / ${s.rssHeldMB} / ${s.rssPeakMB} / ${s.rssAfterMB} MB`, `~${s.perStreamKB} KB/stream`, 'bounded'],
    [`  GET /v1/jobs/:id while they are held`, `${s.getDuring.requestsPerSecond} req/s`, `p99 ${s.getDuring.p99Ms} ms, ${s.getDuring.serverCpuUsPerRequest} µs CPU/req`, `RSS peak ${s.rssPeakWithGetMB} MB`],
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((row) => row[c].length)));
  console.log(`HTTP server ${r.url} (${r.cpus} CPUs, ${r.cpu}, Node ${r.node}; load tool in this process, server in a child)`);
  for (const row of rows) console.log(`  ${row[0].padEnd(w[0])}  ${row[1].padStart(w[1])}  ${row[2].padEnd(w[2])}  ${row[3]}`);
  printStores(r.stores);
  console.log(`JSON ${JSON.stringify({ bench: 'server', ...r })}`);
}
