import type { AvatarErrorJSON } from '../errors.js';
import { AvatarError } from '../errors.js';
import type { Job, JobParams, JobResult, JobStatus, JobType } from '../jobs.js';
import { JOB_STATUSES, JOB_TYPES, isJobId, isJobStatus, isJobType, newJobId, runSeconds } from '../jobs.js';
import type { JobStats, ListFilter } from './types.js';

// The job lifecycle, the same for every store: what a job record must hold, each state change as a
// pure function of the record, and list filtering, ordering, paging and stats. A store adds only how it
// keeps records, claims and leases (file-store.ts: files, markers, locks; a Redis store: its own).

export const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/** The path of the first value that is not JSON (undefined, function, NaN, Date...), or undefined. */
export function firstNonJson(value: unknown, path: string, depth = 0): string | undefined {
  if (depth > 64) return path;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const bad = firstNonJson(value[i], `${path}[${i}]`, depth + 1);
      if (bad) return bad;
    }
    return undefined;
  }
  if (isPlainObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      const bad = firstNonJson(item, `${path}.${key}`, depth + 1);
      if (bad) return bad;
    }
    return undefined;
  }
  return path;
}

const isStringOrNull = (v: unknown): boolean => v === null || typeof v === 'string';
const isObjectOrNull = (v: unknown): boolean => v === null || isPlainObject(v);

/** A stored job record checked field by field; a string says why it is not a job. */
export function checkJobRecord(value: unknown, expectedId: string): Job | string {
  if (!isPlainObject(value)) return 'not a JSON object';
  const v = value;
  if (typeof v.jobId !== 'string' || !isJobId(v.jobId)) return 'jobId missing or malformed';
  if (v.jobId !== expectedId) return `jobId ${v.jobId} does not match the file name`;
  if (typeof v.status !== 'string' || !isJobStatus(v.status)) return 'status missing or unknown';
  if (typeof v.jobType !== 'string' || !isJobType(v.jobType)) return 'jobType missing or unknown';
  if (!isPlainObject(v.params)) return 'params is not an object';
  if (typeof v.createdAt !== 'string' || Number.isNaN(Date.parse(v.createdAt))) return 'createdAt is not a date';
  if (!isStringOrNull(v.startedAt) || !isStringOrNull(v.completedAt)) return 'startedAt/completedAt malformed';
  if (!isObjectOrNull(v.result) || !isObjectOrNull(v.error)) return 'result/error malformed';
  if (typeof v.progress !== 'number' || typeof v.attempts !== 'number') return 'progress/attempts not numbers';
  if (!isStringOrNull(v.stage) || !isStringOrNull(v.workerId)) return 'stage/workerId malformed';
  return value as unknown as Job;
}

/**
 * A new pending job, its type and params checked (AVATAR_ERR_JOB_TYPE_UNKNOWN, AVATAR_ERR_JOB_PARAMS_INVALID);
 * the params are copied, so later changes to the caller's object do not reach the queue.
 */
export function newJob(jobType: JobType, params: JobParams, now = new Date()): Job {
  if (typeof jobType !== 'string' || !isJobType(jobType)) {
    throw new AvatarError('AVATAR_ERR_JOB_TYPE_UNKNOWN', { type: String(jobType), known: JOB_TYPES.join(', ') });
  }
  if (!isPlainObject(params)) {
    throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', {
      field: 'params',
      problem: 'is not an object',
      expected: 'Give the parameters as a JSON object, e.g. {"text": "Hello"}.',
    });
  }
  const bad = firstNonJson(params, 'params');
  if (bad) {
    throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', {
      field: bad,
      problem: 'is not a JSON value',
      expected: 'Use only strings, finite numbers, booleans, null, arrays and plain objects.',
    });
  }
  return {
    jobId: newJobId(now),
    status: 'pending',
    jobType,
    params: structuredClone(params),
    createdAt: now.toISOString(),
    startedAt: null,
    completedAt: null,
    result: null,
    error: null,
    progress: 0,
    stage: null,
    attempts: 0,
    workerId: null,
  };
}

/** claim: a pending job, now running for `workerId`, its attempt counted. */
export function claimedJob(job: Job, workerId: string, now = new Date()): Job {
  return { ...job, status: 'running', startedAt: now.toISOString(), completedAt: null, workerId, attempts: job.attempts + 1, stage: null, progress: 0, result: null, error: null };
}

/** progress: a fraction 0..1 (anything else is clamped; not a number is 0) and the stage. */
export function progressedJob(job: Job, progress: number, stage: string | null): Job {
  return { ...job, progress: clampProgress(progress), stage };
}

/** A progress as stored: a fraction 0..1, anything else clamped, not a number 0. */
export function clampProgress(progress: number): number {
  return Number.isFinite(progress) ? Math.min(1, Math.max(0, progress)) : 0;
}

export function completedJob(job: Job, result: JobResult, now = new Date()): Job {
  return { ...job, status: 'completed', progress: 1, result, error: null, completedAt: now.toISOString() };
}

export function failedJob(job: Job, error: AvatarErrorJSON, now = new Date()): Job {
  return { ...job, status: 'failed', error, completedAt: now.toISOString() };
}

/** cancel: a pending job cancelled in the queue, or a running one its worker stopped at `stage`. */
export function cancelledJob(job: Job, stage: string | null, now = new Date()): Job {
  const where = job.status === 'pending' ? 'queue' : (stage ?? 'run');
  return {
    ...job,
    status: 'cancelled',
    ...(job.status !== 'pending' && { stage }),
    completedAt: now.toISOString(),
    error: new AvatarError('AVATAR_ERR_JOB_CANCELLED', { id: job.jobId, stage: where }).toJSON(),
  };
}

/** Pending again, with `attempts` attempts counted (a release gives the attempt back; a lost worker does not). */
export function requeuedJob(job: Job, attempts: number): Job {
  return { ...job, status: 'pending', attempts, workerId: null, startedAt: null, stage: null, progress: 0 };
}

/** release: a shutdown is not the job's fault: the attempt is not counted. A pending cancel request wins. */
export function releasedJob(job: Job, options: { cancelRequested: boolean }, now = new Date()): Job {
  return options.cancelRequested ? cancelledJob(job, job.stage, now) : requeuedJob(job, Math.max(0, job.attempts - 1));
}

/**
 * recover: a running job whose worker stopped renewing its claim: cancelled if that was asked, failed
 * with AVATAR_ERR_QUEUE_WORKER_LOST once its attempts are used up, else pending again.
 */
export function abandonedJob(job: Job, options: { workerId: string; maxAttempts: number; cancelRequested: boolean }, now = new Date()): Job {
  if (options.cancelRequested) return cancelledJob(job, job.stage, now);
  if (job.attempts >= options.maxAttempts) {
    const error = new AvatarError('AVATAR_ERR_QUEUE_WORKER_LOST', { id: job.jobId, attempts: job.attempts, workerId: options.workerId });
    return { ...job, status: 'failed', workerId: null, error: error.toJSON(), completedAt: now.toISOString() };
  }
  return requeuedJob(job, job.attempts);
}

/** Newest first: later createdAt first, then the larger jobId. */
export function newestFirst(a: Job, b: Job): number {
  return a.createdAt === b.createdAt ? (a.jobId < b.jobId ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1;
}

/** The jobs a list asks for: filtered by status and type, after the paging position, newest first, at most `limit`. */
export function selectJobs(jobs: readonly Job[], filter: ListFilter = {}): Job[] {
  const statuses = filter.status === undefined ? undefined : new Set<JobStatus>(typeof filter.status === 'string' ? [filter.status] : filter.status);
  const types = filter.type === undefined ? undefined : new Set<JobType>(typeof filter.type === 'string' ? [filter.type] : filter.type);
  const after = filter.after;
  const selected = jobs.filter((job) => (!statuses || statuses.has(job.status)) && (!types || types.has(job.jobType))
    && (!after || job.createdAt < after.createdAt || (job.createdAt === after.createdAt && job.jobId < after.jobId)));
  selected.sort(newestFirst);
  return filter.limit === undefined ? selected : selected.slice(0, Math.max(0, filter.limit));
}

/** Counts by status and type, and the mean run time of completed jobs per type. */
export function jobStats(jobs: readonly Job[]): JobStats {
  const byStatus = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
  const byType = Object.fromEntries(JOB_TYPES.map((t) => [t, 0])) as Record<JobType, number>;
  const runs: Partial<Record<JobType, { sum: number; n: number }>> = {};
  for (const job of jobs) {
    byStatus[job.status] += 1;
    byType[job.jobType] += 1;
    const seconds = job.status === 'completed' ? runSeconds(job) : undefined;
    if (seconds !== undefined) {
      const acc = (runs[job.jobType] ??= { sum: 0, n: 0 });
      acc.sum += seconds;
      acc.n += 1;
    }
  }
  const meanRunSeconds: Partial<Record<JobType, number>> = {};
  for (const type of JOB_TYPES) {
    const acc = runs[type];
    if (acc) meanRunSeconds[type] = acc.sum / acc.n;
  }
  return { total: jobs.length, byStatus, byType, meanRunSeconds };
}
