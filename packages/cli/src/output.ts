import { AvatarError, toAvatarError } from '@avatar/core';
import type { Logger } from '@avatar/core';

export interface Output {
  json: boolean;
  /** machine-readable or human text on stdout */
  result(value: unknown, human: () => string): void;
  /** human notes on stderr (never mixed into --json output) */
  note(text: string): void;
  error(error: unknown): number;
}

export function createOutput(json: boolean): Output {
  return {
    json,
    result(value, human) {
      process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
    note(text) {
      process.stderr.write(`${text}\n`);
    },
    error(thrown) {
      const error = thrown instanceof AvatarError ? thrown : toAvatarError(thrown);
      if (json) process.stdout.write(`${JSON.stringify({ error: error.toJSON() }, null, 2)}\n`);
      process.stderr.write(`error ${error.code}: ${error.message}\n  ${error.hint}\n`);
      if (error.code === 'AVATAR_ERR_INTERNAL' && process.env.AVATAR_DEBUG && error.cause instanceof Error) process.stderr.write(`${error.cause.stack}\n`);
      return error.exitCode;
    },
  };
}

/** Log lines on stderr: warnings always, the rest with --verbose. */
export function createLogger(verbose: boolean): Logger {
  const line = (level: string, message: string): void => {
    process.stderr.write(`${level} ${message}\n`);
  };
  return {
    debug: (m) => { if (verbose) line('debug', m); },
    info: (m) => { if (verbose) line('info', m); },
    warn: (m) => line('warning', m),
    error: (m) => { if (verbose) line('error', m); },
  };
}
