import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// A real redis-server for tests: on a free loopback port, in a folder of its own, stopped and
// removed by the test. Nothing is shared with a Redis the machine may already run.

/** The redis-server binary on PATH, or why there is none (tests skip with that reason). */
export function findRedisServer(): { path: string } | { missing: string } {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path ? { path } : { missing: 'redis-server is not installed (npm test installs it with apt-get as root: apt-get install redis-server)' };
}

export interface RedisServer {
  /** redis://127.0.0.1:<port> */
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

/** True once the server answers PING with PONG (not LOADING). */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      reply += data.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

/**
 * Starts redis-server on a free loopback port. `appendOnly` keeps every write in an append-only file
 * synced at each write, so a restart (even after SIGKILL) loses nothing. `port`: a port chosen
 * beforehand (freeLoopbackPort), e.g. one that workers were already pointed at.
 */
export async function startRedisServer(options: { appendOnly?: boolean; port?: number } = {}): Promise<RedisServer> {
  const found = findRedisServer();
  if ('missing' in found) throw new Error(found.missing);
  const dir = await mkdtemp(join(tmpdir(), 'avatar-redis-'));
  const port = options.port ?? (await freeLoopbackPort());
  let child: ChildProcess | undefined;
  let output = '';

  const start = async (): Promise<void> => {
    const args = [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--loglevel', 'warning',
      '--appendonly', options.appendOnly ? 'yes' : 'no', '--appendfsync', 'always',
    ];
    const started = spawn(found.path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    started.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
    started.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
    const deadline = Date.now() + 10_000;
    while (!(await pings(port))) {
      if (started.exitCode !== null || Date.now() > deadline) {
        started.kill('SIGKILL');
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
    running.kill(signal);
    await exited;
  };

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
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
