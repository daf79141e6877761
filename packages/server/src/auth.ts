import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { AvatarError } from '@avatar/core';

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** API keys from a comma-separated list (AVATAR_API_KEYS); blanks dropped. */
export function parseApiKeys(raw: string | undefined): string[] {
  return (raw ?? '').split(',').map((k) => k.trim()).filter((k) => k.length > 0);
}

/**
 * Checks bearer tokens against the configured keys. Keys and tokens are compared as SHA-256
 * digests (equal length, so timingSafeEqual applies) and every key is compared every time, so
 * the time taken says nothing about how close a guess was or which key matched.
 */
export class ApiKeyChecker {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** true when the Authorization header carries one of the keys */
  check(header: string | undefined): boolean {
    if (typeof header !== 'string') return false;
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    const given = digest(match?.[1] ?? '');
    let ok = false;
    for (const key of this.digests) ok = timingSafeEqual(key, given) || ok;
    return ok && match !== null;
  }
}

/** Loopback names and addresses: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h.startsWith('::ffff:127.');
  return false;
}

/** Serving beyond loopback without keys would hand the machine's storage to anyone: refuse. */
export function assertSafeListen(host: string, keys: readonly string[]): void {
  if (!isLoopback(host) && keys.length === 0) throw new AvatarError('AVATAR_ERR_HTTP_LISTEN_UNSAFE', { host });
}
