#!/usr/bin/env node
// Compiles the addon with cmake-js. The addon is optional (GPU memory reporting and NVENC
// detection), so by default a failed build prints one line and exits 0; --strict exits 1 instead.
// AVATAR_SKIP_NATIVE_BUILD=1 skips the build altogether.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
const ptx = buildPtx();
// The NVENC header installed after a first build: cmake keeps "not found" in its cache, so configure afresh.
const cache = join(buildDir, 'CMakeCache.txt');
if (existsSync(cache) && readFileSync(cache, 'utf8').includes('NVENC_INCLUDE_DIR-NOTFOUND') &&
    ['/usr/include/ffnvcodec/nvEncodeAPI.h', '/usr/local/include/ffnvcodec/nvEncodeAPI.h'].some((h) => existsSync(h))) {
  rmSync(cache);
}
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
finish(true, `built ${relative(process.cwd(), binary) || binary} in ${seconds}s; CUDA kernels: ${ptx}`);

/**
 * The renderer's CUDA twins (cpp/warp.cu, cpp/mouth.cu) compiled to PTX by nvcc where it is installed,
 * and written into a source file the addon embeds (build/generated/cuda_ptx.cc), with a line saying how
 * they were built or why not. nvcc failing never fails the addon: its CPU kernels do not need it.
 * PTX for compute_75 (Turing) up, the oldest CUDA 13 compiles for; the driver compiles it for the GPU
 * it runs on. --fmad=false: no fused multiply-add, so every rounding matches the CPU's (hd.h).
 */
function buildPtx() {
  const generated = join(buildDir, 'generated');
  mkdirSync(generated, { recursive: true });
  const modules = [];
  let status;
  let cudaVersion = 0;
  const nvcc = [process.env.CUDACXX, '/usr/local/cuda/bin/nvcc', 'nvcc'].find((c) => c && spawnSync(c, ['--version']).status === 0);
  if (process.env.AVATAR_SKIP_CUDA_PTX) status = 'not built (AVATAR_SKIP_CUDA_PTX is set)';
  else if (!nvcc) status = 'not built: nvcc not found (the CUDA toolkit is needed to build them; the CPU kernels do not need it)';
  else {
    const version = /release ([\d.]+)/.exec(spawnSync(nvcc, ['--version'], { encoding: 'utf8' }).stdout)?.[1] ?? 'unknown';
    for (const name of ['warp', 'mouth']) {
      const out = join(generated, `${name}.ptx`);
      const run = spawnSync(nvcc, ['-ptx', '--fmad=false', '-O3', '-std=c++17', '-arch=compute_75', '-I', join(root, 'cpp'), join(root, 'cpp', `${name}.cu`), '-o', out], { encoding: 'utf8' });
      if (run.status !== 0) {
        const why = `${run.stderr ?? ''}${run.error ?? ''}`.split('\n').find((l) => /error/i.test(l))?.trim() ?? `exit status ${run.status}`;
        status = `not built: nvcc ${version} failed on cpp/${name}.cu (${why.slice(0, 200)})`;
        modules.length = 0;
        break;
      }
      modules.push({ name, ptx: readFileSync(out, 'utf8') });
    }
    status ??= `PTX (compute_75) by nvcc ${version}`;
    // a driver compiles PTX only from a toolkit as new as itself or older: 13.0 -> 13000, as cuDriverGetVersion counts
    const [major = 0, minor = 0] = version.split('.').map(Number);
    if (modules.length > 0) cudaVersion = major * 1000 + minor * 10;
  }
  const end = ')avatar_ptx"';
  if (modules.some((m) => m.ptx.includes(end))) throw new Error('PTX holds the embedding delimiter');
  const source = [
    '// Generated by scripts/build-addon.mjs: the CUDA kernels as PTX, or none with the reason.',
    '#include "cuda_ptx.h"',
    'namespace avatar {',
    `const char* const kPtxStatus = ${JSON.stringify(status)};`,
    `const PtxModule kPtxModules[] = {${modules.map((m) => `{"${m.name}", R"avatar_ptx(${m.ptx}${end}}`).join(', ') || '{nullptr, nullptr}'}};`,
    `const size_t kPtxModuleCount = ${modules.length};`,
    `const int kPtxCudaVersion = ${cudaVersion};`,
    '}  // namespace avatar',
    '',
  ].join('\n');
  const file = join(generated, 'cuda_ptx.cc');
  // rewritten only when it changes, so an unchanged build stays incremental
  if (!existsSync(file) || readFileSync(file, 'utf8') !== source) writeFileSync(file, source);
  return status;
}
