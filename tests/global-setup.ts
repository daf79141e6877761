import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * CLI and multi-process tests run the built JavaScript, so build first; turbo's cache makes this
 * a no-op when nothing changed. Set AVATAR_TEST_SKIP_BUILD=1 to skip it.
 *
 * Facts kept between runs (what ffmpeg says about itself) go to a folder of this test run's own, so a
 * run starts as a fresh machine would and leaves nothing in the home folder. Workers inherit it.
 */
export default function setup(): () => void {
  const cache = mkdtempSync(join(tmpdir(), 'avatar-test-cache-'));
  process.env.AVATAR_CACHE_DIR = cache;
  const teardown = (): void => rmSync(cache, { recursive: true, force: true });
  if (process.env.AVATAR_TEST_SKIP_BUILD === '1') return teardown;
  execFileSync('npx', ['--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1', TURBO_NO_UPDATE_NOTIFIER: '1' },
  });
  return teardown;
}
