import { AvatarError, redactedUrl } from '@avatar/core';
import type { RedisOptions } from 'ioredis';

/** Where a Redis store lives, read from its URL: what ioredis connects with, and how it may be shown. */
export interface RedisTarget {
  options: RedisOptions;
  /** the URL with its password replaced: the only form that reaches a message or a log line */
  shown: string;
  /** the BullMQ key prefix: every key of this store starts with `<prefix>:jobs:` */
  prefix: string;
}

const PREFIX_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

function invalid(url: URL, problem: string, expected: string): AvatarError {
  return new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'store', problem, value: shownUrl(url), expected });
}

/** The URL as it may be shown: no password, and of its parameters only the prefix's value (another may be a secret). */
function shownUrl(url: URL): string {
  const copy = new URL(url.href);
  for (const key of [...copy.searchParams.keys()]) if (key !== 'prefix') copy.searchParams.set(key, '***');
  return redactedUrl(copy);
}

/**
 * `redis://[user:password@]host[:port][/db][?prefix=name]`, `rediss://` for TLS. The password comes
 * from the URL or, when it has none, from AVATAR_REDIS_PASSWORD.
 */
export function redisTarget(url: URL, env: NodeJS.ProcessEnv = process.env): RedisTarget {
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw invalid(url, `has the scheme ${url.protocol}`, 'Give redis://host:port[/db] or rediss:// for TLS.');
  }
  if (!url.hostname) throw invalid(url, 'names no host', 'Give redis://host:port[/db], e.g. redis://127.0.0.1:6379/0.');
  const port = url.port ? Number(url.port) : 6379;
  const dbText = url.pathname.replace(/^\/+/, '');
  if (dbText !== '' && !/^\d{1,2}$/.test(dbText)) throw invalid(url, `names the database "${dbText}"`, 'Give a database number after the port, e.g. redis://host:6379/0.');
  const prefix = url.searchParams.get('prefix') ?? 'avatar';
  if (!PREFIX_PATTERN.test(prefix)) throw invalid(url, 'has a prefix that is not a plain name', 'Use letters, digits, "_", "-" and "." (at most 64) in ?prefix=.');
  for (const key of url.searchParams.keys()) {
    if (key !== 'prefix') throw invalid(url, `has the unknown parameter "${key}"`, 'The only parameter is ?prefix=name.');
  }
  const password = url.password ? decodeURIComponent(url.password) : env.AVATAR_REDIS_PASSWORD || undefined;
  // IPv6 hosts come bracketed in a URL; sockets want them bare
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const options: RedisOptions = {
    host,
    port,
    db: dbText === '' ? 0 : Number(dbText),
    ...(url.username && { username: decodeURIComponent(url.username) }),
    ...(password !== undefined && { password }),
    ...(url.protocol === 'rediss:' && { tls: { servername: host } }),
  };
  return { options, shown: shownUrl(url), prefix };
}
