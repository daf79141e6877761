import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRedisServer, startRedisServer, type RedisServer } from '@avatar/queue-redis/testing';
import { ROOT } from './helpers/cli.js';

// The server's HTTP API suites once more, with the Redis store under every test context
// (packages/server/src/context.test-helpers.ts reads AVATAR_TEST_STORE): the API behaves the same
// whatever store keeps the jobs. (The webhook and fault suites that build file stores of their own,
// or damage job files, stay file-store suites.)
const SUITES = ['jobs-api', 'server', 'events', 'job-uploads', 'security', 'assets'].map((name) => `packages/server/src/${name}.test.ts`);

const found = findRedisServer();
if ('missing' in found) {
  describe('the server API on the Redis store', () => {
    it.skip(`skipped: ${found.missing}`, () => undefined);
  });
} else {
  let server: RedisServer;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.dispose();
  });

  describe('the server API on the Redis store', () => {
    it('passes the same suites as on the file store', { timeout: 300_000 }, async () => {
      const run = spawn(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', ...SUITES], {
        cwd: ROOT,
        env: { ...process.env, AVATAR_TEST_STORE: server.url, AVATAR_TEST_SKIP_BUILD: '1', NODE_OPTIONS: '', NO_COLOR: '1', FORCE_COLOR: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      run.stdout.on('data', (d: Buffer) => (output += d.toString()));
      run.stderr.on('data', (d: Buffer) => (output += d.toString()));
      const code = await new Promise<number | null>((resolve) => run.once('exit', resolve));
      expect(code, output.slice(-6000)).toBe(0);
      expect(output.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(/Test Files\s+6 passed/);
    });
  });
}
