import type { Command } from 'commander';
import { startServer } from '@avatar/server';
import { parseIntIn, withContext } from '../shared.js';

export function registerServe(program: Command): void {
  program.command('serve')
    .description('serve the HTTP API (see docs/http-api.md); keys from AVATAR_API_KEYS. SIGTERM or Ctrl-C stops cleanly: a running job goes back to the queue.')
    .option('--host <host>', 'address to listen on; beyond loopback, AVATAR_API_KEYS must be set', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 picks a free one)', parseIntIn('port', 0, 65535), 8080)
    .option('--no-worker', 'only take and serve jobs; separate "avatar worker" processes run them')
    .action(async (flags: { host: string; port: number; worker: boolean }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const server = await startServer({ context: ctx, host: flags.host, port: flags.port, worker: flags.worker, handleSignals: true });
        out.note(`serving ${server.url} (storage ${ctx.storageDir}; ${flags.worker ? 'jobs run in this process' : 'no worker in this process'})`);
        if (out.json) process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);
        await server.closed;
        out.note('server stopped');
        return 0;
      });
    });
}
