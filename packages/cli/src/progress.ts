import { createRequire } from 'node:module';
import type CliProgress from 'cli-progress';

/** cli-progress, loaded for a terminal only: 12 ms of a run's start that plain lines do without. */
const loadCliProgress = (): typeof CliProgress => createRequire(import.meta.url)('cli-progress') as typeof CliProgress;

function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export interface ProgressSink {
  update(fraction: number, stage: string, detail?: string): void;
  stop(): void;
}

/**
 * A bar with the stage name and ETA on a terminal; plain lines (one as each stage starts) otherwise, so logs
 * and CI output stay readable. Everything goes to stderr: stdout carries the result.
 */
export function createProgress(enabled: boolean): ProgressSink {
  if (!enabled) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const cliProgress = loadCliProgress();
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      // no ETA until there is progress to estimate from (the library would print "NaN" or "inf")
      format: (options, params, payload: { stage?: string }) => {
        const size = options.barsize ?? 30;
        const filled = Math.round(params.progress * size);
        const bar = `${'█'.repeat(filled)}${'░'.repeat(size - filled)}`;
        const eta = params.progress > 0.02 && Number.isFinite(params.eta) ? `ETA ${formatSeconds(params.eta)}` : 'ETA …';
        return `${payload.stage ?? ''} |${bar}| ${Math.round(params.progress * 100)}% | ${eta}`;
      },
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
    }, cliProgress.Presets.shades_classic);
    let started = false;
    return {
      update(fraction, stage) {
        if (!started) {
          bar.start(100, 0, { stage });
          started = true;
        }
        bar.update(Math.round(fraction * 1000) / 10, { stage });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  // one line as each stage starts: stages that run side by side (the inspection beside the encode)
  // take turns reporting, which would otherwise print a line at every turn
  const seen = new Set<string>();
  const started = performance.now();
  return {
    update(fraction, stage) {
      if (seen.has(stage)) return;
      seen.add(stage);
      const t = ((performance.now() - started) / 1000).toFixed(1);
      process.stderr.write(`[${t}s] ${stage} (${Math.round(fraction * 100)}%)\n`);
    },
    stop() {},
  };
}
