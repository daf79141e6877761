import { Type } from '@sinclair/typebox';
import type { TSchema } from '@sinclair/typebox';
import { JOB_ID_PATTERN, JOB_PARAM_SPECS, JOB_STATUSES, JOB_TYPES } from '@avatar/core';
import type { JobParamName, JobParamSpec } from '@avatar/core';

/**
 * A file inside the storage folder: relative, plain segments, none starting with a dot, so a
 * request can never name "..", an absolute path or a hidden file.
 */
export const STORAGE_PATH_PATTERN = '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}){0,7}$';

const literals = <T extends string>(values: readonly T[]) => Type.Union(values.map((v) => Type.Literal(v)));

export const JobTypeSchema = literals(JOB_TYPES);
export const JobStatusSchema = literals(JOB_STATUSES);
export const JobIdSchema = Type.String({ pattern: JOB_ID_PATTERN.source, description: 'job id, job-YYYYMMDDHHMMSS-<8 hex>' });

/**
 * One job parameter's schema, from core's table of them (JOB_PARAM_SPECS): the same types and limits as
 * the queue's own check. Over HTTP a file is one inside the storage folder, named relative to it.
 */
function paramSchema(name: JobParamName): TSchema {
  const spec: JobParamSpec = JOB_PARAM_SPECS[name];
  const { description } = spec;
  if (name === 'webhook') {
    return Type.Object(
      { url: Type.String({ pattern: '^[Hh][Tt][Tt][Pp][Ss]?://[^\\s]+$', maxLength: 2000, description: 'http(s) url the finished job is POSTed to, signed (X-Avatar-Signature)' }) },
      { additionalProperties: false, description: `${description}; needs AVATAR_WEBHOOK_SECRET on the server` },
    );
  }
  if (spec.type === 'object') return Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { description });
  if (spec.type === 'boolean') return Type.Boolean({ description });
  if (spec.type === 'number') {
    return Type.Number({ description, ...(spec.exclusiveMinimum !== undefined && { exclusiveMinimum: spec.exclusiveMinimum }), ...(spec.maximum !== undefined && { maximum: spec.maximum }) });
  }
  if (spec.path) return Type.String({ pattern: STORAGE_PATH_PATTERN, maxLength: 800, description: `${description}, relative to the storage folder` });
  return Type.String({
    description,
    ...(spec.minLength !== undefined && { minLength: spec.minLength }),
    ...(spec.maxLength !== undefined && { maxLength: spec.maxLength }),
    ...(spec.pattern !== undefined && { pattern: spec.pattern }),
  });
}

/**
 * Every parameter a job may take over HTTP. There is no outputPath: results always go to
 * <storage>/outputs/<jobId>.<ext>, so a client cannot make the server write anywhere else.
 * Every field is optional here; which ones a job type requires is checked by core's checkJobParams.
 */
export const HTTP_JOB_PARAMS = (Object.keys(JOB_PARAM_SPECS) as JobParamName[]).filter((name) => !(JOB_PARAM_SPECS[name] as JobParamSpec).localOnly) as Exclude<JobParamName, 'outputPath'>[];
export const JobParamsSchema = Type.Partial(Type.Object(
  Object.fromEntries(HTTP_JOB_PARAMS.map((name) => [name, paramSchema(name)])) as Record<Exclude<JobParamName, 'outputPath'>, TSchema>,
  { additionalProperties: false },
), { additionalProperties: false });

export const SubmitBodySchema = Type.Object(
  { jobType: JobTypeSchema, params: JobParamsSchema },
  { additionalProperties: false },
);

export const ErrorBodySchema = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      hint: Type.String(),
    }),
  },
  { $id: 'ErrorBody' },
);

const JsonObject = Type.Record(Type.String(), Type.Unknown());

export const JobSchema = Type.Object({
  jobId: Type.String(),
  status: JobStatusSchema,
  jobType: JobTypeSchema,
  params: JsonObject,
  createdAt: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  completedAt: Type.Union([Type.String(), Type.Null()]),
  result: Type.Union([JsonObject, Type.Null()]),
  error: Type.Union([
    Type.Object({ code: Type.String(), message: Type.String(), hint: Type.String(), params: JsonObject }),
    Type.Null(),
  ]),
  progress: Type.Number(),
  stage: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Integer(),
  workerId: Type.Union([Type.String(), Type.Null()]),
});

export const JobIdParamsSchema = Type.Object({ id: JobIdSchema }, { additionalProperties: false });

export const ListQuerySchema = Type.Object(
  {
    status: Type.Optional(JobStatusSchema),
    type: Type.Optional(JobTypeSchema),
    // query values are text: no type coercion anywhere, so the limit is a pattern-checked string
    limit: Type.Optional(Type.String({ pattern: '^(?:[1-9][0-9]{0,2}|1000)$', description: '1 to 1000 (default 50)' })),
    cursor: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,200}$', description: 'nextCursor of the previous page' })),
  },
  { additionalProperties: false },
);

export const ListReplySchema = Type.Object({
  jobs: Type.Array(JobSchema),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last page' }),
});

const countsOf = (keys: readonly string[]) => Type.Object(Object.fromEntries(keys.map((k) => [k, Type.Integer()])));

export const StatsSchema = Type.Object({
  total: Type.Integer(),
  byStatus: countsOf(JOB_STATUSES),
  byType: countsOf(JOB_TYPES),
  meanRunSeconds: Type.Record(Type.String(), Type.Number()),
});

/** A voice a speech engine speaks with (GET /v1/engine-voices). */
export const EngineVoiceSchema = Type.Object({
  engine: Type.String(),
  voice: Type.String(),
  language: Type.String(),
  gender: Type.Optional(Type.Union([Type.Literal('female'), Type.Literal('male')])),
  description: Type.Optional(Type.String()),
});

export const ReadySchema = Type.Object({
  ready: Type.Boolean(),
  storage: Type.Object({ ok: Type.Boolean(), detail: Type.String() }),
  queue: Type.Object({ ok: Type.Boolean(), detail: Type.String() }),
  plugins: Type.Array(Type.Object({ stage: Type.String(), name: Type.String(), ok: Type.Boolean(), detail: Type.String() })),
});

const ModelLicenseSchema = Type.Object({
  name: Type.String(), license: Type.String(), commercialUse: Type.Boolean(), source: Type.String(), note: Type.Optional(Type.String()),
});

/** One installed engine, as `avatar plugins list --json` gives it. */
export const PluginSchema = Type.Object({
  stage: Type.String(),
  name: Type.String(),
  package: Type.String({ description: 'package name@version' }),
  apiVersion: Type.Integer(),
  description: Type.String(),
  default: Type.Boolean({ description: 'the stage\'s default engine' }),
  resources: Type.Object({ device: Type.String(), ramMB: Type.Optional(Type.Number()), vramMB: Type.Optional(Type.Number()) }),
  options: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], { description: 'the JSON Schema of its options (params.config.engineOptions.STAGE)' }),
  license: Type.Union([
    Type.Object({ code: Type.String(), commercialUse: Type.Boolean(), models: Type.Array(ModelLicenseSchema), note: Type.Optional(Type.String()) }),
    Type.Null(),
  ]),
  defaultVoice: Type.Optional(Type.Object({ voice: Type.String(), language: Type.String() })),
  check: Type.Optional(Type.Object({ ok: Type.Boolean(), detail: Type.String(), install: Type.Optional(Type.String()) })),
});

/** The error answers a route may give, all in the one error shape. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((s) => [s, Type.Ref(ErrorBodySchema)]));
}
