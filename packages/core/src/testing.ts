/**
 * Test helpers for code built on @avatar/core; imports vitest, so it lives apart from the main entry.
 * A JobStore implementation proves itself with `runJobStoreConformance(name, factory)`, a stage plugin
 * with `runStagePluginConformance(plugin, { input })`.
 */
export { runJobStoreConformance } from './store/conformance.js';
export type { ConformanceOptions, ConformanceStore, JobStoreFactory } from './store/conformance.js';
export { pngDeclaring } from './fixtures.js';
export { runStagePluginConformance } from './plugin-conformance.js';
export type { StageConformanceOptions } from './plugin-conformance.js';
