import { AvatarError } from './errors.js';
import type { JobParams, JobType, JsonValue } from './jobs.js';
import { VOICE_ID_PATTERN } from './voices.js';

// Every job parameter, defined once: its type and limits, what it means, which job types take it. The
// queue's check (checkJobParams), the HTTP server's request schema and the CLI's `jobs submit` flags
// are made from this table, so the three cannot drift apart.

/** One job parameter. */
export interface JobParamSpec {
  type: 'string' | 'number' | 'boolean' | 'object';
  /** what it is, for documentation, the OpenAPI document and --help */
  description: string;
  /** a file: absolute, or relative to the storage folder (over HTTP: inside it, relative only) */
  path?: true;
  /** not accepted over HTTP: a client never picks where the server writes */
  localOnly?: true;
  minLength?: number;
  maxLength?: number;
  /** a regular expression the whole string must match */
  pattern?: string;
  /** numbers: above this */
  exclusiveMinimum?: number;
  maximum?: number;
  /** the `avatar jobs submit` flag that sets it, where one does */
  flag?: string;
}

export const JOB_PARAM_SPECS = {
  text: { type: 'string', minLength: 1, maxLength: 20_000, description: 'the text to speak', flag: '--text <text>' },
  voiceProfileId: { type: 'string', pattern: VOICE_ID_PATTERN.source, description: 'voice profile id, vp-<8 hex>', flag: '--voice <id>' },
  maxSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600, description: 'the longest speech allowed, seconds' },
  avatarImagePath: { type: 'string', path: true, maxLength: 800, description: 'portrait photo (JPEG, PNG or WebP) or a prepared avatar' },
  imagePath: { type: 'string', path: true, maxLength: 800, description: 'still image (video_encoding), photo to prepare (avatar_generation)', flag: '--image <path>' },
  audioPath: { type: 'string', path: true, maxLength: 800, description: 'audio file (WAV, MP3, OGG, FLAC...)', flag: '--audio <path>' },
  referencePath: { type: 'string', path: true, maxLength: 800, description: 'reference recording to match a voice to', flag: '--reference <path>' },
  name: { type: 'string', minLength: 1, maxLength: 100, description: 'a name for the new voice profile', flag: '--name <text>' },
  outputPath: { type: 'string', path: true, localOnly: true, maxLength: 4096, description: 'where the result goes (default: <storage>/outputs/<jobId>.<ext>)', flag: '--output <path>' },
  config: { type: 'object', description: 'pipeline settings (docs/configuration.md), engines and their options included' },
  transcript: { type: 'string', minLength: 1, maxLength: 20_000, description: 'what the recording says (video_lipsync): aligned to it for captions', flag: '--transcript <text>' },
  live: { type: 'boolean', description: 'publish the video as HLS while it is made (GET /v1/jobs/:id/live/playlist.m3u8; MP4 only)', flag: '--live' },
  webhook: { type: 'object', description: 'POST the finished job here: {"url": "https://..."}' },
} as const satisfies Record<string, JobParamSpec>;

export type JobParamName = keyof typeof JOB_PARAM_SPECS;

/** The parameters each job type takes (camelCase; paths absolute, or relative to the storage folder). */
export const JOB_PARAMS: Record<JobType, { required: readonly JobParamName[]; optional: readonly JobParamName[] }> = {
  full_pipeline: { required: ['text', 'avatarImagePath'], optional: ['voiceProfileId', 'outputPath', 'config', 'live'] },
  voice_synthesis: { required: ['text'], optional: ['voiceProfileId', 'outputPath', 'maxSeconds', 'config'] },
  video_encoding: { required: ['imagePath', 'audioPath'], optional: ['outputPath', 'config'] },
  voice_clone: { required: ['referencePath'], optional: ['name', 'config'] },
  avatar_generation: { required: ['imagePath'], optional: ['outputPath', 'config'] },
  video_lipsync: { required: ['avatarImagePath', 'audioPath'], optional: ['outputPath', 'config', 'live', 'transcript'] },
};

/**
 * Parameters every job type takes besides its own. `webhook: {url}` asks the HTTP server to POST
 * the finished job to that URL; the handlers ignore it.
 */
export const JOB_COMMON_PARAMS: readonly JobParamName[] = ['webhook'];

const invalid = (field: string, problem: string, expected: string): AvatarError =>
  new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field, problem, expected });

function checkWebhookParam(v: JsonValue): void {
  const bad = (problem: string): AvatarError => invalid('webhook', problem, 'Give {"url": "https://..."}.');
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('must be an object');
  const extra = Object.keys(v).find((k) => k !== 'url');
  if (extra !== undefined) throw bad(`has an unknown field ${extra}`);
  if (typeof v.url !== 'string') throw bad('needs a url');
  let url: URL;
  try {
    url = new URL(v.url);
  } catch {
    throw bad('has a url that cannot be read');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('must be an http or https url');
  if (url.username !== '' || url.password !== '') throw bad('must not carry a user name or password');
}

/** One value against its spec; AVATAR_ERR_JOB_PARAMS_INVALID naming the parameter and what to give. */
function checkParam(key: JobParamName, v: JsonValue): void {
  const spec: JobParamSpec = JOB_PARAM_SPECS[key];
  if (key === 'webhook') return checkWebhookParam(v);
  if (spec.type === 'object') {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(key, 'must be an object', `Give ${key} as a JSON object.`);
    return;
  }
  if (spec.type === 'boolean') {
    if (typeof v !== 'boolean') throw invalid(key, 'must be true or false', `Give ${key} as true or false.`);
    return;
  }
  if (spec.type === 'number') {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(key, 'must be a number', `Give ${key} as a number.`);
    if (spec.exclusiveMinimum !== undefined && !(v > spec.exclusiveMinimum)) throw invalid(key, `must be above ${spec.exclusiveMinimum}`, `Give ${key} above ${spec.exclusiveMinimum}.`);
    if (spec.maximum !== undefined && v > spec.maximum) throw invalid(key, `must be at most ${spec.maximum}`, `Give ${key} at most ${spec.maximum}.`);
    return;
  }
  if (typeof v !== 'string') throw invalid(key, 'must be a string', `Give ${key} as text.`);
  if (spec.minLength !== undefined && v.length < spec.minLength) throw invalid(key, 'is empty', `Give ${key}.`);
  if (spec.maxLength !== undefined && v.length > spec.maxLength) throw invalid(key, `is longer than ${spec.maxLength} characters`, `Give at most ${spec.maxLength} characters.`);
  if (spec.pattern !== undefined && !new RegExp(spec.pattern).test(v)) throw invalid(key, 'is not in the expected form', `Give ${spec.description}.`);
}

/** Checks a job's params against its type before it is queued, so a bad job fails at submit, not later. */
export function checkJobParams(jobType: JobType, params: JobParams): void {
  const spec = JOB_PARAMS[jobType];
  const known: readonly string[] = [...spec.required, ...spec.optional, ...JOB_COMMON_PARAMS];
  for (const key of Object.keys(params)) {
    if (!known.includes(key)) throw invalid(key, `is not a parameter of ${jobType}`, `Known parameters: ${known.join(', ')}.`);
  }
  for (const key of spec.required) {
    const v = params[key];
    if (v === undefined || v === null || v === '') throw invalid(key, `is required for ${jobType}`, `Give ${key}.`);
  }
  for (const key of known as readonly JobParamName[]) {
    const v = params[key];
    if (v !== undefined && v !== null) checkParam(key, v);
  }
}
