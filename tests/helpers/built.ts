import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './cli.js';

/** Newest modification time of the non-test sources under `dir`. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/**
 * Child processes run the built JavaScript of these packages (tests themselves run the sources):
 * each is built unless its dist is newer than its sources (rebuilding needlessly would rewrite files
 * other test processes may be loading). `files`: dist files that must exist afterwards.
 */
export function ensureBuilt(packages: readonly { name: string; files: readonly string[] }[]): void {
  for (const { name, files } of packages) {
    const dir = join(ROOT, 'packages', name);
    const built = files.map((f) => join(dir, 'dist', f));
    const oldestBuilt = Math.min(...built.map((f) => (existsSync(f) ? statSync(f).mtimeMs : 0)));
    if (oldestBuilt > newestSource(join(dir, 'src'))) continue;
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
    if (!built.every((f) => existsSync(f))) throw new Error(`building packages/${name} failed:\n${tsc.stdout}${tsc.stderr}`);
  }
}
