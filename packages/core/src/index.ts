export * from './errors.js';
export * from './jobs.js';
export * from './json-depth.js';
export * from './log.js';
export * from './fsutil.js';
export * from './cache-dir.js';
export * from './child-guard.js';
export * from './child-kill.js';
export * from './tools.js';
export * from './leftovers.js';
export * from './storage-check.js';
export * from './media.js';
export * from './captions.js';
export * from './align.js';
export * from './container.js';
export * from './hls.js';
export * from './config.js';
export * from './engines.js';
export * from './plugin-options.js';
export * from './plugin.js';
export * from './regions.js';
export * from './gpu.js';
export * from './resources.js';
export * from './registry.js';
export * from './plugin-info.js';
export * from './voices.js';
export * from './coordinator.js';
export * from './job-params.js';
export * from './handlers.js';
export * from './job-checks.js';
export * from './store/types.js';
// the job lifecycle every store shares (store/lifecycle.ts)
export {
  abandonedJob, cancelledJob, checkJobRecord, clampProgress, claimedJob, completedJob, failedJob, jobStats, newJob, newestFirst, progressedJob, releasedJob, requeuedJob, selectJobs,
} from './store/lifecycle.js';
export * from './store/file-store.js';
export * from './store/open.js';
export * from './worker.js';
