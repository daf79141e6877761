import type { Command } from 'commander';
import { parseIntIn, parseNumberIn, withContext } from '../shared.js';

/** `--concurrency`: a whole number from 1 to 64, or `auto` (from the resource budget). */
function parseConcurrency(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  return parseIntIn('concurrency', 1, 64)(value);
}

export function registerServe(program: Command): void {
  program.command('serve')
    .description('serve the HTTP API (see docs/http-api.md); keys from AVATAR_API_KEYS or --api-keys-file. SIGTERM or Ctrl-C stops cleanly: a running job goes back to the queue.')
    .option('--host <host>', 'address to listen on; beyond loopback, API keys must be set', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0 picks a free one)', parseIntIn('port', 0, 65535), 8080)
    .option('--no-worker', 'only take and serve jobs; separate "avatar worker" processes run them')
    .option('--api-keys-file <path>', 'API keys, one per line, # comments (default AVATAR_API_KEYS_FILE); joined with AVATAR_API_KEYS')
    .option('--concurrency <n|auto>', 'jobs the in-process worker runs at once; auto: from the resource budget', parseConcurrency, 1)
    .option('--grace <seconds>', 'on shutdown, how long a running job may finish before it goes back to the queue', parseNumberIn('grace', 0, 3600), 0)
    .option('--rate-limit <n>', 'requests per minute per API key (per address without keys); 0: no limit (default AVATAR_RATE_LIMIT or 600)', parseIntIn('rate-limit', 0, 1_000_000))
    .option('--cors-origin <origins>', 'comma-separated browser origins allowed to call the API, or * (default AVATAR_CORS_ORIGINS; none: no CORS)')
    // the same ranges as the AVATAR_UPLOAD_* variables (UPLOAD_LIMIT_SETTINGS in @avatar/server)
    .option('--max-photo-mb <n>', 'largest photo upload, MiB (default AVATAR_UPLOAD_MAX_PHOTO_MB or 20)', parseNumberIn('max-photo-mb', 0.01, 1024))
    .option('--max-audio-mb <n>', 'largest audio upload, MiB (default AVATAR_UPLOAD_MAX_AUDIO_MB or 50)', parseNumberIn('max-audio-mb', 0.01, 2048))
    .option('--max-pixels <megapixels>', 'most pixels an uploaded photo may have, megapixels (default AVATAR_UPLOAD_MAX_PIXELS or 40)', parseNumberIn('max-pixels', 0.01, 1000))
    .option('--max-audio-seconds <n>', 'longest audio upload, seconds as decoded (default AVATAR_UPLOAD_MAX_AUDIO_SECONDS or 120)', parseIntIn('max-audio-seconds', 1, 3600))
    .action(async (flags: ServeFlags, command: Command) => {
      await withContext(command, { service: true }, async (ctx, out) => {
        // loaded here, not at start: the server's modules would slow every other command's start
        const { parseCorsOrigins, parseRateLimit, startServer, uploadLimitsFromSettings } = await import('@avatar/server');
        // flags win over the AVATAR_UPLOAD_* variables, one limit at a time (the server reads those)
        const uploads = uploadLimitsFromSettings({
          ...(flags.maxPhotoMb !== undefined && { maxPhotoMb: flags.maxPhotoMb }),
          ...(flags.maxAudioMb !== undefined && { maxAudioMb: flags.maxAudioMb }),
          ...(flags.maxPixels !== undefined && { maxPixels: flags.maxPixels }),
          ...(flags.maxAudioSeconds !== undefined && { maxAudioSeconds: flags.maxAudioSeconds }),
        });
        const server = await startServer({
          context: ctx, host: flags.host, port: flags.port, worker: flags.worker, handleSignals: true,
          concurrency: flags.concurrency, shutdownGraceMs: Math.round(flags.grace * 1000),
          ...(flags.apiKeysFile !== undefined && { apiKeysFile: flags.apiKeysFile }),
          // the server's own parsers: a flag means what the matching environment variable means
          ...(flags.rateLimit !== undefined && { rateLimit: parseRateLimit(String(flags.rateLimit), '--rate-limit') }),
          ...(flags.corsOrigin !== undefined && { corsOrigins: parseCorsOrigins(flags.corsOrigin) }),
          uploads,
        });
        out.note(`serving ${server.url} (storage ${ctx.storageDir}; ${flags.worker ? `jobs run in this process, concurrency ${flags.concurrency}` : 'no worker in this process'})`);
        if (out.json) process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);
        await server.closed;
        out.note('server stopped');
        return 0;
      });
    });
}

interface ServeFlags {
  host: string;
  port: number;
  worker: boolean;
  apiKeysFile?: string;
  concurrency: number | 'auto';
  grace: number;
  rateLimit?: number;
  corsOrigin?: string;
  maxPhotoMb?: number;
  maxAudioMb?: number;
  maxPixels?: number;
  maxAudioSeconds?: number;
}
