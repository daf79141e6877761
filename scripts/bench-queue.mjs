#!/usr/bin/env node
// Benchmarks the job stores side by side in one run (built packages: core, queue-redis):
//   (a) N submissions one after another (and 8 at a time), then one full listing;
//   (b) jobs per second that W worker processes claim and complete, for W = 1, 2 and 4.
// The file store in a temp folder, the Redis store on a redis-server this script starts on a loopback
// port (skipped, with the reason, where redis-server is not installed). The stores take turns at each
// step, so both see the same machine. Prints a table and one JSON line; `benchQueue()` returns the
// figures for a bigger bench script.
//
// Usage: node scripts/bench-queue.mjs [--jobs 1000] [--claim-jobs 1000] [--workers 1,2,4] [--dir <folder>] [--stores file,redis]
import { spawnSync, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');
const dist = (pkg, file) => join(ROOT, 'packages', pkg, 'dist', file);

async function load() {
  for (const [pkg, file] of [['core', 'worker.js'], ['queue-redis', 'store.js']]) {
    if (existsSync(dist(pkg, file))) continue;
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'packages', pkg, 'tsconfig.json')], { stdio: 'inherit' });
    if (!existsSync(dist(pkg, file))) throw new Error(`could not build packages/${pkg} (tsc exit ${tsc.status})`);
  }
  const { openJobStore } = await import(pathToFileURL(dist('core', 'store/open.js')).href);
  const { Worker } = await import(pathToFileURL(dist('core', 'worker.js')).href);
  const { jobStores } = await import(pathToFileURL(dist('queue-redis', 'index.js')).href);
  const testing = await import(pathToFileURL(dist('queue-redis', 'testing.js')).href);
  return { open: (url, storageDir) => openJobStore(url || undefined, { storageDir, kinds: jobStores }), Worker, testing };
}

/** Child process: run a worker until the queue is empty, after the parent says go. */
async function child(storageDir, url) {
  const { open, Worker } = await load();
  const store = await open(url, storageDir);
  const worker = new Worker({ store, handlers: { voice_synthesis: async ({ job }) => ({ i: job.params.i }) }, pollMs: 20 });
  await new Promise((resolve) => {
    process.once('message', resolve);
    process.send({ ready: true });
  });
  const summary = await worker.run({ once: true });
  await store.close();
  process.send({ summary }, () => process.disconnect());
}

let prefixes = 0;
/** A fresh, empty store of the given kind for one measurement: a temp folder (and a Redis prefix of its own). */
async function withStore(kind, ctx, fn) {
  const storageDir = await mkdtemp(join(ctx.dir ?? tmpdir(), 'avatar-bench-queue-'));
  const url = kind === 'redis' ? `${ctx.redis.url}/0?prefix=bench${process.pid}x${prefixes++}` : '';
  const store = await ctx.open(url, storageDir);
  try {
    return await fn(store, { storageDir, url });
  } finally {
    await store.close();
    await rm(storageDir, { recursive: true, force: true });
  }
}

async function submitThenList(kind, ctx, jobs, inFlight) {
  return withStore(kind, ctx, async (store) => {
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (next < jobs) {
        const i = next++;
        await store.submit('voice_synthesis', { i, text: 'The quick brown fox.' });
      }
    }));
    const t1 = performance.now();
    const listed = await store.list();
    const t2 = performance.now();
    if (listed.length !== jobs) throw new Error(`${kind}: listed ${listed.length} of ${jobs} jobs`);
    return { submitMs: t1 - t0, listMs: t2 - t1 };
  });
}

async function claimAll(kind, ctx, claimJobs, workers) {
  return withStore(kind, ctx, async (store, { storageDir, url }) => {
    for (let i = 0; i < claimJobs; i++) await store.submit('voice_synthesis', { i });
    const children = Array.from({ length: workers }, () => fork(SELF, ['--child', storageDir, url], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))));
    const done = children.map((c) => new Promise((resolve, reject) => {
      c.on('message', (m) => m.summary && resolve(m.summary));
      c.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`bench worker exited ${code}`))));
    }));
    const t0 = performance.now();
    for (const c of children) c.send({ go: true });
    const summaries = await Promise.all(done);
    const seconds = (performance.now() - t0) / 1000;
    const completed = summaries.reduce((n, s) => n + s.completed, 0);
    const finished = await store.list({ status: 'completed' });
    if (completed !== claimJobs || finished.length !== claimJobs) throw new Error(`${kind}: completed ${completed} (store says ${finished.length}) of ${claimJobs}`);
    return { seconds, perWorker: summaries.map((s) => s.completed) };
  });
}

/**
 * @param {{ jobs?: number, claimJobs?: number, workers?: number[], dir?: string, stores?: string[] }} [options]
 *   dir: the folder to make the storage folders in (default: the OS temp folder)
 */
export async function benchQueue({ jobs = 1000, claimJobs = 1000, workers = [1, 2, 4], dir, stores = ['file', 'redis'] } = {}) {
  const { open, testing } = await load();
  const ctx = { open, dir };
  const kinds = [...stores];
  const skipped = {};
  if (kinds.includes('redis')) {
    const found = testing.findRedisServer();
    if ('missing' in found) {
      skipped.redis = found.missing;
      kinds.splice(kinds.indexOf('redis'), 1);
    } else {
      ctx.redis = await testing.startRedisServer();
    }
  }
  const figures = Object.fromEntries(kinds.map((k) => [k, { claims: [] }]));
  try {
    // each step, every store in turn
    for (const kind of kinds) {
      const r = await submitThenList(kind, ctx, jobs, 1);
      Object.assign(figures[kind], { submitMs: Math.round(r.submitMs), listMs: Math.round(r.listMs), submissionsPerSecond: Math.round(jobs / (r.submitMs / 1000)) });
    }
    for (const kind of kinds) {
      const r = await submitThenList(kind, ctx, jobs, 8);
      Object.assign(figures[kind], { concurrentSubmitMs: Math.round(r.submitMs), concurrentSubmissionsPerSecond: Math.round(jobs / (r.submitMs / 1000)) });
    }
    for (const w of workers) {
      for (const kind of kinds) {
        const r = await claimAll(kind, ctx, claimJobs, w);
        figures[kind].claims.push({ workers: w, jobsPerSecond: Math.round(claimJobs / r.seconds), seconds: Number(r.seconds.toFixed(3)), perWorker: r.perWorker });
      }
    }
  } finally {
    await ctx.redis?.dispose();
  }
  return { jobs, claimJobs, ...figures, ...(Object.keys(skipped).length > 0 && { skipped }), dir: dir ?? tmpdir(), cpus: cpus().length, node: process.version };
}

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  return typeof fallback === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === '--child') {
    await child(process.argv[3], process.argv[4]);
  } else {
    const r = await benchQueue({
      jobs: arg('jobs', 1000),
      claimJobs: arg('claim-jobs', 1000),
      workers: arg('workers', '1,2,4').split(',').map(Number),
      dir: arg('dir', undefined),
      stores: arg('stores', 'file,redis').split(','),
    });
    const kinds = ['file', 'redis'].filter((k) => r[k]);
    const rows = [['', ...kinds.map((k) => `${k} store`), 'target']];
    const row = (label, value, target = '') => rows.push([label, ...kinds.map((k) => value(r[k])), target]);
    row(`submit ${r.jobs} jobs one after another`, (f) => `${f.submitMs} ms (${f.submissionsPerSecond}/s)`, 'file: < 1000 ms with the listing; redis: >= 2000/s');
    row('list all of them', (f) => `${f.listMs} ms`);
    row(`submit ${r.jobs} jobs, 8 at a time`, (f) => `${f.concurrentSubmitMs} ms (${f.concurrentSubmissionsPerSecond}/s)`);
    for (const [i, c] of r[kinds[0]].claims.entries()) {
      row(`${c.workers} worker process${c.workers > 1 ? 'es' : ''}, ${r.claimJobs} jobs claimed + completed`, (f) => `${f.claims[i].jobsPerSecond} jobs/s`, c.workers === 4 ? 'file: >= 200 jobs/s; redis: >= 1000/s' : '');
    }
    const w = rows[0].map((_, c) => Math.max(...rows.map((x) => x[c].length)));
    console.log(`job stores (${r.cpus} CPUs, Node ${r.node}; file store in ${r.dir}${r.redis ? ', Redis on loopback' : ''})`);
    for (const x of rows) console.log(`  ${x.map((cell, c) => (c === 0 ? cell.padEnd(w[c]) : cell.padStart(w[c]))).join('  ')}`);
    if (r.skipped) for (const [k, why] of Object.entries(r.skipped)) console.log(`  ${k} store skipped: ${why}`);
    console.log(JSON.stringify({ bench: 'queue', ...r }));
  }
}
