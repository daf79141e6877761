import { randomBytes } from 'node:crypto';
import type { AvatarErrorJSON } from './errors.js';

export const JOB_TYPES = [
  'full_pipeline',
  'voice_clone',
  'voice_synthesis',
  'avatar_generation',
  'video_lipsync',
  'video_encoding',
] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const JOB_STATUSES = ['pending', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const FINISHED_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];
export const isFinished = (status: JobStatus): boolean => FINISHED_STATUSES.includes(status);

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JobParams = { [key: string]: JsonValue };
export type JobResult = { [key: string]: JsonValue };

export interface Job {
  jobId: string;
  status: JobStatus;
  jobType: JobType;
  params: JobParams;
  /** ISO 8601, UTC */
  createdAt: string;
  startedAt: string | null;
  completedAt: string | null;
  result: JobResult | null;
  error: AvatarErrorJSON | null;
  /** 0..1 */
  progress: number;
  /** current stage name, e.g. "synthesize_speech" */
  stage: string | null;
  /** how many times a worker has started it */
  attempts: number;
  /** the worker that runs it now (running only) */
  workerId: string | null;
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** `job-YYYYMMDDHHMMSS-<8 hex>`, UTC. */
export function newJobId(now = new Date()): string {
  const stamp =
    `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}` +
    `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  return `job-${stamp}-${randomBytes(4).toString('hex')}`;
}

export const JOB_ID_PATTERN = /^job-\d{14}-[0-9a-f]{8}$/;
export const isJobId = (value: string): boolean => JOB_ID_PATTERN.test(value);

export function isJobType(value: string): value is JobType {
  return (JOB_TYPES as readonly string[]).includes(value);
}
export function isJobStatus(value: string): value is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(value);
}

/** Run time of a finished job in seconds, or undefined when it never started. */
export function runSeconds(job: Job): number | undefined {
  if (!job.startedAt || !job.completedAt) return undefined;
  return (Date.parse(job.completedAt) - Date.parse(job.startedAt)) / 1000;
}
