import type { JobStore, JobStoreKind, JobStoreOpenOptions } from '@avatar/core';

export type { RedisJobStoreOptions } from './store.js';
export { redisTarget, type RedisTarget } from './connection.js';

/**
 * The store kind the plugin registry finds in this package: `--store redis://host:port[/db]` (or
 * rediss:// for TLS). BullMQ is loaded only when such a URL is opened, so a CLI run that keeps the
 * file store pays nothing for it.
 */
export const jobStores: JobStoreKind[] = [
  {
    schemes: ['redis:', 'rediss:'],
    source: '@avatar/queue-redis',
    async open(url: URL, options: JobStoreOpenOptions): Promise<JobStore> {
      const { openRedisJobStore } = await import('./store.js');
      return openRedisJobStore(url, { ...(options.log && { log: options.log }), ...(options.maxAttempts !== undefined && { maxAttempts: options.maxAttempts }) });
    },
  },
];

