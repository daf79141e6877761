#!/usr/bin/env node
// Benchmarks the file job store (built core, packages/core/dist):
//   (a) N submissions one after another (and 8 at a time), then one full listing;
//   (b) jobs per second that W worker processes claim and complete from one storage folder.
// Prints a table and one JSON line. `benchQueue()` returns the figures for a bigger bench script.
//
// Usage: node scripts/bench-queue.mjs [--jobs 1000] [--claim-jobs 1000] [--workers 4] [--dir <folder>]
import { spawnSync, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');
const DIST = join(ROOT, 'packages/core/dist');

async function loadCore() {
  if (!existsSync(join(DIST, 'worker.js')) || !existsSync(join(DIST, 'store/file-store.js'))) {
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'packages/core/tsconfig.json')], { stdio: 'inherit' });
    if (!existsSync(join(DIST, 'worker.js'))) throw new Error(`could not build packages/core (tsc exit ${tsc.status})`);
  }
  const { FileJobStore } = await import(pathToFileURL(join(DIST, 'store/file-store.js')).href);
  const { Worker } = await import(pathToFileURL(join(DIST, 'worker.js')).href);
  return { FileJobStore, Worker };
}

/** Child process: run a worker until the queue is empty, after the parent says go. */
async function child(storageDir) {
  const { FileJobStore, Worker } = await loadCore();
  const worker = new Worker({
    store: new FileJobStore({ storageDir }),
    handlers: { voice_synthesis: async ({ job }) => ({ i: job.params.i }) },
    pollMs: 20,
  });
  await new Promise((resolve) => {
    process.once('message', resolve);
    process.send({ ready: true });
  });
  const summary = await worker.run({ once: true });
  process.send({ summary }, () => process.disconnect());
}

async function withTempDir(base, fn) {
  const dir = await mkdtemp(join(base ?? tmpdir(), 'avatar-bench-queue-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * @param {{ jobs?: number, claimJobs?: number, workers?: number, dir?: string }} [options]
 *   dir: the folder to make the storage folders in (default: the OS temp folder)
 */
export async function benchQueue({ jobs = 1000, claimJobs = 1000, workers = 4, dir } = {}) {
  const { FileJobStore } = await loadCore();

  // submissions with `inFlight` at a time, then one full listing; 8 at a time is what a server with
  // several clients sees: each submission waits on its own fsync, so they overlap
  const submitThenList = (inFlight) => withTempDir(dir, async (storageDir) => {
    const store = new FileJobStore({ storageDir });
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
    if (listed.length !== jobs) throw new Error(`listed ${listed.length} of ${jobs} jobs`);
    // untimed: stops the store's background work before its folder is removed
    await store.close();
    return { submitMs: t1 - t0, listMs: t2 - t1 };
  });
  const submitList = await submitThenList(1);
  const concurrent = await submitThenList(8);

  const claim = await withTempDir(dir, async (storageDir) => {
    const store = new FileJobStore({ storageDir });
    for (let i = 0; i < claimJobs; i++) await store.submit('voice_synthesis', { i });
    const children = Array.from({ length: workers }, () => fork(SELF, ['--child', storageDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    const ready = children.map((c) => new Promise((resolve) => c.once('message', resolve)));
    await Promise.all(ready);
    const done = children.map(
      (c) =>
        new Promise((resolve, reject) => {
          c.on('message', (m) => m.summary && resolve(m.summary));
          c.once('exit', (code) => (code === 0 ? undefined : reject(new Error(`bench worker exited ${code}`))));
        }),
    );
    const t0 = performance.now();
    for (const c of children) c.send({ go: true });
    const summaries = await Promise.all(done);
    const seconds = (performance.now() - t0) / 1000;
    const completed = summaries.reduce((n, s) => n + s.completed, 0);
    const finished = await store.list({ status: 'completed' });
    if (completed !== claimJobs || finished.length !== claimJobs) throw new Error(`completed ${completed} (store says ${finished.length}) of ${claimJobs}`);
    await store.close();
    return { seconds, perWorker: summaries.map((s) => s.completed) };
  });

  return {
    jobs,
    submitMs: Math.round(submitList.submitMs),
    listMs: Math.round(submitList.listMs),
    submitAndListMs: Math.round(submitList.submitMs + submitList.listMs),
    concurrentSubmitMs: Math.round(concurrent.submitMs),
    concurrentSubmitAndListMs: Math.round(concurrent.submitMs + concurrent.listMs),
    claimJobs,
    workers,
    claimSeconds: Number(claim.seconds.toFixed(3)),
    claimJobsPerSecond: Math.round(claimJobs / claim.seconds),
    perWorker: claim.perWorker,
    dir: dir ?? tmpdir(),
    cpus: cpus().length,
    node: process.version,
  };
}

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  return typeof fallback === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === '--child') {
    await child(process.argv[3]);
  } else {
    const r = await benchQueue({ jobs: arg('jobs', 1000), claimJobs: arg('claim-jobs', 1000), workers: arg('workers', 4), dir: arg('dir', undefined) });
    const rows = [
      [`submit ${r.jobs} jobs (one after another)`, `${r.submitMs} ms`, ''],
      ['list all of them', `${r.listMs} ms`, ''],
      ['submit + list', `${r.submitAndListMs} ms`, 'target < 1000 ms'],
      [`submit ${r.jobs} jobs, 8 at a time, + list`, `${r.concurrentSubmitAndListMs} ms`, 'target < 1000 ms'],
      [`${r.workers} worker processes, ${r.claimJobs} jobs`, `${r.claimJobsPerSecond} jobs/s`, 'target >= 200 jobs/s'],
    ];
    const w = [0, 1, 2].map((c) => Math.max(...rows.map((row) => row[c].length)));
    console.log(`file job store in ${r.dir} (${r.cpus} CPUs, Node ${r.node})`);
    for (const row of rows) console.log(`  ${row[0].padEnd(w[0])}  ${row[1].padStart(w[1])}  ${row[2]}`);
    console.log(JSON.stringify({ bench: 'queue', ...r }));
  }
}
