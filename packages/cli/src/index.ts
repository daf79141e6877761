export { main, buildProgram } from './main.js';
export { openContext } from './context.js';
export type { CliContext, ContextOptions } from './context.js';
