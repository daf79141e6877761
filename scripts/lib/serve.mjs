// `avatar serve` in a child process, for the benchmark scripts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = join(fileURLToPath(import.meta.url), '..', '..', '..', 'packages/cli/dist/bin.js');

/**
 * Starts `avatar --storage DIR --json serve --port 0 [...extra]` on a free loopback port, without API keys
 * and with a rate limit that never refuses (its cost stays in the path); resolves with the child and its
 * URL once it prints its address.
 */
export function startServe(storageDir, { extra = [], env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, '--storage', storageDir, '--json', 'serve', '--port', '0', ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AVATAR_API_KEYS: '', AVATAR_API_KEYS_FILE: '', AVATAR_RATE_LIMIT: '100000000', ...env },
    });
    let out = '';
    let err = '';
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ child, url: JSON.parse(line).url });
    });
    child.once('exit', (code) => reject(new Error(`avatar serve exited ${code}: ${err}`)));
  });
}
