import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { FileJobStore } from '@avatar/core';
import { runJobStoreConformance } from '@avatar/core/testing';
import { RedisJobStore } from '../packages/queue-redis/src/store.js';
import { findRedisServer, startRedisServer, type RedisServer } from '@avatar/queue-redis/testing';
import { ensureBuilt } from './helpers/built.js';
import { storeInChildProcess } from './helpers/store-process.js';

// The store contract with its second store in another process: every store, the same suite.

beforeAll(() => {
  ensureBuilt([
    { name: 'core', files: ['index.js', 'store/open.js', 'store/file-store.js'] },
    { name: 'queue-redis', files: ['index.js', 'store.js'] },
  ]);
});

runJobStoreConformance('FileJobStore, second store in another process', async ({ maxAttempts }) => {
  const storageDir = await mkdtemp(join(tmpdir(), 'avatar-conformance-mp-'));
  return {
    store: new FileJobStore({ storageDir, maxAttempts }),
    openAnother: () => storeInChildProcess({ storageDir, maxAttempts }),
    cleanup: () => rm(storageDir, { recursive: true, force: true }),
  };
});

const found = findRedisServer();
if ('missing' in found) {
  describe('RedisJobStore, second store in another process', () => {
    it.skip(`skipped: ${found.missing}`, () => undefined);
  });
} else {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedisServer();
  });
  afterAll(async () => {
    await server?.dispose();
  });
  runJobStoreConformance('RedisJobStore, second store in another process', async ({ maxAttempts }) => {
    const url = `${server!.url}/0?prefix=mp${randomBytes(4).toString('hex')}`;
    return {
      store: new RedisJobStore({ url: new URL(url), maxAttempts }),
      openAnother: () => storeInChildProcess({ storageDir: tmpdir(), url, maxAttempts }),
      cleanup: async () => undefined,
    };
  });
}
