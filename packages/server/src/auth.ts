import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
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
    return this.match(header) >= 0;
  }

  /**
   * A name for the key the header carries, the same on every server that has the key whatever its
   * other keys (the first 16 hex digits of its SHA-256: never the key), or undefined for none.
   */
  bucket(header: string | undefined): string | undefined {
    const i = this.match(header);
    return i < 0 ? undefined : this.digests[i]!.toString('hex').slice(0, 16);
  }

  /** which key the Authorization header carries (its index), or -1; same constant-time comparison */
  match(header: string | undefined): number {
    if (typeof header !== 'string') return -1;
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    const given = digest(match?.[1] ?? '');
    let found = -1;
    this.digests.forEach((key, i) => {
      if (timingSafeEqual(key, given) && found < 0) found = i;
    });
    return match === null ? -1 : found;
  }
}

/**
 * API keys from a file: one per line, blank lines and `#` comments skipped. A file that cannot be
 * read, or holds no key, stops the server at start (AVATAR_ERR_HTTP_API_KEYS_FILE) rather than
 * letting it run with fewer keys than meant.
 */
export function readApiKeysFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : String(code ?? error);
    throw new AvatarError('AVATAR_ERR_HTTP_API_KEYS_FILE', { path, reason });
  }
  const keys = text.split(/\r?\n/).map((line) => line.replace(/(^|\s)#.*$/, '').trim()).filter((line) => line.length > 0);
  const spaced = keys.find((k) => /\s/.test(k));
  if (spaced !== undefined) throw new AvatarError('AVATAR_ERR_HTTP_API_KEYS_FILE', { path, reason: 'a line holds more than one word; put one key per line' });
  if (keys.length === 0) throw new AvatarError('AVATAR_ERR_HTTP_API_KEYS_FILE', { path, reason: 'it holds no key' });
  return keys;
}

/**
 * The keys a server uses: `apiKeys` (default AVATAR_API_KEYS) together with those of `apiKeysFile`
 * (default AVATAR_API_KEYS_FILE).
 */
export function resolveApiKeys(options: { apiKeys?: readonly string[]; apiKeysFile?: string }, env: NodeJS.ProcessEnv = process.env): string[] {
  const listed = options.apiKeys ?? parseApiKeys(env.AVATAR_API_KEYS);
  const file = options.apiKeysFile ?? (env.AVATAR_API_KEYS_FILE || undefined);
  return [...new Set([...listed, ...(file === undefined ? [] : readApiKeysFile(file))])];
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
