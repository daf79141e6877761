#!/usr/bin/env node
// A long text streamed: `avatar pipeline run TEXT --output -` with 110 s of speech, medium, from two built
// checkouts in turn (A, B, A, B...: this machine's speed drifts more than most changes move a figure).
// Times the first fragment (moof) on stdout and the exit, from the process start (peak memory is not
// measured here: /usr/bin/time -f '%M KB' on one run). Prints each run, the medians and one `JSON {...}` line.
//   node scripts/bench-long.mjs CHECKOUT_A CHECKOUT_B [--rounds 4]
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = join(fileURLToPath(import.meta.url), '..', '..');
const PORTRAIT = join(HERE, 'tests/fixtures/grace_hopper.jpg');
// one sentence fifteen times: about 110 s of speech with flite's default voice
const TEXT = Array(15).fill('This video was made from one photo and a few sentences, on an ordinary computer, without a graphics card.').join(' ');
const { values, positionals } = parseArgs({ allowPositionals: true, options: { rounds: { type: 'string', default: '4' } } });
if (positionals.length !== 2) {
  console.error('usage: node scripts/bench-long.mjs CHECKOUT_A CHECKOUT_B [--rounds 4]');
  process.exit(2);
}
const trees = positionals.map((p) => resolve(p));

function run(tree, storage) {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(process.execPath, [join(tree, 'packages/cli/dist/bin.js'), '--storage', storage, 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', '-', '--quality', 'medium'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let first;
    let said = '';
    child.stdout.on('data', (d) => {
      if (first === undefined && d.includes('moof')) first = performance.now() - started;
    });
    child.stderr.on('data', (d) => { said = (said + d).slice(-4000); });
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done({ firstFragmentMs: Math.round(first), totalMs: Math.round(performance.now() - started) }) : fail(new Error(`avatar exited ${code}: ${said}`))));
  });
}

const median = (list) => [...list].sort((a, b) => a - b)[Math.floor((list.length - 1) / 2)];
const work = await mkdtemp(join(tmpdir(), 'avatar-bench-long-'));
const runs = trees.map(() => []);
try {
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [k, tree] of trees.entries()) {
      const r = await run(tree, join(work, String(k)));
      runs[k].push(r);
      console.log(`${'AB'[k]} first fragment ${r.firstFragmentMs} ms, exit ${r.totalMs} ms`);
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
const summary = trees.map((tree, k) => ({ tree, firstFragmentMs: median(runs[k].map((r) => r.firstFragmentMs)), totalMs: median(runs[k].map((r) => r.totalMs)), runs: runs[k] }));
for (const [k, s] of summary.entries()) console.log(`${'AB'[k]} ${s.tree}: first fragment ${s.firstFragmentMs} ms, exit ${s.totalMs} ms (medians of ${s.runs.length})`);
console.log(`JSON ${JSON.stringify(summary)}`);
