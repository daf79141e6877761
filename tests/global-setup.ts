import { execFileSync } from 'node:child_process';

/**
 * CLI and multi-process tests run the built JavaScript, so build first; turbo's cache makes this
 * a no-op when nothing changed. Set AVATAR_TEST_SKIP_BUILD=1 to skip it.
 */
export default function setup(): void {
  if (process.env.AVATAR_TEST_SKIP_BUILD === '1') return;
  execFileSync('npx', ['--no-install', 'turbo', 'run', 'build', '--output-logs=errors-only'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1', DO_NOT_TRACK: '1', TURBO_NO_UPDATE_NOTIFIER: '1' },
  });
}
