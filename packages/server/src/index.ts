export { buildServer, startServer } from './server.js';
export type { RunningServer, ServerContext, ServerOptions, StartOptions } from './server.js';
export { ApiKeyChecker, assertSafeListen, isLoopback, parseApiKeys } from './auth.js';
export { contentTypeFor, parseRange } from './files.js';
export type { RangeAnswer } from './files.js';
