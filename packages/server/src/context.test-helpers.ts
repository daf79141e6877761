// Test support shared by the server's test files: a real storage folder, queue and coordinator with the
// given engines. Not part of the package (excluded from the build and from the published files).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { NoGpuProvider, PipelineCoordinator, PluginRegistry, ResourceManager, VoiceProfileStore, openJobStore } from '@avatar/core';
import type { AnyStagePlugin, JobStore } from '@avatar/core';
import { jobStores } from '@avatar/queue-redis';
import { DEFAULT_VOICE, flitePlugin } from '@avatar/tts';
import type { ServerContext } from './server.js';

export interface TestContext extends ServerContext {
  /** closes the store and removes the storage folder (unless it was given with keep) */
  cleanup(): Promise<void>;
}

export interface TestContextOptions {
  /** engines and the package each comes from; default: flite only */
  plugins?: readonly (readonly [AnyStagePlugin, string])[];
  /** an existing storage folder (default: a new temp folder named after the prefix) */
  storageDir?: string;
  /** leave the storage folder in place on cleanup (a test that restarts on the same folder) */
  keep?: boolean;
  /** the job store's URL, as given (default: AVATAR_TEST_STORE under a prefix of its own, else the file store) */
  storeUrl?: string;
}

export async function makeTestContext(prefix: string, options: TestContextOptions = {}): Promise<TestContext> {
  const storageDir = options.storageDir ?? await mkdtemp(join(tmpdir(), prefix));
  const registry = new PluginRegistry();
  for (const [plugin, from] of options.plugins ?? [[flitePlugin, '@avatar/tts'] as const]) registry.register(plugin, from);
  const resources = new ResourceManager({ gpu: new NoGpuProvider('no GPU in this test') });
  const voices = new VoiceProfileStore(storageDir);
  const store = options.storeUrl ? await openJobStore(options.storeUrl, { storageDir, kinds: jobStores }) : await testStore(storageDir);
  const coordinator = new PipelineCoordinator({ registry, resources, voices, storageDir, defaultVoice: DEFAULT_VOICE });
  return {
    storageDir, registry, store, coordinator,
    cleanup: async () => {
      await store.close();
      if (!options.keep) await rm(storageDir, { recursive: true, force: true });
    },
  };
}

/**
 * The file store in the storage folder; with AVATAR_TEST_STORE=redis://host:port, a Redis store under a
 * prefix of its own (the same suites run against every store: tests/server-on-redis.test.ts).
 */
export async function testStore(storageDir: string): Promise<JobStore> {
  const url = process.env.AVATAR_TEST_STORE;
  if (!url) return openJobStore(undefined, { storageDir });
  return openJobStore(`${url}/0?prefix=api${randomBytes(4).toString('hex')}`, { storageDir, kinds: jobStores });
}
