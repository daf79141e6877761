/**
 * One table of stable error codes. Each entry says what went wrong (message), what to do (hint),
 * the HTTP status the server answers with and the exit code the CLI ends with.
 * Templates use `{name}` placeholders filled from the error's params.
 * docs/errors.md documents every code; a test keeps the two in step.
 */

import { dirname } from 'node:path';

export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

export interface ErrorSpec {
  readonly message: string;
  readonly hint: string;
  readonly httpStatus: number;
  readonly exitCode: 0 | 1 | 2;
}

// generic so that each entry keeps its templates' literal types: the params a code needs are then known to the compiler
const usage = <const M extends string, const H extends string>(message: M, hint: H, httpStatus = 400) => ({ message, hint, httpStatus, exitCode: EXIT.usage });
const failure = <const M extends string, const H extends string>(message: M, hint: H, httpStatus = 500) => ({ message, hint, httpStatus, exitCode: EXIT.failed });

export const ERRORS = {
  // input: text, files, audio
  AVATAR_ERR_INPUT_TEXT_EMPTY: usage('{input} is empty (nothing to say)', 'Give a text with at least one word.'),
  AVATAR_ERR_INPUT_TEXT_TOO_LONG: usage(
    '{input} would take about {seconds}s to speak, over the limit of {limit}s',
    'Shorten the text or raise maxVideoLengthSeconds (--max-seconds).',
    413,
  ),
  AVATAR_ERR_INPUT_TEXT_UNSAYABLE: usage(
    '{input} has characters the {engine} voice cannot say: {chars}',
    'Remove or spell out those characters, or pick a voice for that language (avatar voices create --engine espeak-ng --language ...).',
  ),
  AVATAR_ERR_INPUT_FILE_MISSING: usage('{input} not found: {path}', "Check the path; relative paths are taken from the current folder (in a queued job's params, from the storage folder).", 400),
  AVATAR_ERR_INPUT_FILE_UNREADABLE: usage('{input} cannot be read: {path} ({reason})', 'Check the file permissions.'),
  AVATAR_ERR_INPUT_NOT_IMAGE: usage('{input} is not a JPEG, PNG or WebP image: {path} ({reason})', 'Give a photo in JPEG, PNG or WebP format.', 415),
  AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED: usage(
    '{input} is a {format} image; only JPEG, PNG and WebP are accepted: {path}',
    'Convert the photo to JPEG or PNG and try again.',
    415,
  ),
  AVATAR_ERR_INPUT_IMAGE_DAMAGED: usage(
    '{input} cannot be decoded: {path} ({reason})',
    'The file is damaged or incomplete (an interrupted copy or download?): save or export the photo again.',
    422,
  ),
  AVATAR_ERR_INPUT_IMAGE_TOO_LARGE: usage(
    '{input} is {width}x{height} pixels ({megapixels} MP), over the limit of {limit} MP: {path}',
    'Scale the photo down (a portrait needs a few megapixels at most) or raise the limit (AVATAR_FACE_MAX_MEGAPIXELS).',
    413,
  ),
  AVATAR_ERR_INPUT_NOT_AUDIO: usage('{input} is not audio that can be decoded: {path} ({reason})', 'Give a WAV, MP3, OGG or FLAC recording.', 415),
  AVATAR_ERR_INPUT_NOT_VIDEO: usage('{input} is not a video that can be inspected: {path} ({reason})', 'Give an MP4 or WebM file with a video stream and an audio track.', 415),
  AVATAR_ERR_INPUT_AUDIO_TOO_SHORT: usage(
    '{input} has {seconds}s of speech; at least {minimum}s are needed',
    'Record a longer sample: a few sentences of natural speech.',
  ),
  AVATAR_ERR_INPUT_AUDIO_TOO_LONG: usage(
    '{input} lasts {seconds}s, over the limit of {limit}s',
    'Trim the audio or raise maxVideoLengthSeconds (--max-seconds).',
    413,
  ),
  // output
  AVATAR_ERR_OUTPUT_DIR_MISSING: usage('the folder for {input} does not exist: {path}', 'Create the folder first or choose another output path.'),
  AVATAR_ERR_OUTPUT_NOT_WRITABLE: usage('the folder for {input} is not writable: {path}', 'Choose a folder you can write to.'),
  AVATAR_ERR_OUTPUT_IS_DIRECTORY: usage('{input} {path} is a folder, not a file', 'Name a file to write, e.g. {path}/video.mp4, or another path.'),
  AVATAR_ERR_OUTPUT_EXTENSION: usage(
    '{input} ends in "{extension}" but the output format is {format}',
    'Name the output "*.{format}" or choose the matching format (--format).',
  ),
  // configuration
  AVATAR_ERR_CONFIG_INVALID: usage('{field} {problem} (got {value})', '{expected}'),
  // voices
  AVATAR_ERR_VOICE_NOT_FOUND: usage('voice profile {id} does not exist', 'List the profiles with "avatar voices list" or create one with "avatar voices create".', 404),
  AVATAR_ERR_VOICE_INVALID: failure('voice profile {id} is damaged: {reason}', 'Delete it with "avatar voices delete {id}" and create it again.'),
  // faces (the photo decodes but cannot be animated)
  AVATAR_ERR_FACE_NONE: usage(
    'no face found in {input} ({path})',
    'Use a photo of one person facing the camera, with the face at least {minimum} px wide.',
    422,
  ),
  AVATAR_ERR_FACE_SEVERAL: usage(
    '{count} faces of similar size in {input}, none clearly the main one: {faces}',
    'Use a photo of one person, or crop the photo around the face to animate.',
    422,
  ),
  AVATAR_ERR_FACE_TOO_SMALL: usage(
    'the face in {input} is {width} px wide, under the minimum of {minimum} px',
    'Use a photo where the face is at least {minimum} px wide (closer up, or at a higher resolution).',
    422,
  ),
  AVATAR_ERR_FACE_POSE: usage(
    'the face in {input} is turned too far: {axis} is {value} degrees, over the limit of {limit}',
    'Use a photo where the person faces the camera ({axis} within plus or minus {limit} degrees).',
    422,
  ),
  AVATAR_ERR_FACE_CUT_OFF: usage(
    'the {part} of the face in {input} is cut off by the image border ({detail})',
    'Use a photo that shows the whole face, with some space below the chin.',
    422,
  ),
  AVATAR_ERR_FACE_SIDECAR_INVALID: usage(
    'the face details beside {input} are damaged: {path} ({reason})',
    'Delete the sidecar file and prepare the avatar again (avatar avatars prepare).',
    422,
  ),
  // tools and engines
  AVATAR_ERR_TOOL_MISSING: failure('{tool} is not installed or not on PATH', 'Install it: {install}', 503),
  AVATAR_ERR_TTS_FAILED: failure('the {engine} speech engine failed: {reason}', 'Run "avatar doctor" to check the engine; try another voice profile.'),
  AVATAR_ERR_ENCODE_FAILED: failure('ffmpeg could not encode {output}: {reason}', 'Check the inputs and settings; ffmpeg said why above.'),
  AVATAR_ERR_LIVE_OUTPUT_CLOSED: failure(
    'the live video\'s reader went away after {bytes} bytes',
    'Keep the player or the pipe open until the video ends (the run stopped; nothing was kept).',
  ),
  // models (ONNX files built by npm run models, or brought by the user with a descriptor)
  AVATAR_ERR_MODEL_MISSING: failure('model {name} is not built: {path}', 'Run "npm run models" (or the set-up step, npm run bootstrap) to build it.', 503),
  AVATAR_ERR_MODEL_CHECKSUM: failure(
    'model {name} does not match its checksum: {path} (expected sha256 {expected}, found {actual})',
    'Rebuild it with "npm run models -- --force"; for your own model, update the sha256 in its descriptor.',
    503,
  ),
  AVATAR_ERR_MODEL_INVALID: failure('model {name} cannot be used: {reason}', 'Check the model file and its descriptor (input size, layout, output names); see models/README.md.', 503),
  AVATAR_ERR_STAGE_NOT_INSTALLED: failure(
    'the {stage} stage is not installed: no "{stage}" plugin is registered',
    'Install a package that provides a {stage} plugin, or run a job type that does not need it.',
    501,
  ),
  AVATAR_ERR_STAGE_FAILED: failure('stage {stage} failed: {reason}', 'See the cause above; the run left nothing at the output path.'),
  // plugins
  AVATAR_ERR_PLUGIN_NOT_FOUND: usage('no {stage} engine named "{name}" is installed (installed: {known})', 'Pick one of the installed engines (avatar plugins list), or install the package that provides it.'),
  AVATAR_ERR_ENGINE_UNAVAILABLE: failure(
    'the {stage} engine "{engine}" ({source}) cannot run here: {detail}',
    'Install what it needs ({install}), or pick another {stage} engine (installed: {known}).',
    503,
  ),
  AVATAR_ERR_ENGINE_FAILED: failure(
    'the {stage} engine "{engine}" ({source}) failed: {reason}',
    'This is a fault in that engine: report it to the authors of {source}, or pick another {stage} engine. Nothing was written at the output path.',
  ),
  AVATAR_ERR_ENGINE_LICENSE: usage(
    'the {stage} engine "{engine}" ({source}) is not cleared for commercial use: {reason}',
    'Pick another {stage} engine or other options for it (avatar plugins list shows each licence), or run without commercialSafe where the use is not commercial.',
    422,
  ),
  AVATAR_ERR_ENGINE_STUCK: failure(
    'the {stage} engine "{engine}" ({source}) did not stop within {seconds}s of the run being cancelled; the run ended without it',
    'What the run wrote was removed and nothing was published at the output path. The engine ignores cancellation: report it to the authors of {source}, or pick another {stage} engine.',
    409,
  ),
  AVATAR_ERR_ENGINE_UNSUPPORTED: usage(
    'the {stage} engine "{engine}" ({source}) cannot {what}',
    'Pick a {stage} engine that can (avatar plugins list), such as the default one.',
    422,
  ),
  AVATAR_ERR_ENGINE_OPTION_INVALID: usage('option {option} of the {stage} engine "{engine}" ({source}) {problem}', '{expected}'),
  AVATAR_ERR_ENGINE_CONFLICT: usage(
    'voice profile {id} speaks with the {profileEngine} engine, but the run picks the tts engine "{engine}"',
    'Leave out the tts engine choice (a profile names its own engine), or use a voice profile made for {engine} (avatar voices list).',
  ),
  AVATAR_ERR_ENGINE_NO_DEFAULT_VOICE: usage(
    'the tts engine "{engine}" has no default voice, and the run names no voice profile',
    'Create a voice profile for it (avatar voices create --engine {engine} --voice ...) and pass its id.',
  ),
  AVATAR_ERR_PLUGIN_INVALID: failure('plugin {name} from {source} is invalid: {reason}', 'Fix the plugin package or remove it.'),
  AVATAR_ERR_PLUGIN_API_VERSION: failure(
    'plugin {name} from {source} was written for plugin API {got}; this version speaks {supported}',
    'Upgrade the plugin package or use a matching avatar version.',
  ),
  AVATAR_ERR_PLUGIN_DUPLICATE: failure('two plugins register {stage} engine "{name}": {first} and {second}', 'Uninstall one of the two packages.'),
  // resources
  AVATAR_ERR_RESOURCE_BUDGET: failure(
    '{name} needs {needMB} MB of {kind} memory but the budget is {budgetMB} MB',
    'Raise the budget (AVATAR_{kindUpper}_BUDGET_MB) or pick a lighter engine.',
    503,
  ),
  AVATAR_ERR_GPU_MEMORY: failure(
    '{name} needs {needMB} MB of GPU memory, but the GPU with the most room, {device}, has {freeMB} MB free',
    'Free GPU memory (nvidia-smi lists what uses it), run fewer jobs at once, or pick a lighter engine.',
    503,
  ),
  AVATAR_ERR_GPU_UNAVAILABLE: failure(
    '{name} runs only on a GPU, and none can be used here ({reason})',
    'Run it on a machine with an NVIDIA GPU and driver (avatar doctor says what was found), or pick an engine that runs on the CPU.',
    503,
  ),
  // jobs and queue
  AVATAR_ERR_JOB_NOT_FOUND: usage('job {id} does not exist', 'List jobs with "avatar jobs list".', 404),
  AVATAR_ERR_JOB_FINISHED: usage('job {id} already finished ({status}); it cannot be {action}', 'Nothing to do: look at its result with "avatar jobs status {id}".', 409),
  AVATAR_ERR_JOB_RUNNING: usage('job {id} is running; it cannot be {action}', 'Cancel it first with "avatar jobs cancel {id}".', 409),
  AVATAR_ERR_JOB_TYPE_UNKNOWN: usage('unknown job type "{type}"', 'Use one of: {known}.'),
  AVATAR_ERR_JOB_PARAMS_INVALID: usage('job parameter {field} {problem}', '{expected}'),
  AVATAR_ERR_JOB_CANCELLED: failure('job {id} was cancelled during {stage}', 'Submit it again if you still want the result.', 409),
  AVATAR_ERR_QUEUE_WORKER_LOST: failure(
    'job {id} was abandoned by its worker {attempts} times (last worker {workerId} stopped renewing its lease)',
    'Look at the worker logs; the job can be submitted again.',
  ),
  // (409 over HTTP: the job exists, but its record cannot be read as it is)
  AVATAR_ERR_QUEUE_CORRUPT_FILE: failure('job file {path} is damaged and was skipped: {reason}', 'Move the file away or delete it; other jobs are unaffected.', 409),
  AVATAR_ERR_JOB_NOT_FINISHED: usage('job {id} is {status}; it has no result yet', 'Wait until it finishes (GET /v1/jobs/{id}/events, or "avatar jobs status {id}").', 409),
  AVATAR_ERR_JOB_NO_RESULT: usage('job {id} has no result file to send: {reason}', 'Look at the job ("avatar jobs status {id}"); submit it again if you need the file.', 409),
  AVATAR_ERR_JOB_NO_LIVE: usage(
    'job {id} has no live video file {file}: {reason}',
    'Submit full_pipeline or video_lipsync jobs with "live": true; the playlist appears once the first second is encoded.',
    404,
  ),
  AVATAR_ERR_STORE_UNSUPPORTED: usage(
    'no job store for {scheme} URLs is installed ({url}); this one opens: {known}',
    'Install the package that provides it (for redis:// and rediss://, a Redis store package), or leave out --store and AVATAR_STORE for the file store in the storage folder.',
  ),
  // a server store (Redis) that does not answer; its password is never part of {url}
  AVATAR_ERR_STORE_UNAVAILABLE: failure(
    'the job store at {url} does not answer: {reason}',
    'Start it or check the address (--store, AVATAR_STORE) and its password (AVATAR_REDIS_PASSWORD); workers keep retrying and resume when it is back.',
    503,
  ),
  AVATAR_ERR_STORAGE_NOT_WRITABLE: failure('storage folder {path} is not writable: {reason}', 'Point --storage (or AVATAR_STORAGE) at a writable folder.', 503),
  // the disk underneath: what was being written is removed, so nothing half-written stays
  AVATAR_ERR_STORAGE_FULL: failure(
    'the disk holding {folder} is full ({reason}) while writing {path}',
    'Free space on that disk, or point --storage / --output at one with room, then run again: nothing half-written was kept, and queued jobs wait.',
    507,
  ),
  AVATAR_ERR_STORAGE_READ_ONLY: failure(
    'the folder {folder} is on a read-only file system (writing {path})',
    'Point --storage / --output at a writable folder, or remount the disk read-write.',
    503,
  ),
  AVATAR_ERR_STORAGE_IO: failure(
    'the disk holding {folder} reported an input/output error ({operation} {path})',
    'The disk or its file system is failing: check it (dmesg, fsck) before running again; nothing half-written was kept.',
    503,
  ),
  // HTTP API
  AVATAR_ERR_HTTP_VALIDATION: usage('the request {part} is invalid: {reason}', 'Fix the request; GET /openapi.json describes every route.'),
  AVATAR_ERR_HTTP_BAD_REQUEST: usage('the request cannot be read: {reason}', 'Send a JSON body with Content-Type: application/json.'),
  AVATAR_ERR_HTTP_BODY_TOO_LARGE: usage('the request body is over the limit of {limit} bytes', 'Send a smaller body.', 413),
  AVATAR_ERR_HTTP_UNSUPPORTED_MEDIA: usage('the request body type {type} is not accepted', 'Send JSON with Content-Type: application/json.', 415),
  AVATAR_ERR_HTTP_NOT_FOUND: usage('no route {method} {path}', 'GET /openapi.json lists the routes.', 404),
  AVATAR_ERR_HTTP_UNAUTHORIZED: usage('authentication required', 'Send a valid API key: Authorization: Bearer <key>.', 401),
  AVATAR_ERR_HTTP_RANGE: usage('the requested range cannot be served from a file of {size} bytes', 'Ask for a range inside the file, e.g. Range: bytes=0-1023.', 416),
  AVATAR_ERR_HTTP_RATE_LIMITED: usage('too many requests: over {limit} in {window}', 'Wait {retryAfter}s (see the Retry-After header) and send fewer requests.', 429),
  AVATAR_ERR_HTTP_WEBHOOK_UNAVAILABLE: usage(
    'this server cannot send webhooks: no signing secret is configured',
    'Set AVATAR_WEBHOOK_SECRET on the server, or submit the job without params.webhook and follow it with GET /v1/jobs/:id/events.',
  ),
  AVATAR_ERR_HTTP_WEBHOOK_REFUSED: usage(
    'webhook url {url} is refused: {reason}',
    'This server only delivers to public addresses; give a public http(s) url (the server allows private ones with AVATAR_WEBHOOK_ALLOW_PRIVATE=1).',
  ),
  AVATAR_ERR_HTTP_API_KEYS_FILE: usage(
    'the API keys file {path} cannot be used: {reason}',
    'Give a readable file with one key per line (# starts a comment), or use AVATAR_API_KEYS.',
  ),
  AVATAR_ERR_HTTP_SHUTTING_DOWN: failure('the server is shutting down', 'Send the request again in a moment, to this server once restarted or to another one.', 503),
  AVATAR_ERR_HTTP_LISTEN_UNSAFE: usage(
    'refusing to listen on {host} without API keys',
    'Set AVATAR_API_KEYS (comma-separated keys) before serving beyond loopback, or listen on 127.0.0.1.',
  ),
  // HTTP uploads (multipart forms) and the assets they create
  AVATAR_ERR_HTTP_NOT_MULTIPART: usage(
    'this route takes a multipart/form-data upload, not {type}',
    'Send the file as a form, e.g. curl -F {field}=@{example} ...',
    415,
  ),
  AVATAR_ERR_HTTP_UPLOAD_MALFORMED: usage(
    'the multipart body cannot be read: {reason}',
    'Send multipart/form-data as browsers and curl -F write it, with the boundary named in Content-Type.',
  ),
  AVATAR_ERR_HTTP_UPLOAD_FIELD: usage('form field "{field}" {problem}', '{expected}'),
  AVATAR_ERR_HTTP_UPLOAD_MISSING: usage('the form has no {what} in field "{field}"', 'Send it as form field "{field}", e.g. curl -F {field}=@{example}'),
  AVATAR_ERR_HTTP_UPLOAD_TOO_MANY: usage('the form has more than {limit} {what}', 'Send at most {limit} {what} in one request.', 413),
  AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE: usage('{input} is larger than the limit of {limit}', 'Send less: {advice}', 413),
  AVATAR_ERR_HTTP_UPLOAD_PIXELS: usage(
    '{input} declares {width}x{height} pixels ({megapixels} MP), over the limit of {limit} MP',
    'Scale the photo down: a portrait needs a few megapixels at most.',
    413,
  ),
  AVATAR_ERR_HTTP_UPLOAD_AUDIO_TOO_LONG: usage(
    '{input} lasts more than {limit}s, the longest recording accepted',
    'Trim the recording to at most {limit}s.',
    413,
  ),
  AVATAR_ERR_HTTP_UPLOAD_UNDECODABLE: usage(
    '{input} looks like {format} but cannot be decoded: {reason}',
    'The file is damaged, incomplete or not what its header says: export or record it again.',
    422,
  ),
  AVATAR_ERR_HTTP_BUSY: failure(
    'the server is already checking {running} uploads with {queued} more waiting, its limit',
    'Send the upload again in {retryAfter}s (see the Retry-After header).',
    503,
  ),
  AVATAR_ERR_HTTP_AVATAR_NOT_FOUND: usage('avatar {id} does not exist', 'List the avatars with GET /v1/avatars, or upload a photo with POST /v1/avatars.', 404),
  // catch-all
  AVATAR_ERR_CANCELLED: failure('the run was cancelled during {stage}', 'Nothing was written at the output path.', 409),
  AVATAR_ERR_USAGE: usage('{reason}', 'Run the command with --help to see its usage.'),
  AVATAR_ERR_INTERNAL: failure('unexpected internal error: {reason}', 'This is a bug: please report it with the command you ran.'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;
export type ErrorParams = Readonly<Record<string, string | number | boolean | undefined>>;

/** The `{name}` placeholders of a template. */
export type Placeholders<S extends string> = S extends `${string}{${infer P}}${infer Rest}` ? P | Placeholders<Rest> : never;

/** The params a spec's message and hint need: each placeholder required, more allowed. */
export type ParamsOf<Spec extends { readonly message: string; readonly hint: string }> =
  [Placeholders<Spec['message'] | Spec['hint']>] extends [never]
    ? ErrorParams
    : { readonly [K in Placeholders<Spec['message'] | Spec['hint']>]: string | number | boolean } & ErrorParams;

/** The params code C needs. */
export type ParamsFor<C extends ErrorCode> = ParamsOf<(typeof ERRORS)[C]>;

/**
 * An error code a plugin defines: its namespace (upper case, not AVATAR), then _ERR_, then the name,
 * e.g. WHISPER_ERR_VOICE_MISSING. defineErrorCodes makes them.
 */
export type PluginErrorCode = `${string}_ERR_${string}`;

type ConstructorArgs = { [C in ErrorCode]: [code: C, ...rest: {} extends ParamsFor<C> ? [params?: ParamsFor<C>, options?: { cause?: unknown }] : [params: ParamsFor<C>, options?: { cause?: unknown }]] }[ErrorCode];

/** Marks the project's errors so that any copy of this package recognises them (not instanceof: a plugin may bundle its own copy). */
export const AVATAR_ERROR_BRAND: unique symbol = Symbol.for('avatar.error') as never;

// plugins' error codes, kept where every copy of this package finds them
const PLUGIN_CODES_KEY = Symbol.for('avatar.errorCodes');
type CodeTable = Map<string, ErrorSpec & { namespace: string }>;
function pluginCodeTable(): CodeTable {
  const holder = globalThis as { [PLUGIN_CODES_KEY]?: CodeTable };
  holder[PLUGIN_CODES_KEY] ??= new Map();
  return holder[PLUGIN_CODES_KEY];
}

function fill(template: string, params: ErrorParams): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) => {
    const value = params[key];
    return value === undefined ? whole : String(value);
  });
}

export interface AvatarErrorJSON {
  code: ErrorCode | PluginErrorCode;
  message: string;
  hint: string;
  params: ErrorParams;
}

export class AvatarError extends Error {
  override readonly name = 'AvatarError';
  readonly code: ErrorCode | PluginErrorCode;
  readonly params: ErrorParams;
  readonly hint: string;
  readonly httpStatus: number;
  readonly exitCode: 0 | 1 | 2;
  declare readonly [AVATAR_ERROR_BRAND]: true;

  /** `new AvatarError(code, params)`: every placeholder of the code's message and hint must be given. */
  constructor(...args: ConstructorArgs) {
    const [code, params = {}, options = {}] = args as [ErrorCode, ErrorParams?, { cause?: unknown }?];
    const spec: ErrorSpec = ERRORS[code];
    super(fill(spec.message, params), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.params = params;
    this.hint = fill(spec.hint, params);
    this.httpStatus = spec.httpStatus;
    this.exitCode = spec.exitCode;
    Object.defineProperty(this, AVATAR_ERROR_BRAND, { value: true });
  }

  /**
   * An error with a spec of its own: a plugin's code (defineErrorCodes), or one from another copy of
   * this package, taken over as it was written there.
   */
  static withSpec(code: ErrorCode | PluginErrorCode, spec: Pick<ErrorSpec, 'httpStatus' | 'exitCode'> & { message: string; hint: string }, params: ErrorParams, options: { cause?: unknown; filled?: boolean } = {}): AvatarError {
    const error = new AvatarError('AVATAR_ERR_INTERNAL', { reason: '' }, options);
    const message = options.filled ? spec.message : fill(spec.message, params);
    Object.defineProperties(error, {
      message: { value: message, writable: true, configurable: true },
      code: { value: code },
      params: { value: params },
      hint: { value: options.filled ? spec.hint : fill(spec.hint, params) },
      httpStatus: { value: spec.httpStatus },
      exitCode: { value: spec.exitCode },
    });
    error.stack = `${error.name}: ${message}${error.stack?.slice(error.stack.indexOf('\n')) ?? ''}`;
    return error;
  }

  /**
   * The error a JSON form describes (a job's stored error, a run's result): message and hint written
   * again from the params where the code is known here, kept as they were otherwise.
   */
  static fromJSON(json: AvatarErrorJSON, options: { cause?: unknown } = {}): AvatarError {
    const spec = errorSpec(json.code);
    if (spec) return AvatarError.withSpec(json.code, spec, json.params, options);
    return AvatarError.withSpec(json.code, { message: json.message, hint: json.hint, httpStatus: 500, exitCode: EXIT.failed }, json.params, { ...options, filled: true });
  }

  toJSON(): AvatarErrorJSON {
    return { code: this.code, message: this.message, hint: this.hint, params: this.params };
  }
}

/**
 * Whether a value is one of the project's errors, by its brand (Symbol.for, as fastify marks its own),
 * so an error from a plugin that bundles its own copy of this package is still recognised.
 */
export function isAvatarError(value: unknown, code?: ErrorCode | PluginErrorCode): value is AvatarError {
  const branded = value instanceof AvatarError || (value instanceof Error && (value as { [AVATAR_ERROR_BRAND]?: unknown })[AVATAR_ERROR_BRAND] === true);
  return branded && typeof (value as AvatarError).code === 'string' && (code === undefined || (value as AvatarError).code === code);
}

/** What a code means (message and hint templates, exit code, HTTP status): the project's own or a plugin's. */
export function errorSpec(code: string): ErrorSpec | undefined {
  return (ERRORS as Record<string, ErrorSpec>)[code] ?? pluginCodeTable().get(code);
}

/** One plugin error: templates with {name} placeholders, and what it means to the CLI and the server. */
export interface PluginErrorSpec {
  readonly message: string;
  readonly hint: string;
  /** default 500 */
  readonly httpStatus?: number;
  /** 2: the user's input or settings; 1 (default): the run failed */
  readonly exitCode?: 1 | 2;
}

export interface PluginErrors<T extends Record<string, PluginErrorSpec>> {
  /** each name's full code, e.g. codes.VOICE_MISSING === 'WHISPER_ERR_VOICE_MISSING' */
  readonly codes: { readonly [N in keyof T & string]: PluginErrorCode };
  /** the error for a name; every placeholder of its message and hint must be given */
  create<N extends keyof T & string>(name: N, ...rest: {} extends ParamsOf<T[N]> ? [params?: ParamsOf<T[N]>, options?: { cause?: unknown }] : [params: ParamsOf<T[N]>, options?: { cause?: unknown }]): AvatarError;
}

/**
 * A plugin's own error codes, namespaced: `defineErrorCodes('whisper', { VOICE_MISSING: {...} })`
 * gives WHISPER_ERR_VOICE_MISSING. The CLI exits and the server answers with the spec's codes, and
 * `avatar plugins info` lists them. A namespace is the plugin package's to keep; redefining a code
 * with another meaning throws.
 */
export function defineErrorCodes<const T extends Record<string, PluginErrorSpec>>(namespace: string, table: T): PluginErrors<T> {
  const ns = namespace.toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  if (!/^[A-Z][A-Z0-9_]{1,31}$/.test(ns) || ns === 'AVATAR') throw new TypeError(`error namespace "${namespace}" must be a plugin's name (letters and digits), not avatar`);
  const codes: Record<string, PluginErrorCode> = {};
  const specs = new Map<string, ErrorSpec>();
  const registry = pluginCodeTable();
  for (const [name, entry] of Object.entries(table)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(name)) throw new TypeError(`error name "${name}" must be upper case, e.g. VOICE_MISSING`);
    const code: PluginErrorCode = `${ns}_ERR_${name}`;
    const spec: ErrorSpec = { message: entry.message, hint: entry.hint, httpStatus: entry.httpStatus ?? 500, exitCode: entry.exitCode ?? EXIT.failed };
    const known = registry.get(code);
    if (known && (known.message !== spec.message || known.hint !== spec.hint || known.httpStatus !== spec.httpStatus || known.exitCode !== spec.exitCode)) {
      throw new TypeError(`error code ${code} is already defined with another meaning`);
    }
    registry.set(code, { ...spec, namespace: ns });
    codes[name] = code;
    specs.set(name, spec);
  }
  return {
    codes: codes as PluginErrors<T>['codes'],
    create(name, ...rest) {
      const [params = {}, options = {}] = rest as [ErrorParams?, { cause?: unknown }?];
      const spec = specs.get(name);
      if (!spec) throw new TypeError(`no error named ${name} in ${ns}`);
      return AvatarError.withSpec(`${ns}_ERR_${name}`, spec, params, options);
    },
  };
}

/** The plugin error codes defined in this process, by code. */
export function pluginErrorCodes(): ReadonlyMap<string, ErrorSpec & { namespace: string }> {
  return pluginCodeTable();
}

/**
 * The file a user knows by name: a file is written under a hidden temporary name beside it
 * (`.name.partial-<pid>-<tag>-<hex>.ext`, `.name.tmp-<pid>-<hex>`, fsutil.ts) and renamed when whole.
 */
export function intendedPath(path: string): string {
  let out = path;
  for (let before = ''; before !== out; ) {
    before = out;
    out = out.replace(/(^|\/)\.([^/]+?)\.partial-\d+(?:-[0-9a-f]+)+(\.[^./]*)?$/, '$1$2$3').replace(/(^|\/)\.([^/]+?)\.tmp-\d+-[0-9a-f]+$/, '$1$2');
  }
  return out;
}

/** Where a system error happened: the file written (a copy's destination), and the folder holding it. */
function systemErrorPlace(error: NodeJS.ErrnoException & { dest?: string }): { path: string; folder: string } {
  const written = error.dest ?? error.path;
  if (!written) return { path: 'a file', folder: 'its folder' };
  const path = intendedPath(written);
  return { path, folder: dirname(path) };
}

/**
 * A file system's own failure (a full disk, a read-only or failing one) as the error of its own code,
 * naming the file and its folder; undefined for any other value. Every write in the project ends up
 * here through toAvatarError, so none of them is reported as a bug.
 */
export function storageError(value: unknown): AvatarError | undefined {
  if (!(value instanceof Error)) return undefined;
  const error = value as NodeJS.ErrnoException & { dest?: string };
  switch (error.code) {
    case 'ENOSPC':
      return new AvatarError('AVATAR_ERR_STORAGE_FULL', { ...systemErrorPlace(error), reason: 'no space left' }, { cause: value });
    case 'EDQUOT':
      return new AvatarError('AVATAR_ERR_STORAGE_FULL', { ...systemErrorPlace(error), reason: 'the disk quota is used up' }, { cause: value });
    case 'EROFS':
      return new AvatarError('AVATAR_ERR_STORAGE_READ_ONLY', systemErrorPlace(error), { cause: value });
    case 'EIO':
      return new AvatarError('AVATAR_ERR_STORAGE_IO', { ...systemErrorPlace(error), operation: error.syscall ?? 'writing' }, { cause: value });
    default:
      return undefined;
  }
}

/**
 * Any thrown value as an AvatarError: aborts become cancellations, a file system's failures their own
 * codes (storageError), the rest internal errors.
 */
export function toAvatarError(value: unknown, stage = 'run'): AvatarError {
  if (value instanceof AvatarError) return value;
  // one of ours from another copy of this package (a plugin's own): taken over as it was written
  if (isAvatarError(value)) {
    const { code, params, hint, httpStatus, exitCode, message } = value;
    return AvatarError.withSpec(code, { message, hint, httpStatus, exitCode: exitCode === 0 || exitCode === 2 ? exitCode : EXIT.failed }, params ?? {}, { cause: value, filled: true });
  }
  if (value instanceof Error && value.name === 'AbortError') return new AvatarError('AVATAR_ERR_CANCELLED', { stage }, { cause: value });
  const storage = storageError(value);
  if (storage) return storage;
  const reason = value instanceof Error ? value.message : String(value);
  return new AvatarError('AVATAR_ERR_INTERNAL', { reason }, { cause: value });
}
