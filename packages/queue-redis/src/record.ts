import { AvatarError, checkJobRecord, type AvatarErrorJSON, type Job } from '@avatar/core';

// How a job record is kept in a BullMQ job hash, and read back as the same Job JSON the file store
// gives. BullMQ owns: name (the job type), data (the params), timestamp (createdAt), processedOn,
// finishedOn, returnvalue (the result), failedReason, ats (attempts started), pb (the worker), stc,
// defa. This store adds fields BullMQ leaves alone, all starting with "av":
// (a release, which gives its attempt back, takes one off ats, so attempts are ats)
//   avcancel "1" once a cancel was asked for a running job
//   avp, avs, avpa: progress, stage (JSON: a string or null) and the attempt (ats) they belong to;
//           a new claim starts a new attempt, so the previous attempt's progress no longer shows
// A failed job's failedReason is the AvatarError JSON; a cancelled job is a failed BullMQ job whose
// error is AVATAR_ERR_JOB_CANCELLED.

/** Where BullMQ keeps a job, as the contract sees it. */
export type QueueState = 'pending' | 'running' | 'completed' | 'failed';

/** BullMQ's own reason for a job that stalled more often than allowed (its maxStalledCount). */
export const STALLED_REASON = 'job stalled more than allowable limit';

/** The hash fields a record is read from. */
export const RECORD_FIELDS = ['name', 'data', 'timestamp', 'processedOn', 'finishedOn', 'returnvalue', 'failedReason', 'ats', 'pb', 'avp', 'avs', 'avpa'] as const;
export type RawRecord = Partial<Record<(typeof RECORD_FIELDS)[number], string>>;

const iso = (ms: string | undefined): string | null => {
  const n = Number(ms);
  return ms !== undefined && ms !== '' && Number.isFinite(n) ? new Date(n).toISOString() : null;
};

const isErrorJson = (v: unknown): v is AvatarErrorJSON =>
  typeof v === 'object' && v !== null && typeof (v as AvatarErrorJSON).code === 'string' && typeof (v as AvatarErrorJSON).message === 'string';

/** A failed job's error: the JSON this store wrote, or BullMQ's own reason turned into one. */
export function failureOf(jobId: string, raw: RawRecord, attempts: number): AvatarErrorJSON {
  const reason = raw.failedReason ?? '';
  try {
    const parsed: unknown = JSON.parse(reason);
    if (isErrorJson(parsed)) return { ...parsed, hint: typeof parsed.hint === 'string' ? parsed.hint : '', params: parsed.params ?? {} };
  } catch {
    // not JSON: one of BullMQ's own reasons
  }
  if (reason.startsWith(STALLED_REASON)) {
    return new AvatarError('AVATAR_ERR_QUEUE_WORKER_LOST', { id: jobId, attempts, workerId: raw.pb ?? 'unknown' }).toJSON();
  }
  return new AvatarError('AVATAR_ERR_INTERNAL', { reason: reason || 'the queue failed the job without a reason' }).toJSON();
}

/** attempts counted the way the contract counts them: started, less those given back (ats) */
export const attemptsOf = (raw: RawRecord): number => Math.max(0, Number(raw.ats ?? 0));

/**
 * The Job a BullMQ hash and its state stand for; a string says why it is not one (a damaged record).
 */
export function jobFromHash(jobId: string, raw: RawRecord, state: QueueState): Job | string {
  let params: unknown;
  let result: unknown = null;
  try {
    params = JSON.parse(raw.data ?? '');
    if (state === 'completed') result = JSON.parse(raw.returnvalue ?? 'null');
  } catch {
    return state === 'completed' ? 'data or returnvalue is not JSON' : 'data is not JSON';
  }
  const attempts = attemptsOf(raw);
  const error = state === 'failed' ? failureOf(jobId, raw, attempts) : null;
  const status = error?.code === 'AVATAR_ERR_JOB_CANCELLED' ? 'cancelled' : state === 'pending' ? 'pending' : state;
  // cancelled in the queue, or pending: nothing of an earlier attempt shows (requeuedJob, cancelledJob)
  const fromQueue = state === 'pending' || (status === 'cancelled' && error?.params.stage === 'queue');
  const thisAttempt = !fromQueue && raw.avpa !== undefined && raw.avpa === (raw.ats ?? '0');
  let stage: string | null = null;
  if (thisAttempt && raw.avs !== undefined) {
    try {
      const parsed: unknown = JSON.parse(raw.avs);
      if (typeof parsed === 'string') stage = parsed;
    } catch {
      return 'avs (the stage) is not JSON';
    }
  }
  const lost = error?.code === 'AVATAR_ERR_QUEUE_WORKER_LOST';
  const job = {
    jobId,
    status,
    jobType: raw.name,
    params,
    createdAt: iso(raw.timestamp),
    startedAt: fromQueue ? null : iso(raw.processedOn),
    completedAt: state === 'completed' || state === 'failed' ? iso(raw.finishedOn) : null,
    result: state === 'completed' ? result : null,
    error,
    progress: state === 'completed' ? 1 : thisAttempt ? Number(raw.avp ?? 0) : 0,
    stage,
    attempts,
    workerId: fromQueue || lost ? null : (raw.pb ?? null),
  };
  return checkJobRecord(job, jobId);
}
