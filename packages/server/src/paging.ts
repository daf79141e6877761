import { AvatarError, JOB_ID_PATTERN } from '@avatar/core';
import type { Job } from '@avatar/core';

/** Where a page ended: the last job's creation time and id (the list's sort keys). */
export interface CursorPosition {
  createdAt: string;
  jobId: string;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;

/** An opaque cursor: base64url of `<createdAt> <jobId>` of the last job on the page. */
export function encodeCursor(job: Pick<Job, 'createdAt' | 'jobId'>): string {
  return Buffer.from(`${job.createdAt} ${job.jobId}`, 'utf8').toString('base64url');
}

/** The position a cursor names; a cursor this server could not have given is a validation error. */
export function decodeCursor(cursor: string): CursorPosition {
  const [createdAt = '', jobId = '', ...rest] = Buffer.from(cursor, 'base64url').toString('utf8').split(' ');
  if (rest.length > 0 || !ISO_UTC.test(createdAt) || Number.isNaN(Date.parse(createdAt)) || !JOB_ID_PATTERN.test(jobId)) {
    throw new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part: 'querystring', reason: 'cursor is not one this server gave; pass nextCursor from the previous page as it is' });
  }
  return { createdAt, jobId };
}
