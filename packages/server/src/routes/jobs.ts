import { createReadStream } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import { AvatarError, HLS_PLAYLIST, checkJobInputs, isAvatarError, isFinished, isHlsFile, liveDirFor } from '@avatar/core';
import type { JobParams } from '@avatar/core';
import { contentTypeFor, parseRange } from '../files.js';
import { decodeCursor, encodeCursor } from '../paging.js';
import { JobIdParamsSchema, JobIdSchema, JobSchema, ListQuerySchema, ListReplySchema, SubmitBodySchema, errorResponses } from '../schemas.js';
import type { Api, RouteContext } from './context.js';
import { SubmitBodies, jobFormHooks, submitJobForm } from './job-form.js';

/** A streamed file; the serialiser never sees it, the schema documents it. */
const FileSchema = (description: string) => Type.Unsafe<NodeJS.ReadableStream>({ type: 'string', format: 'binary', description });
/** a small file sent whole from memory */
const BytesSchema = (description: string) => Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description });

/** Submit, list, read, cancel jobs and download their results. */
export function registerJobRoutes(api: Api, ctx: RouteContext): void {
  const { store, storageDir, getJob, coordinator } = ctx;

  api.post('/v1/jobs', {
    schema: {
      summary: 'queue a job: JSON, or a multipart form with the photo and audio inline',
      body: SubmitBodies,
      response: { 202: JobSchema, ...errorResponses(400, 401, 413, 415, 422) },
    },
    ...jobFormHooks(storageDir),
  }, async (request, reply) => {
    if (request.isMultipart()) return submitJobForm(request, reply, store, storageDir, coordinator);
    const body = request.body as Static<typeof SubmitBodySchema>;
    const { jobType } = body;
    const params = body.params as JobParams;
    await checkJobInputs(coordinator, jobType, params, { store });
    const job = await store.submit(jobType, params);
    return reply.code(202).header('location', `/v1/jobs/${job.jobId}`).send(job);
  });

  api.get('/v1/jobs', {
    schema: {
      summary: 'list jobs, newest first, a page at a time',
      querystring: ListQuerySchema,
      response: { 200: ListReplySchema, ...errorResponses(400, 401) },
    },
  }, async (request) => {
    const { status, type, limit, cursor } = request.query;
    const size = limit ? Number(limit) : 50;
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    // one more than asked for says whether another page follows, without an empty last page
    const found = await store.list({ ...(status && { status }), ...(type && { type }), ...(after && { after }), limit: size + 1 });
    const jobs = found.slice(0, size);
    const last = jobs[jobs.length - 1];
    return { jobs, nextCursor: found.length > size && last ? encodeCursor(last) : null };
  });

  api.get('/v1/jobs/:id', {
    schema: { summary: 'one job', params: JobIdParamsSchema, response: { 200: JobSchema, ...errorResponses(400, 401, 404) } },
  }, async (request) => getJob(request.params.id));

  api.delete('/v1/jobs/:id', {
    schema: {
      summary: 'cancel a job: a pending one at once, a running one at its next checkpoint',
      params: JobIdParamsSchema,
      response: { 200: Type.Object({ outcome: Type.Union([Type.Literal('cancelled'), Type.Literal('requested')]), job: JobSchema }), ...errorResponses(400, 401, 404, 409) },
    },
  }, async (request) => {
    const { job, outcome } = await store.cancel(request.params.id);
    return { outcome, job };
  });

  api.get('/v1/jobs/:id/result', {
    schema: {
      summary: 'the output file of a completed job; Range requests answered with 206',
      params: JobIdParamsSchema,
      response: { 200: FileSchema('the file'), 206: FileSchema('part of the file'), ...errorResponses(400, 401, 404, 409, 416) },
    },
  }, async (request, reply) => {
    const job = await getJob(request.params.id);
    const id = job.jobId;
    if (!isFinished(job.status)) throw new AvatarError('AVATAR_ERR_JOB_NOT_FINISHED', { id, status: job.status });
    if (job.status !== 'completed') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: `it ended ${job.status}` });
    const output = job.result?.outputPath;
    if (typeof output !== 'string' || output === '') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'it produced no file' });
    // only files inside the storage folder are served, links followed first
    let file: string;
    let size: number;
    try {
      file = await realpath(output);
      const root = await realpath(storageDir);
      if (!file.startsWith(root + sep)) throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its file is outside the storage folder' });
      const info = await stat(file);
      if (!info.isFile()) throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its output is not a file' });
      size = info.size;
    } catch (error) {
      if (isAvatarError(error)) throw error;
      throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its file is no longer there' });
    }
    const ext = extname(file).toLowerCase().replace(/[^.a-z0-9]/g, '');
    void reply
      .header('content-type', contentTypeFor(file))
      .header('accept-ranges', 'bytes')
      .header('content-disposition', `attachment; filename="${id}${ext}"`)
      .header('last-modified', new Date((await stat(file)).mtimeMs).toUTCString());
    const range = parseRange(request.headers.range, size);
    if (range === 'unsatisfiable') {
      void reply.header('content-range', `bytes */${size}`);
      throw new AvatarError('AVATAR_ERR_HTTP_RANGE', { size });
    }
    if (range) {
      return reply
        .code(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${size}`)
        .header('content-length', range.end - range.start + 1)
        .send(createReadStream(file, { start: range.start, end: range.end }));
    }
    return reply.header('content-length', size).send(createReadStream(file));
  });

  api.get('/v1/jobs/:id/captions/:format', {
    schema: {
      summary: 'a completed job\'s captions, as WebVTT (vtt) or SubRip (srt): the speech\'s words as written, timed by the speech engine',
      params: Type.Object({ id: JobIdSchema, format: Type.Union([Type.Literal('vtt'), Type.Literal('srt')]) }, { additionalProperties: false }),
      response: { 200: BytesSchema('the captions'), ...errorResponses(400, 401, 404, 409) },
    },
  }, async (request, reply) => {
    const job = await getJob(request.params.id);
    const id = job.jobId;
    const { format } = request.params;
    if (!isFinished(job.status)) throw new AvatarError('AVATAR_ERR_JOB_NOT_FINISHED', { id, status: job.status });
    if (job.status !== 'completed') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: `it ended ${job.status}` });
    const captions = job.result?.captions;
    const path = captions && typeof captions === 'object' && !Array.isArray(captions) ? captions[format] : undefined;
    if (typeof path !== 'string') throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'it made no captions (a job from text with captions other than "none" makes them)' });
    let data: Buffer;
    try {
      // only files inside the storage folder are served, links followed first
      const file = await realpath(path);
      if (!file.startsWith((await realpath(storageDir)) + sep)) throw new Error('outside the storage folder');
      data = await readFile(file);
    } catch {
      throw new AvatarError('AVATAR_ERR_JOB_NO_RESULT', { id, reason: 'its captions are no longer there' });
    }
    return reply
      .header('content-type', format === 'vtt' ? 'text/vtt; charset=utf-8' : 'application/x-subrip; charset=utf-8')
      .header('content-disposition', `attachment; filename="${id}.${format}"`)
      .send(data);
  });

  api.get('/v1/jobs/:id/live/:file', {
    schema: {
      summary: 'a live job\'s video while it is made, as HLS: playlist.m3u8 (an EVENT playlist that ends when the video is whole), init.mp4 and seg-NNNNN.m4s',
      params: Type.Object({ id: JobIdSchema, file: Type.String({ maxLength: 40, description: 'playlist.m3u8, init.mp4 or seg-NNNNN.m4s' }) }, { additionalProperties: false }),
      response: { 200: BytesSchema('the playlist or a segment'), ...errorResponses(400, 401, 404) },
    },
  }, async (request, reply) => {
    const job = await getJob(request.params.id);
    const { file } = request.params;
    const noLive = (reason: string): AvatarError => new AvatarError('AVATAR_ERR_JOB_NO_LIVE', { id: job.jobId, file, reason });
    if (!isHlsFile(file)) throw noLive('a live video has playlist.m3u8, init.mp4 and seg-NNNNN.m4s only');
    // (whatever a killed worker left behind: a job that did not succeed has no live video)
    if (job.status === 'failed' || job.status === 'cancelled') throw noLive(`it ended ${job.status}, and its live files went with it`);
    let data: Buffer;
    try {
      // written whole and renamed into place (HlsWriter): what is there is complete
      data = await readFile(join(liveDirFor(storageDir, job.jobId), file));
    } catch {
      if (job.params.live !== true) throw noLive('it was not submitted with "live": true');
      throw noLive(job.status === 'completed' ? 'it is no longer there' : 'it is not written yet');
    }
    return reply
      .header('content-type', file === HLS_PLAYLIST ? 'application/vnd.apple.mpegurl' : 'video/mp4')
      // the playlist grows until it ends, and a retried job writes its segments again under the same names
      .header('cache-control', 'no-cache')
      .send(data);
  });

}
