// Compiles the stand-in driver libraries into `dir` (libnvidia-ml.so.1, libcuda.so.1, and
// libnvidia-encode.so.1 where the NVENC header is installed, encoding with x264 where its header is), for tests that point LD_LIBRARY_PATH there.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const cpp = join(here, '..', '..', 'cpp');
export const NVENC_HEADER = '/usr/include/ffnvcodec/nvEncodeAPI.h';
/** With x264's header (Debian: libx264-dev) the stand-in NVENC encodes for real; without it, it only answers the probe. */
export const X264_HEADER = '/usr/include/x264.h';
export const fakeNvencEncodes = existsSync(NVENC_HEADER) && existsSync(X264_HEADER);

export async function buildFakeDrivers(dir: string, options: { nvenc?: boolean } = {}): Promise<void> {
  const cc = (args: string[]) => run('cc', ['-shared', '-fPIC', '-O0', ...args], { cwd: dir });
  await cc(['-o', 'libnvidia-ml.so.1', join(here, 'fake-nvml.c')]);
  // C++: its kernel launches run the renderer's thread functions from cpp/, built as the addon is
  await run('c++', ['-shared', '-fPIC', '-O2', '-std=c++17', '-ffp-contract=off', '-I', cpp, '-o', 'libcuda.so.1', join(here, 'fake-cuda.cc')], { cwd: dir });
  if ((options.nvenc ?? true) && existsSync(NVENC_HEADER)) {
    const x264 = fakeNvencEncodes ? ['-DHAVE_X264', '-lx264'] : [];
    await cc([`-I${dirname(NVENC_HEADER)}`, '-o', 'libnvidia-encode.so.1', join(here, 'fake-nvenc.c'), `-L${dir}`, '-l:libcuda.so.1', ...x264]);
  }
}
