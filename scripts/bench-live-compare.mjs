#!/usr/bin/env node
// The HTTP live first segment of two built checkouts side by side: one `avatar serve` of each, running at
// once (the idle one costs nothing), and live jobs sent to each in turn (A, B, B, A, ...), so that both
// see the same machine. Each has the portrait prepared in its storage first and one job to warm it.
//   node scripts/bench-live-compare.mjs CHECKOUT_A CHECKOUT_B [ROUNDS]
// ENV_A / ENV_B: JSON objects of environment variables for one side's server, so that a checkout can be
// compared with itself, e.g. ENV_A='{"AVATAR_X":"1"}'.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { liveJob, startServe } from './lib/serve.mjs';

const [a, b, rounds = '8'] = process.argv.slice(2);
if (!a || !b) throw new Error('usage: bench-live-compare.mjs CHECKOUT_A CHECKOUT_B [ROUNDS]');
const PORTRAIT = join(fileURLToPath(import.meta.url), '..', '..', 'tests/fixtures/grace_hopper.jpg');
const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.';
const envs = [JSON.parse(process.env.ENV_A ?? '{}'), JSON.parse(process.env.ENV_B ?? '{}')];
const median = (list) => [...list].sort((x, y) => x - y)[Math.floor((list.length - 1) / 2)];

const work = await mkdtemp(join(tmpdir(), 'avatar-bench-live-compare-'));
const sides = [];
try {
  for (const [k, tree] of [resolve(a), resolve(b)].entries()) {
    const storage = join(work, String(k));
    const cli = join(tree, 'packages/cli/dist/bin.js');
    const prepared = spawnSync(process.execPath, [cli, '--storage', storage, 'avatars', 'prepare', PORTRAIT, '--output', join(storage, 'avatar.png'), '--quality', 'medium'], { encoding: 'utf8' });
    if (prepared.status !== 0) throw new Error(`avatars prepare (${tree}): ${prepared.stderr}`);
    const server = await startServe(storage, { env: envs[k], cli });
    sides.push({ name: `${k === 0 ? 'a' : 'b'} ${tree}${Object.keys(envs[k]).length ? ` ${JSON.stringify(envs[k])}` : ''}`, server, runs: [] });
  }
  for (const side of sides) await liveJob(side.server.url, TEXT);
  for (let i = 0; i < Number(rounds); i++) {
    for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
      side.runs.push(await liveJob(side.server.url, TEXT));
      // (a pause between jobs: the one before has released its processes)
      await sleep(300);
    }
  }
  for (const side of sides) {
    const first = side.runs.map((r) => r.firstSegmentMs);
    console.log(`${side.name}: first segment median ${Math.round(median(first))} ms (${first.map(Math.round).join(' ')}), completed median ${Math.round(median(side.runs.map((r) => r.totalMs)))} ms`);
  }
} finally {
  // (the servers gone before their storage: one still stopping may write into it)
  await Promise.all(sides.map(({ server }) => new Promise((resolve) => {
    if (server.child.exitCode !== null || server.child.signalCode !== null) return resolve();
    server.child.once('exit', resolve);
    server.child.kill('SIGTERM');
    setTimeout(() => server.child.kill('SIGKILL'), 10_000).unref();
  })));
  await rm(work, { recursive: true, force: true });
}
