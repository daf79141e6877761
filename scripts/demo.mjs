// Renders the demo: the example portrait speaks a short text in the default voice.
// Run through `npm run demo`, which sets everything up first.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'packages/cli/dist/bin.js');
const out = join(root, 'out');
mkdirSync(out, { recursive: true });
const storage = join(out, 'storage');
const text = 'Hello! I am Grace. This video was made from one photo and this sentence, on your own computer, without a graphics card.';

function avatar(...args) {
  const r = spawnSync(process.execPath, [cli, '--storage', storage, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

console.log('demo: a talking head from one photo and one sentence');
avatar('pipeline', 'run', text, '--avatar', join(root, 'tests/fixtures/grace_hopper.jpg'), '--output', join(out, 'demo.mp4'), '--quality', 'medium');
console.log(`\ndemo video: ${relative(process.cwd(), join(out, 'demo.mp4')) || join(out, 'demo.mp4')}`);
