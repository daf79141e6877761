import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AvatarError, JOB_TYPES, QUALITIES, checkJobInputs, checkJobParams, isJobType } from '@avatar/core';
import type { Job, JobParams, JobStore, JobType, PipelineCoordinator } from '@avatar/core';
import { JobParamsSchema, JobTypeSchema, SubmitBodySchema } from '../schemas.js';
import { clientGoneError, formHooks, receivedForm } from '../uploads.js';
import type { FileField, ReceivedFile, Uploads } from '../uploads.js';

/*
 * POST /v1/jobs as a multipart form: the photo and the audio travel with the job. They are checked like
 * any upload (sniffed, sized, decoded) and kept at <storage>/uploads/up-<12 hex>/<avatar|audio>.<ext>;
 * the job's params name them by that storage-relative path, then the same checks and submit as JSON run.
 */

/** Which job parameter each uploaded file fills, per job type. */
const FILE_PARAMS: Record<JobType, Partial<Record<'avatar' | 'audio', string>>> = {
  full_pipeline: { avatar: 'avatarImagePath' },
  voice_synthesis: {},
  video_encoding: { avatar: 'imagePath', audio: 'audioPath' },
  voice_clone: { audio: 'referencePath' },
  avatar_generation: { avatar: 'imagePath' },
  video_lipsync: { avatar: 'avatarImagePath', audio: 'audioPath' },
};

/** Text fields copied into params as they are. */
const TEXT_PARAMS = ['text', 'voiceProfileId', 'name', 'avatarImagePath', 'imagePath', 'audioPath', 'referencePath', 'transcript'] as const;
const FILES: readonly FileField[] = [
  { field: 'avatar', kind: 'image', required: false },
  { field: 'audio', kind: 'audio', required: false },
];
const FIELDS = ['jobType', ...TEXT_PARAMS, 'maxSeconds', 'quality', 'config', 'webhook'];

const P = JobParamsSchema.properties;
const binary = (description: string) => Type.Optional(Type.String({ format: 'binary', description }));

/** The text fields of the form, checked before any file is decoded. */
const JobFormTextSchema = Type.Object(
  {
    jobType: JobTypeSchema,
    text: P.text,
    voiceProfileId: P.voiceProfileId,
    name: P.name,
    avatarImagePath: P.avatarImagePath,
    imagePath: P.imagePath,
    audioPath: P.audioPath,
    referencePath: P.referencePath,
    transcript: P.transcript,
    maxSeconds: Type.Optional(Type.String({ pattern: '^[0-9]{1,4}(\\.[0-9]{1,3})?$', description: 'seconds (voice_synthesis)' })),
    quality: Type.Optional(Type.Union(QUALITIES.map((q) => Type.Literal(q)), { description: 'config.videoQuality' })),
    config: Type.Optional(Type.String({ maxLength: 20_000, description: 'pipeline settings as JSON text (see docs/configuration.md)' })),
    webhook: Type.Optional(Type.String({ maxLength: 2000, description: 'params.webhook.url: where the finished job is POSTed' })),
  },
  { additionalProperties: false },
);

export const JobFormSchema = Type.Object(
  {
    ...JobFormTextSchema.properties,
    avatar: binary('the photo (JPEG, PNG, WebP): avatarImagePath of full_pipeline and video_lipsync, imagePath of avatar_generation and video_encoding'),
    audio: binary('the recording (WAV, MP3, OGG, FLAC, M4A): audioPath of video_lipsync and video_encoding, referencePath of voice_clone'),
  },
  { additionalProperties: false },
);

/** Both ways to submit, documented and validated each by its own schema. */
export const SubmitBodies = {
  content: {
    'application/json': { schema: SubmitBodySchema },
    'multipart/form-data': { schema: JobFormSchema },
  },
};

/**
 * Receives a multipart submission before validation; JSON passes untouched, other bodies are refused.
 * The text fields, and which files the job type takes, are checked before any file is decoded.
 * Without `uploads`, the server's one Uploads (installUploads) is used.
 */
export function jobFormHooks(storageDir: string, uploads?: Uploads) {
  const parent = join(storageDir, 'uploads');
  const precheck = (fields: Readonly<Record<string, string>>, files: readonly ReceivedFile[]): void => {
    if (!Value.Check(JobFormTextSchema, fields)) {
      const first = Value.Errors(JobFormTextSchema, fields).First();
      throw new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part: 'body', reason: first ? `body${first.path} ${first.message}` : 'the form fields do not match the schema' });
    }
    // the params as they will be, with the files at their planned place: every rule runs now
    jobFromForm(fields, files.map((f) => ({ field: f.field, ext: 'upload' })), 'up-000000000000');
  };
  const hooks = formHooks((request) => (request.isMultipart() ? { parent, files: FILES, fields: FIELDS, precheck } : null), uploads);
  return {
    preValidation: async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      if (!request.isMultipart()) {
        // no schema applies to a missing body or one of another type, so they are refused here
        if (request.body === undefined) throw new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part: 'body', reason: 'body must be object' });
        if (request.mediaType !== 'application/json') {
          // a body type some other parser read (text/plain): only JSON and forms submit jobs
          throw new AvatarError('AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA', { type: String(request.mediaType ?? 'unknown').slice(0, 100) });
        }
        // an unknown job type is named as such, with the known ones, before the schema lists every
        // constant it is not
        const jobType = (request.body as { jobType?: unknown } | null)?.jobType;
        if (typeof jobType === 'string' && !isJobType(jobType)) {
          throw new AvatarError('AVATAR_ERR_JOB_TYPE_UNKNOWN', { type: jobType.slice(0, 100), known: JOB_TYPES.join(', ') });
        }
      }
      await hooks.preValidation(request, reply);
    },
    onError: hooks.onError,
  };
}

const invalid = (field: string, problem: string, expected: string): AvatarError => new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field, problem, expected });

/**
 * The job a form describes: its params from the text fields, each file at `uploads/<uploadId>/<field>.<ext>`.
 * Checked by the params schema and the job type's own rules, as a JSON submission is.
 */
function jobFromForm(fields: Readonly<Record<string, string>>, files: readonly { field: string; ext: string }[], uploadId: string): { jobType: JobType; params: JobParams } {
  const jobType = fields.jobType as JobType;
  const params: JobParams = {};
  for (const key of TEXT_PARAMS) if (fields[key] !== undefined) params[key] = fields[key];
  if (fields.maxSeconds !== undefined) params.maxSeconds = Number(fields.maxSeconds);
  if (fields.webhook !== undefined) params.webhook = { url: fields.webhook };
  if (fields.config !== undefined || fields.quality !== undefined) {
    let config: unknown = {};
    if (fields.config !== undefined) {
      try {
        config = JSON.parse(fields.config);
      } catch {
        throw invalid('config', 'is not JSON', 'Send the pipeline settings as a JSON object, e.g. {"videoQuality": "medium"}.');
      }
      if (config === null || typeof config !== 'object' || Array.isArray(config)) throw invalid('config', 'is not a JSON object', 'Send the pipeline settings as a JSON object, e.g. {"videoQuality": "medium"}.');
    }
    params.config = { ...(config as Record<string, JobParams[string]>), ...(fields.quality !== undefined && { videoQuality: fields.quality }) };
  }
  const takes = FILE_PARAMS[jobType];
  for (const file of files) {
    const param = takes[file.field as 'avatar' | 'audio'];
    const names = Object.entries(takes).map(([f, p]) => `"${f}" (${p})`).join(', ');
    if (!param) throw invalid(file.field, `is not an input of ${jobType}`, names ? `${jobType} takes the files ${names}.` : `${jobType} takes no files.`);
    if (params[param] !== undefined) throw invalid(param, `was given both as a path and as the file "${file.field}"`, 'Send one or the other.');
    params[param] = `uploads/${uploadId}/${file.field}.${file.ext}`;
  }
  // the same rules as a JSON submission: the params schema, then the job type's own
  if (!Value.Check(JobParamsSchema, params)) {
    const first = Value.Errors(JobParamsSchema, params).First();
    throw new AvatarError('AVATAR_ERR_HTTP_VALIDATION', { part: 'body', reason: first ? `params${first.path.replace(/\//g, '.')} ${first.message}` : 'params do not match the schema' });
  }
  checkJobParams(jobType, params);
  return { jobType, params };
}

/** Turns the checked form into a job: params from its fields, files moved into place, then submit. */
export async function submitJobForm(request: FastifyRequest, reply: FastifyReply, store: JobStore, storageDir: string, coordinator: PipelineCoordinator): Promise<FastifyReply> {
  const form = receivedForm(request);
  let committed: string | undefined;
  try {
    const uploadId = `up-${randomBytes(6).toString('hex')}`;
    const files = Object.values(form.files);
    // checkContent named each file <field>.<ext> in the staging folder: the folder moves as it is
    const { jobType, params } = jobFromForm(form.fields, files, uploadId);
    if (files.length > 0) {
      if (form.signal.aborted) throw clientGoneError();
      const target = join(storageDir, 'uploads', uploadId);
      await mkdir(join(storageDir, 'uploads'), { recursive: true });
      await rename(form.dir, target);
      committed = target;
    }
    // with the files in place: the same checks as a JSON submission's
    await checkJobInputs(coordinator, jobType, params, { store });
    const job: Job = await store.submit(jobType, params);
    committed = undefined;
    return reply.code(202).header('location', `/v1/jobs/${job.jobId}`).send(job);
  } finally {
    // the one removal of the staging folder (a no-op once it was renamed into place)
    await form.discard();
    if (committed) await rm(committed, { recursive: true, force: true });
  }
}
