#!/usr/bin/env node
// How soon a video can be watched while it is made (built packages, `npx turbo run build` first):
//   (a) the CLI with `--output -`: from the process start to its first byte and its first fragment
//       (moof) on stdout, and to its exit, beside the same run writing a file (interleaved rounds);
//   (b) the HTTP server (`avatar serve` in a child process, its own worker): from the POST of a live
//       full_pipeline job with a prepared avatar to the first time its playlist answers 200 (a second of
//       video is there), and to the job's completion.
// The text is the same 10 s sentence scripts/bench-compare.sh speaks; quality medium. Prints a table and
// one `JSON {...}` line. The CLI's photo is new to each run (a storage folder of its own, so the face is
// detected), or with `--photo seen` one the storage has prepared before (the face stage's cache).
//   node scripts/bench-live.mjs [--rounds 5] [--photo new|seen]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { liveJob, startServe } from './lib/serve.mjs';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const PORTRAIT = join(ROOT, 'tests/fixtures/grace_hopper.jpg');
const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.';
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, photo: { type: 'string', default: 'new' } } });
if (!['new', 'seen'].includes(values.photo)) throw new Error('--photo is new or seen');
const rounds = Number(values.rounds);

const median = (list) => {
  const s = [...list].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
};

/** One CLI run; with `live`, stdout is read as the video and its first byte and fragment are timed. */
function cliRun(storage, output) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, '--storage', storage, 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', output, '--quality', 'medium'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstByte, firstFragment, bytes = 0, err = '';
    child.stdout.on('data', (d) => {
      firstByte ??= performance.now() - started;
      if (firstFragment === undefined && d.includes('moof')) firstFragment = performance.now() - started;
      bytes += d.length;
    });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`avatar exited ${code}: ${err}`));
      else resolve({ firstByteMs: firstByte, firstFragmentMs: firstFragment, totalMs: performance.now() - started, bytes });
    });
  });
}

const work = await mkdtemp(join(tmpdir(), 'avatar-bench-live-'));
try {
  // (a) the CLI, live and to a file, taking turns
  const live = [], file = [];
  const seen = values.photo === 'seen';
  // (seen: one run first, not counted, prepares the photo in the storage all runs share)
  if (seen) await cliRun(join(work, 'cli'), join(work, 'talk.mp4'));
  for (let i = 0; i < rounds; i++) {
    live.push(await cliRun(join(work, seen ? 'cli' : `cli-${i}-live`), '-'));
    file.push(await cliRun(join(work, seen ? 'cli' : `cli-${i}-file`), join(work, 'talk.mp4')));
  }
  // (b) the server: a prepared avatar in its storage, then live jobs one after another
  const storage = join(work, 'server');
  const prepared = spawnSync(process.execPath, [CLI, '--storage', storage, 'avatars', 'prepare', PORTRAIT, '--output', join(storage, 'avatar.png'), '--quality', 'medium'], { encoding: 'utf8' });
  if (prepared.status !== 0) throw new Error(`avatars prepare: ${prepared.stderr}`);
  const server = await startServe(storage);
  const http = [];
  try {
    await liveJob(server.url, TEXT); // the first job also warms the worker's engines
    for (let i = 0; i < rounds; i++) http.push(await liveJob(server.url, TEXT));
  } finally {
    server.child.kill('SIGTERM');
  }
  const figures = {
    rounds,
    photo: values.photo,
    cliLive: { firstByteMs: median(live.map((r) => r.firstByteMs)), firstFragmentMs: median(live.map((r) => r.firstFragmentMs)), totalMs: median(live.map((r) => r.totalMs)) },
    cliFile: { totalMs: median(file.map((r) => r.totalMs)) },
    httpLive: { firstSegmentMs: median(http.map((r) => r.firstSegmentMs)), totalMs: median(http.map((r) => r.totalMs)) },
    runs: { live: live.map((r) => [Math.round(r.firstFragmentMs), Math.round(r.totalMs)]), file: file.map((r) => Math.round(r.totalMs)), http: http.map((r) => [Math.round(r.firstSegmentMs), Math.round(r.totalMs)]) },
  };
  const ms = (v) => `${Math.round(v)} ms`;
  console.log(`CLI --output -      first byte ${ms(figures.cliLive.firstByteMs)}, first fragment ${ms(figures.cliLive.firstFragmentMs)}, done ${ms(figures.cliLive.totalMs)} (medians of ${rounds})`);
  console.log(`CLI --output a file done ${ms(figures.cliFile.totalMs)}`);
  console.log(`HTTP live job       first segment ${ms(figures.httpLive.firstSegmentMs)} after the POST, completed ${ms(figures.httpLive.totalMs)}`);
  console.log(`JSON ${JSON.stringify(figures)}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
