#!/usr/bin/env node
// How soon a CLI run gets going, two built checkouts side by side (interleaved rounds, the order turned
// each round): the 10.6 s sentence of scripts/bench-compare.sh, quality medium, a photo each checkout's
// storage has seen (a first run, not counted, prepares it). Per checkout: from the process start to the
// first stage's line on stderr, to the first fragment (moof) on stdout with `--output -`, to that run's
// exit, and to the exit of the same run writing a file. Prints medians and one `JSON {...}` line.
//   node scripts/bench-start.mjs CHECKOUT_A CHECKOUT_B [--rounds 8]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ options: { rounds: { type: 'string', default: '8' } }, allowPositionals: true });
if (positionals.length !== 2) throw new Error('usage: node scripts/bench-start.mjs CHECKOUT_A CHECKOUT_B [--rounds 8]');
const trees = positionals.map((p) => resolve(p));
const rounds = Number(values.rounds);
const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.';

/** One run; `output` '-' reads stdout as the video. Times in ms from the spawn. */
function run(tree, storage, output) {
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const args = [join(tree, 'packages/cli/dist/bin.js'), '--storage', storage, 'pipeline', 'run', TEXT,
      '--avatar', join(tree, 'tests/fixtures/grace_hopper.jpg'), '--output', output, '--quality', 'medium'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let firstStage, firstFragment, err = '';
    child.stdout.on('data', (d) => {
      if (firstFragment === undefined && d.includes('moof')) firstFragment = performance.now() - started;
    });
    child.stderr.on('data', (d) => {
      err += d;
      // without a terminal, each stage's start is a line on stderr
      if (firstStage === undefined && err.includes('load_profile')) firstStage = performance.now() - started;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`${tree}: avatar exited ${code}: ${err}`));
      else resolvePromise({ firstStage, firstFragment, total: performance.now() - started });
    });
  });
}

const median = (list) => {
  const s = list.filter((v) => v !== undefined).sort((a, b) => a - b);
  return s.length ? Math.round(s[Math.floor((s.length - 1) / 2)]) : undefined;
};

const work = await mkdtemp(join(tmpdir(), 'avatar-bench-start-'));
try {
  const storages = trees.map((_, k) => join(work, `storage-${k}`));
  const results = trees.map(() => ({ firstStage: [], firstFragment: [], live: [], file: [] }));
  for (const [k, tree] of trees.entries()) await run(tree, storages[k], join(work, `prepare-${k}.mp4`));
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 === 0 ? [0, 1] : [1, 0]) {
      const live = await run(trees[k], storages[k], '-');
      const file = await run(trees[k], storages[k], join(work, `out-${k}.mp4`));
      results[k].firstStage.push(live.firstStage);
      results[k].firstFragment.push(live.firstFragment);
      results[k].live.push(live.total);
      results[k].file.push(file.total);
    }
  }
  const summary = trees.map((tree, k) => ({
    tree, rounds,
    firstStageMs: median(results[k].firstStage), firstFragmentMs: median(results[k].firstFragment),
    liveTotalMs: median(results[k].live), fileTotalMs: median(results[k].file),
    runs: Object.fromEntries(Object.entries(results[k]).map(([name, list]) => [name, list.map((v) => (v === undefined ? null : Math.round(v)))])),
  }));
  for (const s of summary) {
    console.log(`${s.tree}: first stage ${s.firstStageMs} ms, first fragment ${s.firstFragmentMs} ms, live run ${s.liveTotalMs} ms, to a file ${s.fileTotalMs} ms (medians of ${rounds})`);
  }
  console.log(`JSON ${JSON.stringify(summary)}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
