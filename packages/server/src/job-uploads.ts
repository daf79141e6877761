import { lstat, rm } from 'node:fs/promises';
import { join } from 'node:path';
import fp from 'fastify-plugin';
import { isFinished } from '@avatar/core';
import type { Job, JobParams, JobStore, Logger } from '@avatar/core';

/*
 * Files sent with a job (multipart POST /v1/jobs) live at <storage>/uploads/up-<12 hex>/ and are needed
 * only while the job may still run: once it has really ended (completed, failed or cancelled, not
 * merely given back to the queue) the folder goes.
 */

/** The job parameters a multipart submission fills with an uploaded file. */
const FILE_PARAMS = ['avatarImagePath', 'imagePath', 'audioPath', 'referencePath'] as const;

/** Exactly what the form route writes: a file directly inside one upload folder. */
const UPLOADED_FILE = /^uploads\/(up-[0-9a-f]{12})\/([^/\\]+)$/;

/** The upload folders (`up-<12 hex>`) a job's params name, each once. Other paths, absolute ones included, are not uploads. */
export function uploadFoldersOf(params: JobParams): string[] {
  const folders = new Set<string>();
  for (const key of FILE_PARAMS) {
    const value = params[key];
    if (typeof value !== 'string') continue;
    const match = UPLOADED_FILE.exec(value);
    if (match && match[2] !== '.' && match[2] !== '..') folders.add(match[1]!);
  }
  return [...folders];
}

const codeOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;

/**
 * Removes the upload folders a finished job names. A folder that is a link (or the uploads folder
 * itself being one) is left alone and nothing is followed; a folder another unfinished job still
 * names stays for that job. Returns the storage-relative folders removed.
 */
export async function removeJobUploads(storageDir: string, job: Job, options: { store: JobStore; log: Logger }): Promise<string[]> {
  const { store, log } = options;
  if (!isFinished(job.status)) return [];
  const folders = uploadFoldersOf(job.params);
  if (folders.length === 0) return [];
  const parent = join(storageDir, 'uploads');
  try {
    const info = await lstat(parent);
    if (!info.isDirectory()) {
      log.warn(`the files sent with ${job.jobId} were not removed: uploads/ is ${info.isSymbolicLink() ? 'a link' : 'not a folder'}`);
      return [];
    }
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return [];
    throw error;
  }
  // read once, only when a folder is there to remove: which folders unfinished jobs still need
  let stillNeeded: Map<string, string> | undefined;
  const neededBy = async (folder: string): Promise<string | undefined> => {
    if (!stillNeeded) {
      stillNeeded = new Map();
      for (const other of await store.list({ status: ['pending', 'running'] })) {
        if (other.jobId === job.jobId) continue;
        for (const f of uploadFoldersOf(other.params)) stillNeeded.set(f, other.jobId);
      }
    }
    return stillNeeded.get(folder);
  };
  const removed: string[] = [];
  for (const folder of folders) {
    const shown = `uploads/${folder}`;
    const path = join(parent, folder);
    let info;
    try {
      info = await lstat(path);
    } catch (error) {
      if (codeOf(error) === 'ENOENT') continue; // removed already (by another server on the same storage, or earlier)
      throw error;
    }
    if (info.isSymbolicLink() || !info.isDirectory()) {
      log.warn(`the files sent with ${job.jobId} were not removed: ${shown} is ${info.isSymbolicLink() ? 'a link' : 'not a folder'}`);
      continue;
    }
    const other = await neededBy(folder);
    if (other !== undefined) {
      log.info(`kept ${shown} after ${job.jobId} ended: ${other} still uses it`);
      continue;
    }
    // rm never follows links inside the folder: it removes the links themselves
    await rm(path, { recursive: true, force: true });
    removed.push(shown);
    log.info(`removed ${shown}, the files sent with ${job.jobId} (${job.status})`);
  }
  return removed;
}

/**
 * The files sent with a job go once it has really ended (a job given back to the queue is not
 * finished), whichever server or worker saw it end (plugin avatar-job-uploads).
 */
export const jobUploadsPlugin = fp<{ storageDir: string; store: JobStore; log: Logger }>(async (app, { storageDir, store, log }) => {
  app.avatarFinishes.onFinish(async (job) => {
    await removeJobUploads(storageDir, job, { store, log });
  });
}, { name: 'avatar-job-uploads', dependencies: ['avatar-finishes'], fastify: '5.x' });
