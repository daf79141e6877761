import { realpathSync } from 'node:fs';
import { basename, resolve, sep, win32 } from 'node:path';
import type { Job } from '@avatar/core';

/**
 * Absolute paths inside text: POSIX ones after the start, a space, a quote, a bracket or `=`
 * (so the path part of `https://host/a` is left alone), and Windows drive paths.
 * A trailing `.` or `,` ends a sentence, not a path.
 */
const PATH_IN_TEXT = /(^|[\s"'`(=[{<,])((?:\/|[A-Za-z]:\\)[^\s"'`()<>[\]{},;:]*)/g;

export interface Redactor {
  /** the job as a client may see it: no absolute server path in params, result or error */
  job(job: Job): Job;
  /** a reply payload: a job, `{job}`, `{jobs}`, `{..., job}` or an error body `{error}` redacted; anything else as it is */
  payload(payload: unknown): unknown;
  /** one piece of text */
  text(value: string): string;
}

/**
 * Clients must not learn where the server keeps things: a path under the storage folder becomes
 * storage-relative (the form params take), any other absolute path its base name. API routes
 * (`/v1/...`) named in messages stay as they are.
 */
export function createRedactor(storageDir: string): Redactor {
  const roots = new Set([resolve(storageDir)]);
  try {
    roots.add(realpathSync(storageDir));
  } catch {
    // not there yet: the resolved path is the only spelling
  }
  const redactPath = (path: string): string => {
    let trail = '';
    while (path.length > 1 && /[.]$/.test(path)) {
      trail = path.slice(-1) + trail;
      path = path.slice(0, -1);
    }
    if (path === '/' || path.startsWith('/v1/')) return path + trail;
    for (const root of roots) {
      if (path === root) return '.' + trail;
      if (path.startsWith(root + sep) || path.startsWith(root + '/')) return path.slice(root.length + 1) + trail;
    }
    const base = /^[A-Za-z]:\\/.test(path) ? win32.basename(path) : basename(path);
    return (base === '' ? '.' : base) + trail;
  };
  const text = (value: string): string => value.replace(PATH_IN_TEXT, (_whole, before: string, path: string) => before + redactPath(path));
  const deep = (value: unknown): unknown => {
    if (typeof value === 'string') return text(value);
    if (Array.isArray(value)) return value.map(deep);
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deep(v)]));
    }
    return value;
  };
  const job = (j: Job): Job => ({
    ...j,
    params: deep(j.params) as Job['params'],
    result: j.result === null ? null : (deep(j.result) as Job['result']),
    // the hint is fixed text from the error table; it may name API routes, never server paths
    error: j.error === null ? null : { ...j.error, message: text(j.error.message), params: deep(j.error.params) as NonNullable<Job['error']>['params'] },
  });
  const isJob = (value: unknown): value is Job =>
    value !== null && typeof value === 'object' && typeof (value as Job).jobId === 'string' && typeof (value as Job).jobType === 'string' && 'params' in value;
  const payload = (p: unknown): unknown => {
    if (isJob(p)) return job(p);
    if (p === null || typeof p !== 'object' || Array.isArray(p)) return p;
    const o = p as Record<string, unknown>;
    // an error body, whoever built it (a route adding details such as a face check's reasons)
    if (o.error !== null && typeof o.error === 'object' && !Array.isArray(o.error)) return { ...o, error: deep(o.error) };
    if (!('job' in o) && !('jobs' in o)) return p;
    const out: Record<string, unknown> = { ...o };
    if (isJob(o.job)) out.job = job(o.job);
    if (Array.isArray(o.jobs)) out.jobs = o.jobs.map((j: unknown) => (isJob(j) ? job(j) : j));
    return out;
  };
  return { job, payload, text };
}
