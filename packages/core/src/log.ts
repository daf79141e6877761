export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Collects entries in memory; for tests and for reports. */
export class MemoryLogger implements Logger {
  readonly entries: { level: LogLevel; message: string; fields?: Record<string, unknown> }[] = [];
  debug(message: string, fields?: Record<string, unknown>): void { this.entries.push({ level: 'debug', message, ...(fields && { fields }) }); }
  info(message: string, fields?: Record<string, unknown>): void { this.entries.push({ level: 'info', message, ...(fields && { fields }) }); }
  warn(message: string, fields?: Record<string, unknown>): void { this.entries.push({ level: 'warn', message, ...(fields && { fields }) }); }
  error(message: string, fields?: Record<string, unknown>): void { this.entries.push({ level: 'error', message, ...(fields && { fields }) }); }
}
