import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRedisServer, makeTestCertificates, startRedisServer, type RedisServer, type RedisTls } from '@avatar/queue-redis/testing';
import { avatar } from './helpers/cli.js';

// rediss:// end to end: the CLI talks to a redis-server that only speaks TLS, with a password, and
// trusts its certificate through Node's own NODE_EXTRA_CA_CERTS; without that trust it says why.

const found = findRedisServer();
const work = await mkdtemp(join(tmpdir(), 'avatar-redis-tls-'));
const certificates: RedisTls | { missing: string } = 'missing' in found ? found : makeTestCertificates(work);

if ('missing' in certificates) {
  describe('the Redis store over TLS', () => {
    it.skip(`skipped: ${certificates.missing}`, () => undefined);
  });
  afterAll(() => rm(work, { recursive: true, force: true }));
} else {
  describe('the Redis store over TLS', () => {
    let server: RedisServer;
    beforeAll(async () => {
      server = await startRedisServer({ tls: certificates, password: 'over-tls-secret' });
    });
    afterAll(async () => {
      await server?.dispose();
      await rm(work, { recursive: true, force: true });
    });

    it('submits and lists over rediss:// with the password from AVATAR_REDIS_PASSWORD; an untrusted certificate is named', async () => {
      const url = `${server.url}/0?prefix=tls`;
      const env = { AVATAR_STORAGE: join(work, 'storage'), AVATAR_REDIS_PASSWORD: 'over-tls-secret', NODE_EXTRA_CA_CERTS: certificates.caFile };
      const submitted = await avatar(['--store', url, '--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Over TLS.'], { env });
      expect(submitted.code, submitted.stderr).toBe(0);
      const id = (JSON.parse(submitted.stdout) as { jobId: string }).jobId;
      const listed = await avatar(['--store', url, 'jobs', 'list'], { env });
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain(id);

      const untrusted = await avatar(['--store', url, 'jobs', 'list'], { env: { ...env, NODE_EXTRA_CA_CERTS: '' } });
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(/AVATAR_ERR_STORE_UNAVAILABLE: the job store at rediss:\/\/localhost:\d+\/0\?prefix=tls does not answer: self-signed certificate/);
      const noPassword = await avatar(['--store', url, 'jobs', 'list'], { env: { ...env, AVATAR_REDIS_PASSWORD: '' } });
      expect(noPassword.code).toBe(1);
      expect(noPassword.stderr).toMatch(/AVATAR_ERR_STORE_UNAVAILABLE: .* (NOAUTH|Authentication required)/i);
      for (const run of [submitted, listed, untrusted, noPassword]) expect(run.stderr + run.stdout).not.toContain('over-tls-secret');
    });
  });
}
