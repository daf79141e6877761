import { AvatarError, isAvatarError, toAvatarError } from '@avatar/core';
import type { Logger } from '@avatar/core';

export interface Output {
  json: boolean;
  /** stdout carries a video (`--output -`): results go to stderr */
  stdoutTaken: boolean;
  /** machine-readable or human text on stdout */
  result(value: unknown, human: () => string): void;
  /** human notes on stderr (never mixed into --json output) */
  note(text: string): void;
  error(error: unknown): number;
}

/**
 * Results on stdout, notes and errors on stderr; `stdoutTaken` (a command writing its video to stdout,
 * `--output -`) puts the results on stderr too, so nothing but the video reaches stdout.
 */
export function createOutput(json: boolean, { stdoutTaken = false }: { stdoutTaken?: boolean } = {}): Output {
  const results = stdoutTaken ? process.stderr : process.stdout;
  return {
    json,
    stdoutTaken,
    result(value, human) {
      results.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
    },
    note(text) {
      process.stderr.write(`${text}\n`);
    },
    error(thrown) {
      const error = isAvatarError(thrown) ? thrown : toAvatarError(thrown);
      if (json) results.write(`${JSON.stringify({ error: error.toJSON() }, null, 2)}\n`);
      process.stderr.write(`error ${error.code}: ${error.message}\n  ${error.hint}\n`);
      if (process.env.AVATAR_DEBUG && error.cause instanceof Error) process.stderr.write(`${error.cause.stack}\n`);
      return error.exitCode;
    },
  };
}

/**
 * Log lines on stderr: warnings always, the rest with --verbose. Errors too only with --verbose
 * by default, since a command prints its own failure once more with its hint; `errors: 'always'` for
 * services, whose log is where a failure is read.
 */
export function createLogger(verbose: boolean, options: { errors?: 'always' | 'verbose' } = {}): Logger {
  const errors = verbose || options.errors === 'always';
  const line = (level: string, message: string, fields?: Record<string, unknown>): void => {
    process.stderr.write(`${level} ${message}${describeFields(fields)}\n`);
  };
  return {
    debug: (m, f) => { if (verbose) line('debug', m, f); },
    info: (m, f) => { if (verbose) line('info', m, f); },
    warn: (m, f) => line('warning', m, f),
    error: (m, f) => { if (errors) line('error', m, f); },
  };
}

/** A log line's fields as ` (key value, ...)`: what a reader needs to act on (a cause, a code, an id). */
function describeFields(fields: Record<string, unknown> | undefined): string {
  if (!fields) return '';
  const parts = Object.entries(fields)
    .filter(([, value]) => value !== undefined && value !== null && value !== '')
    .map(([key, value]) => `${key} ${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}
