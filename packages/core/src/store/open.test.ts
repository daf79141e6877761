import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAvatarError } from '../errors.js';
import { PluginRegistry } from '../registry.js';
import { FileJobStore } from './file-store.js';
import { openJobStore, redactedUrl } from './open.js';
import type { JobStoreKind } from './open.js';

describe('choosing the job store', () => {
  it('opens the file store in the storage folder by default', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-open-'));
    for (const spec of [undefined, '', 'file', 'file:']) {
      const store = await openJobStore(spec, { storageDir });
      expect(store).toBeInstanceOf(FileJobStore);
      await store.close();
    }
  });

  it('opens a store kind a package registers, by its URL scheme', async () => {
    const storageDir = await mkdtemp(join(tmpdir(), 'avatar-open-'));
    const opened: string[] = [];
    const kind: JobStoreKind = {
      schemes: ['memo:'],
      async open(url, options) {
        opened.push(url.host);
        return new FileJobStore({ storageDir: join(options.storageDir, url.host) });
      },
    };
    const registry = new PluginRegistry();
    expect(registry.registerModule({ jobStores: [kind] }, 'acme-store@1.0.0')).toBe(0);
    const store = await openJobStore('memo://queue-a', { storageDir, kinds: registry.jobStores });
    const job = await store.submit('voice_synthesis', { text: 'Hi' });
    expect((await store.get(job.jobId))?.status).toBe('pending');
    expect(opened).toEqual(['queue-a']);
    await store.close();
  });

  it('refuses a store nobody installed, without showing its password', async () => {
    const error = await openJobStore('redis://worker:s3cret@queue.example:6379/2', { storageDir: '/nonexistent' }).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_STORE_UNSUPPORTED')).toBe(true);
    expect((error as Error).message).toBe('no job store for redis: URLs is installed (redis://***:***@queue.example:6379/2); this one opens: file:');
    expect((error as Error).message).not.toContain('s3cret');
    expect(redactedUrl(new URL('redis://h:1/0'))).toBe('redis://h:1/0');
    const bad = await openJobStore('not a url', { storageDir: '/nonexistent' }).catch((e: unknown) => e);
    expect(isAvatarError(bad, 'AVATAR_ERR_CONFIG_INVALID')).toBe(true);
  });
});
