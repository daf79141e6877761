#!/usr/bin/env node
// Compiles the addon with cmake-js. The addon is optional (GPU memory reporting and NVENC
// detection), so by default a failed build prints one line and exits 0; --strict exits 1 instead.
// AVATAR_SKIP_NATIVE_BUILD=1 skips the build altogether.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const strict = process.argv.includes('--strict');
const buildDir = join(root, 'build');
const logPath = join(buildDir, 'addon-build.log');
const binary = join(buildDir, 'Release', 'avatar_native.node');
const OFF = 'GPU memory reporting and NVENC detection stay off';

function finish(ok, line) {
  console.log(`native addon: ${line}`);
  process.exit(ok || !strict ? 0 : 1);
}

if (process.env.AVATAR_SKIP_NATIVE_BUILD) finish(true, `build skipped (AVATAR_SKIP_NATIVE_BUILD is set); ${OFF}`);

const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error || cmake.status !== 0) finish(false, `not built: cmake not found; ${OFF}`);

let cmakeJs;
try {
  cmakeJs = createRequire(import.meta.url).resolve('cmake-js/bin/cmake-js');
} catch {
  finish(false, `not built: the cmake-js package is not installed (npm install); ${OFF}`);
}

const started = process.hrtime.bigint();
// `build` configures only when needed, so a second run is incremental. Node-API mode
// (package.json "binary.napi_versions") takes headers from node-api-headers: no download.
const run = spawnSync(process.execPath, [cmakeJs, 'build', '--directory', root, '--log-level', 'warn'], {
  cwd: root,
  encoding: 'utf8',
  maxBuffer: 32 * 1024 * 1024,
});
const seconds = (Number(process.hrtime.bigint() - started) / 1e9).toFixed(1);
mkdirSync(buildDir, { recursive: true });
writeFileSync(logPath, `${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? String(run.error) : ''}`);
const logRel = relative(process.cwd(), logPath) || logPath;

if (run.error || run.status !== 0) {
  const output = `${run.stdout ?? ''}\n${run.stderr ?? ''}`.split('\n');
  const firstError = output.find((l) => /error/i.test(l) && !/^\s*$/.test(l))?.trim() ?? `exit status ${run.status}`;
  finish(false, `build failed after ${seconds}s (${firstError.slice(0, 200)}); see ${logRel}; ${OFF}`);
}

// A binary that compiles but cannot load (wrong ABI, missing symbol) is as good as none.
const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(binary)})`], { encoding: 'utf8' });
if (check.status !== 0) {
  const why = (check.stderr.split('\n').find((l) => /Error/.test(l)) ?? `exit status ${check.status}`).trim();
  finish(false, `built but does not load (${why.slice(0, 200)}); ${OFF}`);
}
finish(true, `built ${relative(process.cwd(), binary) || binary} in ${seconds}s`);
