import { AvatarError } from '../errors.js';
import type { Logger } from '../log.js';
import { FileJobStore } from './file-store.js';
import type { JobStore } from './types.js';

/** What a store is opened with, whatever its kind. */
export interface JobStoreOpenOptions {
  /** the storage folder (the file store keeps its queue there) */
  storageDir: string;
  log?: Logger;
  /** a job whose worker vanished this many times is failed instead of re-queued (default 3) */
  maxAttempts?: number;
}

/**
 * A kind of job store other packages provide, chosen by a URL's scheme (`redis:`, `rediss:`): a store
 * package exports `jobStores: [...]` from its main module, and the registry that loads it registers
 * them (PluginRegistry.jobStores).
 */
export interface JobStoreKind {
  /** URL schemes it opens, with their colon: ['redis:', 'rediss:'] */
  schemes: readonly string[];
  /** the package it comes from, for messages */
  source?: string;
  open(url: URL, options: JobStoreOpenOptions): Promise<JobStore>;
}

/**
 * A store that could not be opened, for commands that may never need one: each use rejects with the
 * error that opening gave, so `avatar tts` works with a bad AVATAR_STORE and `avatar jobs list` says why not.
 */
export function unavailableStore(error: Error): JobStore {
  return new Proxy({} as JobStore, {
    get: (_target, name) => {
      if (name === 'close') return async () => undefined;
      if (typeof name !== 'string' || name === 'then') return undefined; // never taken for a promise
      return async () => {
        throw error;
      };
    },
  });
}

/** A URL as it may be shown: its password (and a user name with it) replaced, never logged. */
export function redactedUrl(url: URL): string {
  if (!url.password && !url.username) return url.href;
  const copy = new URL(url.href);
  copy.username = copy.username ? '***' : '';
  copy.password = copy.password ? '***' : '';
  return copy.href;
}

/**
 * The job store a URL names (`--store`, AVATAR_STORE): none, "file" or "file:" is the file store in the
 * storage folder, the default; another scheme is opened by the installed store kind for it.
 */
export async function openJobStore(spec: string | undefined, options: JobStoreOpenOptions & { kinds?: readonly JobStoreKind[] }): Promise<JobStore> {
  const trimmed = spec?.trim() ?? '';
  const file = (): JobStore => new FileJobStore({ storageDir: options.storageDir, ...(options.log && { log: options.log }), ...(options.maxAttempts !== undefined && { maxAttempts: options.maxAttempts }) });
  if (trimmed === '' || trimmed === 'file' || trimmed === 'file:') return file();
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    // (whatever stands between "//" and the last "@" may be a password: never shown)
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'store', problem: 'is not a URL', value: trimmed.replace(/\/\/.*@/, '//***@'), expected: 'Give redis://host:port[/db], or leave it out for the file store in the storage folder.' });
  }
  const kind = (options.kinds ?? []).find((k) => k.schemes.includes(url.protocol));
  if (!kind) {
    const known = ['file:', ...(options.kinds ?? []).flatMap((k) => k.schemes)].join(', ');
    throw new AvatarError('AVATAR_ERR_STORE_UNSUPPORTED', { scheme: url.protocol, url: redactedUrl(url), known });
  }
  return kind.open(url, options);
}
