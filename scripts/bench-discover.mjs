#!/usr/bin/env node
// How long finding installed plugin packages takes (every package.json in ./node_modules read), as a
// run's start pays it: the registry's discover() beside the same reads made one after another, seven
// interleaved rounds. Built packages first (npx turbo run build).   node scripts/bench-discover.mjs [DIR]
import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const { PluginRegistry } = await import(join(root, 'packages/core/dist/index.js'));
const dir = resolve(process.argv[2] ?? root);

async function readJson(path) {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** The reads one after another, as discover() made them before. */
async function oneAfterAnother(base) {
  const nm = join(base, 'node_modules');
  const folders = [];
  for (const name of await readdir(nm)) {
    if (name.startsWith('.')) continue;
    if (!name.startsWith('@')) folders.push(join(nm, name));
    else for (const sub of await readdir(join(nm, name)).catch(() => [])) folders.push(join(nm, name, sub));
  }
  const found = [];
  for (const folder of folders) if ((await readJson(join(folder, 'package.json')))?.avatar !== undefined) found.push(folder);
  return { found, packages: folders.length };
}

const registry = new PluginRegistry();
const before = [], after = [];
let packages = 0;
for (let round = 0; round < 7; round++) {
  let t = performance.now();
  const old = await oneAfterAnother(dir);
  before.push(performance.now() - t);
  packages = old.packages;
  t = performance.now();
  const found = await registry.discover([dir]);
  after.push(performance.now() - t);
  if (found.join() !== old.found.join()) throw new Error('the two ways found different packages');
}
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)].toFixed(1);
console.log(`discover in ${dir}, ${packages} packages: one after another ${median(before)} ms, 32 at a time ${median(after)} ms (medians of 7 interleaved rounds)`);
