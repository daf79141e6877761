import { describe, expect, it } from 'vitest';
import { AvatarError } from '@avatar/core';
import { redisTarget } from './connection.js';

describe('redisTarget', () => {
  it('reads host, port, database and prefix; the file store default port and database', () => {
    expect(redisTarget(new URL('redis://queue.internal:6380/2?prefix=staging'), {})).toMatchObject({
      options: { host: 'queue.internal', port: 6380, db: 2 },
      prefix: 'staging',
      shown: 'redis://queue.internal:6380/2?prefix=staging',
    });
    const plain = redisTarget(new URL('redis://127.0.0.1'), {});
    expect(plain.options).toEqual({ host: '127.0.0.1', port: 6379, db: 0 });
    expect(plain.prefix).toBe('avatar');
    expect(redisTarget(new URL('redis://[::1]:7000'), {}).options.host).toBe('::1');
  });

  it('takes the password from the URL, else from AVATAR_REDIS_PASSWORD, and never shows it', () => {
    const fromUrl = redisTarget(new URL('redis://worker:s%40cret@10.0.0.5:6379/0'), { AVATAR_REDIS_PASSWORD: 'other' });
    expect(fromUrl.options).toMatchObject({ username: 'worker', password: 's@cret' });
    expect(fromUrl.shown).not.toContain('s%40cret');
    expect(fromUrl.shown).toBe('redis://***:***@10.0.0.5:6379/0');
    const fromEnv = redisTarget(new URL('redis://10.0.0.5'), { AVATAR_REDIS_PASSWORD: 'from-env' });
    expect(fromEnv.options.password).toBe('from-env');
    expect(fromEnv.shown).not.toContain('from-env');
  });

  it('turns TLS on for rediss:// with the host as the server name', () => {
    expect(redisTarget(new URL('rediss://redis.example.com:6380'), {}).options.tls).toEqual({ servername: 'redis.example.com' });
    expect(redisTarget(new URL('redis://redis.example.com'), {}).options.tls).toBeUndefined();
  });

  it('refuses what it cannot use, naming the part and never the password', () => {
    for (const [url, problem] of [
      ['redis://h/zero', 'names the database'],
      ['redis://h/0?queue=x', 'unknown parameter "queue"'],
      ['redis://h/0?password=topsecret', 'unknown parameter "password"'],
      ['redis://h/0?prefix=a:b', 'prefix'],
      ['http://h', 'scheme http:'],
    ] as const) {
      let caught: unknown;
      try {
        redisTarget(new URL(url.replace('//h', '//user:topsecret@h')), {});
      } catch (error) {
        caught = error;
      }
      expect(caught, url).toBeInstanceOf(AvatarError);
      expect((caught as AvatarError).code).toBe('AVATAR_ERR_CONFIG_INVALID');
      expect((caught as AvatarError).message).toContain(problem);
      expect((caught as AvatarError).message).not.toContain('topsecret');
    }
  });
});
