import cliProgress from 'cli-progress';

export interface ProgressSink {
  update(fraction: number, stage: string, detail?: string): void;
  stop(): void;
}

/**
 * A bar with the stage name and ETA on a terminal; plain lines (one per stage change) otherwise, so logs
 * and CI output stay readable. Everything goes to stderr: stdout carries the result.
 */
export function createProgress(enabled: boolean): ProgressSink {
  if (!enabled) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream: process.stderr,
      format: '{stage} |{bar}| {percentage}% | ETA {eta_formatted}',
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
  let last = '';
  const started = performance.now();
  return {
    update(fraction, stage) {
      if (stage === last) return;
      last = stage;
      const t = ((performance.now() - started) / 1000).toFixed(1);
      process.stderr.write(`[${t}s] ${stage} (${Math.round(fraction * 100)}%)\n`);
    },
    stop() {},
  };
}
