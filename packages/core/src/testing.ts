/**
 * Test helpers for code built on @avatar/core; imports vitest, so it lives apart from the main entry.
 * A JobStore implementation proves itself with `runJobStoreConformance(name, factory)`.
 */
export { runJobStoreConformance } from './store/conformance.js';
export type { ConformanceOptions, ConformanceStore, JobStoreFactory } from './store/conformance.js';
export { pngDeclaring } from './fixtures.js';
