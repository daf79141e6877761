// `avatar serve` in a child process, for the benchmark scripts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CLI = join(fileURLToPath(import.meta.url), '..', '..', '..', 'packages/cli/dist/bin.js');

/**
 * Starts `avatar --storage DIR --json serve --port 0 [...extra]` on a free loopback port, without API keys
 * and with a rate limit that never refuses (its cost stays in the path); resolves with the child and its
 * URL once it prints its address. `cli`: another checkout's bin.js (benchmarks comparing two).
 */
export function startServe(storageDir, { extra = [], env = {}, cli = CLI } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, '--storage', storageDir, '--json', 'serve', '--port', '0', ...extra], {
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

/**
 * One live `full_pipeline` job of `text` with the prepared `avatar.png` of the server's storage, medium:
 * from the POST to the first time its playlist answers 200 (a segment is there), and to its completion.
 * Polls as an impatient player would: every 5 ms until the playlist is there, then every 20 ms.
 */
export async function liveJob(url, text) {
  const started = performance.now();
  const res = await fetch(`${url}/v1/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jobType: 'full_pipeline', params: { text, avatarImagePath: 'avatar.png', live: true, config: { videoQuality: 'medium' } } }),
  });
  const job = await res.json();
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${JSON.stringify(job)}`);
  let firstSegment;
  for (;;) {
    if (firstSegment === undefined) {
      const playlist = await fetch(`${url}/v1/jobs/${job.jobId}/live/playlist.m3u8`);
      await playlist.arrayBuffer();
      if (playlist.status === 200) firstSegment = performance.now() - started;
    }
    const now = await (await fetch(`${url}/v1/jobs/${job.jobId}`)).json();
    if (now.status === 'completed') return { firstSegmentMs: firstSegment, totalMs: performance.now() - started };
    if (now.status === 'failed' || now.status === 'cancelled') throw new Error(`job ${now.status}: ${JSON.stringify(now.error)}`);
    await new Promise((resolve) => setTimeout(resolve, firstSegment === undefined ? 5 : 20));
  }
}
