import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killChild } from '@avatar/core';

// A real redis-server for tests: on a free loopback port, in a folder of its own, stopped and
// removed by the test. Nothing is shared with a Redis the machine may already run.

/** The redis-server binary on PATH, or why there is none (tests skip with that reason). */
export function findRedisServer(): { path: string } | { missing: string } {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path ? { path } : { missing: 'redis-server is not installed (npm test installs it with apt-get as root: apt-get install redis-server)' };
}

export interface RedisServer {
  /** redis://127.0.0.1:<port>, or rediss://localhost:<port> with TLS */
  readonly url: string;
  readonly port: number;
  /** its working folder (the append-only file lives here) */
  readonly dir: string;
  readonly pid: number | undefined;
  /** stops it: SIGTERM saves and exits cleanly; SIGKILL is a crash */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** starts it again on the same port and folder (with appendonly, the data come back) */
  start(): Promise<void>;
  /** stops it and removes its folder */
  dispose(): Promise<void>;
}

/** A loopback port nothing listens on now. */
export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Files of a TLS set-up: the server's certificate and key, and the CA that signed it. */
export interface RedisTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** True once the server answers PING with PONG (not LOADING); over TLS when `tls` is given. */
function pings(port: number, tls?: RedisTls): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(tls.caFile), servername: 'localhost' })
      : createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once(tls ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      // (a server with a password answers NOAUTH: it is up all the same)
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

/**
 * Starts redis-server on a free loopback port. `appendOnly` keeps every write in an append-only file
 * synced at each write, so a restart (even after SIGKILL) loses nothing. `port`: a port chosen
 * beforehand (freeLoopbackPort), e.g. one that workers were already pointed at. `tls`: it speaks
 * only TLS (rediss://localhost:<port>); `password`: it asks for one.
 */
export async function startRedisServer(options: { appendOnly?: boolean; port?: number; tls?: RedisTls; password?: string } = {}): Promise<RedisServer> {
  const found = findRedisServer();
  if ('missing' in found) throw new Error(found.missing);
  const dir = await mkdtemp(join(tmpdir(), 'avatar-redis-'));
  const port = options.port ?? (await freeLoopbackPort());
  let child: ChildProcess | undefined;
  let output = '';

  const start = async (): Promise<void> => {
    const tls = options.tls;
    const args = [
      ...(tls
        ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', tls.certFile, '--tls-key-file', tls.keyFile, '--tls-ca-cert-file', tls.caFile, '--tls-auth-clients', 'no']
        : ['--port', String(port)]),
      '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--loglevel', 'warning',
      '--appendonly', options.appendOnly ? 'yes' : 'no', '--appendfsync', 'always',
      ...(options.password ? ['--requirepass', options.password] : []),
    ];
    const started = spawn(found.path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    started.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
    started.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
    const deadline = Date.now() + 10_000;
    while (!(await pings(port, options.tls))) {
      if (started.exitCode !== null || Date.now() > deadline) {
        killChild(started, 'SIGKILL');
        throw new Error(`redis-server did not start on port ${port}: ${output}`);
      }
      await sleep(20);
    }
  };

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    killChild(running, signal);
    await exited;
  };

  await start();
  return {
    url: options.tls ? `rediss://localhost:${port}` : `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid;
    },
    stop,
    start,
    async dispose() {
      await stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A CA and a server certificate for localhost and 127.0.0.1 made with openssl in `dir`, for a TLS
 * test; undefined (with the reason) where openssl is not installed.
 */
export function makeTestCertificates(dir: string): RedisTls | { missing: string } {
  const run = (args: string[]): boolean => spawnSync('openssl', args, { cwd: dir, stdio: 'ignore' }).status === 0;
  if (spawnSync('sh', ['-c', 'command -v openssl'], { stdio: 'ignore' }).status !== 0) return { missing: 'openssl is not installed' };
  const ok = run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=avatar test CA'])
    && run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost'])
    && run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', writeExt(dir)]);
  return ok ? { certFile: join(dir, 'server.pem'), keyFile: join(dir, 'server.key'), caFile: join(dir, 'ca.pem') } : { missing: 'openssl could not make the test certificates' };
}

function writeExt(dir: string): string {
  const path = join(dir, 'ext.cnf');
  writeFileSync(path, 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  return path;
}
