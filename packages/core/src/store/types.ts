import type { AvatarErrorJSON } from '../errors.js';
import type { Job, JobParams, JobResult, JobStatus, JobType } from '../jobs.js';

export interface ListFilter {
  status?: JobStatus | readonly JobStatus[];
  type?: JobType | readonly JobType[];
  /** newest first; at most this many */
  limit?: number;
  /**
   * Paging: only the jobs listed after this position, i.e. created before it (same createdAt: a
   * smaller jobId). Pass the last job of the previous page.
   */
  after?: { createdAt: string; jobId: string };
}

export interface JobStats {
  total: number;
  byStatus: Record<JobStatus, number>;
  byType: Record<JobType, number>;
  /** mean run time (startedAt..completedAt) of completed jobs per type, seconds */
  meanRunSeconds: Partial<Record<JobType, number>>;
}

export interface ClaimOptions {
  /** how long the claim holds without a heartbeat, ms */
  leaseMs: number;
}

/** What `cancel` did. A running job is stopped by its worker, so it reports `requested`. */
export type CancelOutcome = { job: Job; outcome: 'cancelled' | 'requested' };

/**
 * The persistent queue. The file store is the embedded default; other stores (Redis) pass the same
 * conformance suite (`@avatar/core/testing`).
 *
 * Guarantees every store gives:
 * - a pending job is claimed by exactly one worker; a job is never lost;
 * - a reader never sees a half-written job;
 * - a claim not renewed within its lease is taken back: the job is pending again, or failed with
 *   AVATAR_ERR_QUEUE_WORKER_LOST once `maxAttempts` is used up;
 * - only the worker holding the claim may write progress, complete or fail (others get `false`).
 */
export interface JobStore {
  submit(jobType: JobType, params: JobParams): Promise<Job>;
  /** undefined when there is no such job */
  get(jobId: string): Promise<Job | undefined>;
  list(filter?: ListFilter): Promise<Job[]>;
  /** pending: cancelled at once; running: cancellation requested (the worker sees `isCancelRequested`) */
  cancel(jobId: string): Promise<CancelOutcome>;
  /** removes a pending or finished job; a running one must be cancelled first */
  delete(jobId: string): Promise<void>;
  stats(): Promise<JobStats>;

  /** the oldest pending job, now running and owned by `workerId`; undefined when none is pending */
  claim(workerId: string, options: ClaimOptions): Promise<Job | undefined>;
  /** renews the lease; false when this worker no longer owns the job (it must stop) */
  heartbeat(jobId: string, workerId: string, options: ClaimOptions): Promise<boolean>;
  progress(jobId: string, workerId: string, progress: number, stage: string | null): Promise<boolean>;
  complete(jobId: string, workerId: string, result: JobResult): Promise<boolean>;
  fail(jobId: string, workerId: string, error: AvatarErrorJSON): Promise<boolean>;
  /** the worker stops on a cancellation request: marks the job cancelled */
  markCancelled(jobId: string, workerId: string, stage: string | null): Promise<boolean>;
  /** the worker gives the job back unfinished (shutdown): pending again, attempt not counted */
  release(jobId: string, workerId: string): Promise<boolean>;
  isCancelRequested(jobId: string): Promise<boolean>;
  /** takes back claims whose lease expired; returns the ids it re-queued or failed */
  recoverExpired(): Promise<string[]>;
  /** Optional: where the store is, as it may be shown (a URL without its password); none: the storage folder */
  readonly location?: string;
  /** Optional, for a store on a server: resolves once the server answers, rejects with why not (readiness). */
  ping?(): Promise<void>;
  /**
   * Optional, for a store several servers share: counts `key` in fixed windows of `windowMs` for all of
   * them (the HTTP rate limit); the count includes this call, `resetInMs` is what is left of the window.
   */
  countInWindow?(key: string, windowMs: number): Promise<{ count: number; resetInMs: number }>;
  /** Optional: what is wrong in the store's own records, changing nothing (avatar doctor). */
  checkConsistency?(): Promise<StorageFinding[]>;
  close(): Promise<void>;
}

/** Something wrong in a storage folder that a person may need to act on (avatar doctor). */
export interface StorageFinding {
  kind: 'damaged_job' | 'expired_claim' | 'leftover_work' | 'leftover_partial';
  path: string;
  /** what is wrong */
  detail: string;
  /** what to do */
  advice: string;
}
