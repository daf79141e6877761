import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import type { MultipartFile, MultipartValue } from '@fastify/multipart';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AvatarError, SNIFF_BYTES, decodeAudio, isAvatarError, notAcceptedImage, readFileHead, readImageSize, sniffAudio, sniffImage, storageError } from '@avatar/core';
import type { AudioKind, ErrorParams, ImageKind, Logger } from '@avatar/core';
import type { Api } from './routes/context.js';

/** What one upload may hold. Every limit is checked while the bytes arrive or before anything decodes. */
export interface UploadLimits {
  /** largest photo, bytes (default 20 MiB) */
  photoBytes: number;
  /** largest audio file, bytes (default 50 MiB) */
  audioBytes: number;
  /** files in one form (default 2; a route takes fewer when it names fewer file fields) */
  files: number;
  /** text fields in one form (default 20) */
  fields: number;
  /** largest text field, bytes (default 100 KiB: room for the longest job text) */
  fieldBytes: number;
  /** most pixels a photo's header may declare (default 40 000 000), checked before any pixel is decoded */
  imagePixels: number;
  /** longest audio, seconds as decoded, not as the header claims (default 120) */
  audioSeconds: number;
  /** how long decoding one audio upload may take, ms (default 30 000) */
  decodeTimeoutMs: number;
  /** forms whose files are checked (sniffed, sized, decoded) at once (default 2) */
  decodeConcurrency: number;
  /** forms waiting for a check slot (default 8; 0: none wait); beyond that 503 AVATAR_ERR_HTTP_BUSY */
  decodeQueue: number;
}

export const DEFAULT_UPLOAD_LIMITS: Readonly<UploadLimits> = {
  photoBytes: 20 * 1024 * 1024,
  audioBytes: 50 * 1024 * 1024,
  files: 2,
  fields: 20,
  fieldBytes: 100 * 1024,
  imagePixels: 40_000_000,
  audioSeconds: 120,
  decodeTimeoutMs: 30_000,
  decodeConcurrency: 2,
  decodeQueue: 8,
};

/** Limits that may be 0; every other one must be above 0. */
const MAY_BE_ZERO: ReadonlySet<keyof UploadLimits> = new Set(['decodeQueue']);

/** The defaults with `given` on top; a limit that is not a positive number is a configuration error. */
export function resolveUploadLimits(given: Partial<UploadLimits> = {}): UploadLimits {
  const limits: UploadLimits = { ...DEFAULT_UPLOAD_LIMITS };
  for (const key of Object.keys(DEFAULT_UPLOAD_LIMITS) as (keyof UploadLimits)[]) {
    const value = given[key];
    if (value === undefined) continue;
    const zeroOk = MAY_BE_ZERO.has(key);
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (value === 0 && !zeroOk)) {
      const problem = zeroOk ? 'must be a number of at least 0' : 'must be a positive number';
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `uploads.${key}`, problem, value: String(value), expected: `Give uploads.${key} a number ${zeroOk ? 'of 0 or more' : 'above 0'}.` });
    }
    limits[key] = value;
  }
  return limits;
}

/** The upload limits a person sets (`avatar serve` flags, the environment), in the units people think in. */
export interface UploadLimitSettings {
  /** largest photo, MiB */
  maxPhotoMb?: number;
  /** largest audio file, MiB */
  maxAudioMb?: number;
  /** most pixels a photo may have, megapixels */
  maxPixels?: number;
  /** longest audio, whole seconds */
  maxAudioSeconds?: number;
}

/** The accepted range of each setting, its environment variable and the limit it sets (times `scale`). */
export const UPLOAD_LIMIT_SETTINGS: Readonly<Record<keyof UploadLimitSettings, { env: string; limit: keyof UploadLimits; scale: number; min: number; max: number; whole: boolean; unit: string }>> = {
  maxPhotoMb: { env: 'AVATAR_UPLOAD_MAX_PHOTO_MB', limit: 'photoBytes', scale: 1024 * 1024, min: 0.01, max: 1024, whole: false, unit: 'MiB' },
  maxAudioMb: { env: 'AVATAR_UPLOAD_MAX_AUDIO_MB', limit: 'audioBytes', scale: 1024 * 1024, min: 0.01, max: 2048, whole: false, unit: 'MiB' },
  maxPixels: { env: 'AVATAR_UPLOAD_MAX_PIXELS', limit: 'imagePixels', scale: 1_000_000, min: 0.01, max: 1000, whole: false, unit: 'megapixels' },
  maxAudioSeconds: { env: 'AVATAR_UPLOAD_MAX_AUDIO_SECONDS', limit: 'audioSeconds', scale: 1, min: 1, max: 3600, whole: true, unit: 'seconds' },
};

/** One setting as text, from the environment or a flag named `source`; out of range is a usage error. */
export function parseUploadSetting(name: keyof UploadLimitSettings, raw: string, source = UPLOAD_LIMIT_SETTINGS[name].env): number {
  const { min, max, whole, unit } = UPLOAD_LIMIT_SETTINGS[name];
  const text = raw.trim();
  // plain decimals only: "0x10" or "1e3" in a setting is more likely a slip than a meaning
  const n = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n))) {
    throw new AvatarError('AVATAR_ERR_USAGE', { reason: `${source} must be ${whole ? 'a whole number' : 'a number'} of ${unit} from ${min} to ${max}, not "${raw.slice(0, 100)}"` });
  }
  return n;
}

/** The limits the settings give (bytes, pixels, seconds); settings left out are left out. */
export function uploadLimitsFromSettings(settings: UploadLimitSettings): Partial<UploadLimits> {
  const limits: Partial<UploadLimits> = {};
  for (const name of Object.keys(UPLOAD_LIMIT_SETTINGS) as (keyof UploadLimitSettings)[]) {
    const value = settings[name];
    if (value === undefined) continue;
    const { limit, scale } = UPLOAD_LIMIT_SETTINGS[name];
    limits[limit] = Math.round(value * scale);
  }
  return limits;
}

/**
 * AVATAR_UPLOAD_MAX_PHOTO_MB, AVATAR_UPLOAD_MAX_AUDIO_MB, AVATAR_UPLOAD_MAX_PIXELS (megapixels) and
 * AVATAR_UPLOAD_MAX_AUDIO_SECONDS as limits; unset or empty ones are left out, a bad one is a usage error.
 */
export function uploadLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): Partial<UploadLimits> {
  const settings: UploadLimitSettings = {};
  for (const name of Object.keys(UPLOAD_LIMIT_SETTINGS) as (keyof UploadLimitSettings)[]) {
    const raw = env[UPLOAD_LIMIT_SETTINGS[name].env];
    if (raw !== undefined && raw.trim() !== '') settings[name] = parseUploadSetting(name, raw);
  }
  return uploadLimitsFromSettings(settings);
}

export type UploadKind = 'image' | 'audio';

/** A file field a route takes. */
export interface FileField {
  field: string;
  kind: UploadKind;
  required: boolean;
}

export interface FormSpec {
  /** the folder the staging folder is made in; the route renames the staging folder from there */
  parent: string;
  files: readonly FileField[];
  /** the text fields the route takes; which of them are required is the route schema's business */
  fields: readonly string[];
  /**
   * Runs once every part has arrived and before any file is checked: refusing a form for its text
   * fields or for which files it holds costs no decoding. Throws to refuse.
   */
  precheck?(fields: Readonly<Record<string, string>>, files: readonly ReceivedFile[]): void;
}

/** A file as stored, before its content is checked: nothing about its format is known yet. */
export interface ReceivedFile {
  field: string;
  kind: UploadKind;
  /** absolute, inside the staging folder: `<field>.upload` */
  path: string;
  bytes: number;
  /** the client's file name, for messages only: it never becomes part of a path */
  clientName: string;
}

/** A file whose content passed the checks, named for its format. */
export interface UploadedFile extends ReceivedFile {
  format: ImageKind | AudioKind;
  /** file extension for the format, without the dot */
  ext: string;
  /** absolute, inside the staging folder: `<field>.<ext>` */
  path: string;
  width?: number;
  height?: number;
  /** decoded length (audio) */
  seconds?: number;
}

export interface ReceivedForm {
  fields: Record<string, string>;
  files: Record<string, UploadedFile>;
  /** the staging folder: `<parent>/.upload-<16 hex>`, holding the checked files */
  dir: string;
  /** aborted when the client goes away before its answer; check it before committing anything */
  signal: AbortSignal;
  /**
   * Removes the staging folder (a no-op once the route has renamed it into place). Only the request's
   * own flow calls it, once the handler has settled, so it never races the route's rename.
   */
  discard(): Promise<void>;
}

/** The staging folder's name prefix; `.deleted-` is what a delete renames an asset to before removing it. */
export const STAGING_PREFIXES = ['.upload-', '.deleted-'] as const;

/** The body's media type as messages show it (no parameters, at most 100 characters). */
export function mediaTypeOf(request: FastifyRequest): string {
  const header = request.headers['content-type'];
  if (header === undefined || header === '') return 'a body without Content-Type';
  return String(header).split(';')[0]?.trim().slice(0, 100) || 'an unnamed type';
}

const gone = new WeakMap<ServerResponse, AbortSignal>();

/** Aborted when the client goes away before its answer is written; one signal per response. */
export function clientGoneSignal(reply: FastifyReply): AbortSignal {
  const raw = reply.raw;
  let signal = gone.get(raw);
  if (!signal) {
    const controller = new AbortController();
    signal = controller.signal;
    gone.set(raw, signal);
    if (raw.destroyed && !raw.writableFinished) controller.abort();
    else raw.once('close', () => {
      if (!raw.writableFinished) controller.abort();
    });
  }
  return signal;
}

/** The error a route throws when its client went away before the commit: nothing is kept. */
export function clientGoneError(): AvatarError {
  return new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'upload (the client went away)' });
}

/** How long a client refused for a full queue is asked to wait, seconds. */
const BUSY_RETRY_AFTER_S = 5;

/**
 * A counting semaphore with a bounded queue: content checks (ffmpeg decodes above all) run at most
 * `concurrency` at once, at most `queue` wait, and the rest are refused at once rather than piling up.
 */
export class CheckGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly concurrency: number, readonly queue: number) {}

  get stats(): { running: number; queued: number } {
    return { running: this.running, queued: this.waiting.length };
  }

  /** A slot, or AVATAR_ERR_HTTP_BUSY when the queue is full; the returned function gives it back (once). */
  async enter(signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) throw clientGoneError();
    if (this.running < this.concurrency) {
      this.running += 1;
      return this.leave();
    }
    if (this.waiting.length >= this.queue) {
      throw new AvatarError('AVATAR_ERR_HTTP_BUSY', { running: this.running, queued: this.waiting.length, retryAfter: BUSY_RETRY_AFTER_S });
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const at = this.waiting.indexOf(go);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(clientGoneError());
      };
      const go = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiting.push(go);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    return this.leave();
  }

  private leave(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      // the slot passes straight to the next in line, so `running` only drops when nobody waits
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    };
  }
}

const EXTENSIONS: Record<ImageKind | AudioKind, string> = {
  jpeg: 'jpg', png: 'png', webp: 'webp', wav: 'wav', mp3: 'mp3', ogg: 'ogg', flac: 'flac', m4a: 'm4a',
};

/** ffmpeg demuxers for the sniffed containers: ffmpeg reads the upload as that format and nothing else. */
const DEMUXERS: Record<AudioKind, string> = { wav: 'wav', mp3: 'mp3', ogg: 'ogg', flac: 'flac', m4a: 'mov' };

const EXAMPLES: Record<UploadKind, string> = { image: 'portrait.jpg', audio: 'sample.wav' };

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;
  if (bytes >= 1024) return `${Math.round((bytes / 1024) * 10) / 10} KiB`;
  return `${bytes} bytes`;
}

/** The client's file name as messages show it: its last segment, printable, at most 100 characters. */
export function displayName(filename: string | undefined): string {
  const last = String(filename ?? '').split(/[/\\]/).pop() ?? '';
  const clean = last.replace(/[\u0000-\u001f\u007f]/g, '').slice(-100);
  return clean === '' ? '(no file name)' : clean;
}

const firstLine = (text: string): string => (text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '').slice(0, 300);

/** The multipart parser's own refusals as AvatarErrors with stable codes. */
function parserError(error: unknown, limits: { files: number; fields: number; parts: number }): AvatarError {
  if (isAvatarError(error)) return error;
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'FST_FILES_LIMIT': return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_TOO_MANY', { limit: limits.files, what: limits.files === 1 ? 'file' : 'files' });
    case 'FST_FIELDS_LIMIT': return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_TOO_MANY', { limit: limits.fields, what: 'text fields' });
    case 'FST_PARTS_LIMIT': return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_TOO_MANY', { limit: limits.parts, what: 'parts' });
    case 'FST_PROTO_VIOLATION': return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field: '(reserved name)', problem: 'has a name that is not allowed', expected: 'Name the fields as this route documents them.' });
    case 'FST_INVALID_JSON_FIELD_ERROR': return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field: '(a JSON field)', problem: 'is declared application/json but is not valid JSON', expected: 'Send valid JSON, or send the field as plain text.' });
    default: return new AvatarError('AVATAR_ERR_HTTP_UPLOAD_MALFORMED', { reason: firstLine(message) || 'the body ended early' });
  }
}

/** Decodes audio with ffmpeg (core's decodeAudio) and counts the samples; the header's own duration is never trusted. */
async function decodeSeconds(path: string, kind: AudioKind, limitSeconds: number, timeoutMs: number, signal?: AbortSignal): Promise<{ seconds: number } | { error: string }> {
  const rate = 8000;
  try {
    // the demuxer the bytes were sniffed as, never a guess from the content; past the limit nothing is decoded
    const { durationSeconds } = await decodeAudio(path, { sampleRate: rate, demuxer: DEMUXERS[kind], maxSeconds: limitSeconds + 1, timeoutMs, ...(signal && { signal }) });
    return { seconds: durationSeconds };
  } catch (error) {
    if (signal?.aborted) return { error: 'the request ended' };
    if (isAvatarError(error, 'AVATAR_ERR_INPUT_NOT_AUDIO')) return { error: String(error.params.reason).split(path).join('the file') };
    throw error;
  }
}

/**
 * Receives multipart forms safely: files stream to a staging folder under the storage folder with
 * server-chosen names, sizes are counted as the bytes arrive, types are sniffed from the bytes,
 * images are sized from their header before anything decodes them, audio is decoded to measure it.
 * A form that fails any check leaves nothing on disk.
 */
export class Uploads {
  readonly limits: UploadLimits;
  /** content checks running and waiting */
  readonly gate: CheckGate;

  constructor(readonly storageDir: string, limits: Partial<UploadLimits> = {}, private readonly log?: Logger) {
    this.limits = resolveUploadLimits(limits);
    this.gate = new CheckGate(Math.floor(this.limits.decodeConcurrency) || 1, Math.floor(this.limits.decodeQueue));
  }

  bytesFor(kind: UploadKind): number {
    return kind === 'image' ? this.limits.photoBytes : this.limits.audioBytes;
  }

  /** Reads the whole form, stores and checks its files; on any failure removes what it stored and throws. */
  async receive(request: FastifyRequest, reply: FastifyReply, spec: FormSpec): Promise<ReceivedForm> {
    const first = spec.files[0];
    if (!request.isMultipart()) {
      throw new AvatarError('AVATAR_ERR_HTTP_NOT_MULTIPART', { type: mediaTypeOf(request), field: first?.field ?? 'file', example: first ? EXAMPLES[first.kind] : 'file' });
    }
    await mkdir(spec.parent, { recursive: true });
    const dir = join(spec.parent, `.upload-${randomBytes(8).toString('hex')}`);
    await mkdir(dir);
    let discarded: Promise<void> | undefined;
    const discard = (): Promise<void> => (discarded ??= rm(dir, { recursive: true, force: true })
      .catch((error: unknown) => this.log?.warn(`could not remove the upload folder ${dir}`, { reason: String(error) })));
    // a client that goes away only aborts what runs: the folder is removed by whoever settles the
    // request (this method on failure, the route after its commit or refusal), never from here
    const signal = clientGoneSignal(reply);
    const form: ReceivedForm = { fields: {}, files: {}, dir, signal, discard };
    const stored: ReceivedFile[] = [];
    const counts = {
      files: Math.max(1, Math.min(spec.files.length, this.limits.files)),
      fields: Math.max(1, Math.min(Math.max(spec.fields.length, 1), this.limits.fields)),
      parts: 0,
    };
    counts.parts = counts.files + counts.fields;
    try {
      const fileSize = Math.max(1, ...spec.files.map((f) => this.bytesFor(f.kind)));
      let parts: AsyncIterableIterator<MultipartFile | MultipartValue>;
      try {
        parts = request.parts({
          limits: { fileSize, files: counts.files, fields: counts.fields, parts: counts.parts, fieldSize: this.limits.fieldBytes, fieldNameSize: 100, headerPairs: 20 },
        }) as AsyncIterableIterator<MultipartFile | MultipartValue>;
        for await (const part of parts) {
          if (part.type === 'file') await this.storeFile(part, spec, stored, dir);
          else this.takeField(part, spec, form);
        }
      } catch (error) {
        throw parserError(error, counts);
      }
      for (const f of spec.files) {
        if (f.required && !stored.some((s) => s.field === f.field)) {
          throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_MISSING', { what: f.kind === 'image' ? 'photo' : 'audio file', field: f.field, example: EXAMPLES[f.kind] });
        }
      }
      spec.precheck?.(form.fields, stored);
      if (stored.length > 0) {
        let leave: () => void;
        try {
          leave = await this.gate.enter(signal);
        } catch (error) {
          if (isAvatarError(error, 'AVATAR_ERR_HTTP_BUSY')) void reply.header('retry-after', String(BUSY_RETRY_AFTER_S));
          throw error;
        }
        try {
          for (const file of stored) form.files[file.field] = await this.checkContent(file, signal);
        } finally {
          leave();
        }
      }
      return form;
    } catch (error) {
      if (!request.raw.readableEnded) {
        // what is left of a refused upload is not read: the connection closes after the answer
        request.raw.unpipe();
        request.raw.resume();
        void reply.header('connection', 'close');
      }
      await discard();
      throw error;
    }
  }

  private async storeFile(part: MultipartFile, spec: FormSpec, stored: ReceivedFile[], dir: string): Promise<void> {
    const field = spec.files.find((f) => f.field === part.fieldname);
    const expected = `Files: ${spec.files.map((f) => `"${f.field}" (${f.kind === 'image' ? 'JPEG, PNG or WebP' : 'WAV, MP3, OGG, FLAC or M4A'})`).join(', ') || 'none'}; text fields: ${spec.fields.map((f) => `"${f}"`).join(', ') || 'none'}.`;
    if (!field) {
      part.file.resume();
      const problem = spec.fields.includes(part.fieldname) ? 'must be text, not a file' : 'is not a file this route takes';
      throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field: part.fieldname.slice(0, 100), problem, expected });
    }
    if (stored.some((s) => s.field === field.field)) {
      part.file.resume();
      throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field: field.field, problem: 'holds more than one file', expected: 'Send one file per field.' });
    }
    const clientName = displayName(part.filename);
    const input = `form field "${field.field}" (${clientName})`;
    const limit = this.bytesFor(field.kind);
    const tooLarge = (): AvatarError => new AvatarError('AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE', {
      input, limit: formatBytes(limit),
      advice: field.kind === 'image' ? 'a portrait photo needs a few megabytes at most; save it smaller or at a lower JPEG quality.' : 'trim the recording or send it compressed (MP3, OGG, FLAC).',
    });
    // the server names the file; the client's name is kept for messages only
    const path = join(dir, `${field.field}.upload`);
    let bytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        if (bytes > limit) done(tooLarge());
        else done(null, chunk);
      },
    });
    try {
      await pipeline(part.file, counter, createWriteStream(path, { flags: 'wx' }));
    } catch (error) {
      if (isAvatarError(error)) throw error;
      // the server's disk, not the client's file
      const storage = storageError(error);
      if (storage) throw storage;
      throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_MALFORMED', { reason: `the file in field "${field.field}" ended early (${firstLine(error instanceof Error ? error.message : String(error))})` });
    }
    if (part.file.truncated) throw tooLarge();
    if (bytes === 0) {
      // a browser form with no file chosen sends an empty, nameless part: the field is simply absent
      await rm(path, { force: true });
      if (part.filename) throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_MISSING', { what: `non-empty ${field.kind === 'image' ? 'photo' : 'audio file'} (${clientName} is empty)`, field: field.field, example: EXAMPLES[field.kind] });
      return;
    }
    stored.push({ field: field.field, kind: field.kind, path, bytes, clientName });
  }

  private takeField(part: MultipartValue, spec: FormSpec, form: ReceivedForm): void {
    const name = part.fieldname;
    if (!spec.fields.includes(name)) {
      const isFile = spec.files.some((f) => f.field === name);
      throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', {
        field: name.slice(0, 100),
        problem: isFile ? 'must be a file upload, not text' : 'is not a field this route takes',
        expected: isFile ? `Send a file: curl -F ${name}=@file` : `Text fields: ${spec.fields.map((f) => `"${f}"`).join(', ') || 'none'}; files: ${spec.files.map((f) => `"${f.field}"`).join(', ') || 'none'}.`,
      });
    }
    if (name in form.fields) throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_FIELD', { field: name, problem: 'was sent more than once', expected: 'Send each field once.' });
    if (part.valueTruncated) {
      throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE', { input: `form field "${name}"`, limit: formatBytes(this.limits.fieldBytes), advice: 'shorten the value.' });
    }
    // a part sent as application/json arrives parsed; fields are text, so it goes back to its JSON text
    form.fields[name] = typeof part.value === 'string' ? part.value : JSON.stringify(part.value);
  }

  /** Sniffs the bytes, checks the header's size or decodes the audio, then names the file for its format. */
  private async checkContent(file: ReceivedFile, signal: AbortSignal): Promise<UploadedFile> {
    const input = `form field "${file.field}"`;
    const path = file.clientName;
    const head = await readFileHead(file.path, SNIFF_BYTES);
    let checked: Omit<UploadedFile, 'ext' | 'path'>;
    if (file.kind === 'image') {
      const kind = await sniffImage(head);
      // (the bytes decide, never the name or Content-Type)
      if (!kind) throw await notAcceptedImage(head, input, path);
      const size = await readImageSize(file.path);
      if (!size) throw new AvatarError('AVATAR_ERR_INPUT_IMAGE_DAMAGED', { input, path, reason: `its ${kind.toUpperCase()} header gives no image size` });
      const pixels = size.width * size.height;
      if (pixels > this.limits.imagePixels) {
        throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_PIXELS', {
          input: `${input} (${path})`, width: size.width, height: size.height,
          megapixels: (pixels / 1e6).toFixed(1), limit: Math.round(this.limits.imagePixels / 1e5) / 10,
        });
      }
      checked = { ...file, format: kind, width: size.width, height: size.height };
    } else {
      const kind = await sniffAudio(head);
      if (!kind) throw new AvatarError('AVATAR_ERR_INPUT_NOT_AUDIO', { input, path, reason: 'its bytes do not start like a WAV, MP3, OGG, FLAC or M4A file; the name and Content-Type are not looked at' });
      const decoded = await decodeSeconds(file.path, kind, this.limits.audioSeconds, this.limits.decodeTimeoutMs, signal);
      if (signal.aborted) throw clientGoneError();
      const format = kind.toUpperCase();
      if ('error' in decoded) throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_UNDECODABLE', { input: `${input} (${path})`, format, reason: decoded.error });
      if (decoded.seconds <= 0) throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_UNDECODABLE', { input: `${input} (${path})`, format, reason: 'it holds no audio samples' });
      if (decoded.seconds > this.limits.audioSeconds) throw new AvatarError('AVATAR_ERR_HTTP_UPLOAD_AUDIO_TOO_LONG', { input: `${input} (${path})`, limit: this.limits.audioSeconds });
      checked = { ...file, format: kind, seconds: Math.round(decoded.seconds * 1000) / 1000 };
    }
    const ext = EXTENSIONS[checked.format];
    const named = join(file.path, '..', `${file.field}.${ext}`);
    await rename(file.path, named);
    return { ...checked, ext, path: named };
  }
}

/**
 * Removes staging (`.upload-*`) and half-deleted (`.deleted-*`) folders older than `olderThanMs` from
 * the upload folders: what a crash or a kill left behind. Younger ones may belong to a request still
 * running (another server on the same storage). Returns the paths removed.
 */
export async function sweepStaging(storageDir: string, options: { olderThanMs?: number; log?: Logger; now?: number } = {}): Promise<string[]> {
  const cutoff = (options.now ?? Date.now()) - (options.olderThanMs ?? 60 * 60 * 1000);
  const removed: string[] = [];
  for (const folder of ['avatars', 'voices', 'uploads']) {
    const parent = join(storageDir, folder);
    let names: string[];
    try {
      names = await readdir(parent);
    } catch {
      continue; // not made yet
    }
    for (const name of names) {
      if (!STAGING_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
      const path = join(parent, name);
      try {
        const info = await stat(path);
        if (!info.isDirectory() || info.mtimeMs >= cutoff) continue;
        await rm(path, { recursive: true, force: true });
        removed.push(path);
        options.log?.info(`removed a folder left over from an earlier run: ${folder}/${name}`, { modified: info.mtime.toISOString() });
      } catch (error) {
        options.log?.warn(`could not remove the left-over folder ${folder}/${name}`, { reason: String(error) });
      }
    }
  }
  return removed;
}

// ---- tying a form to a route's life cycle ----

declare module 'fastify' {
  interface FastifyInstance {
    /** multipart uploads, set up by installUploads */
    avatarUploads: Uploads;
  }
}

const forms = new WeakMap<FastifyRequest, ReceivedForm>();

/**
 * The multipart plugin (for its parser only: files are streamed by Uploads), the shared Uploads, and a
 * sweep of folders a crash left behind when the server starts. Call once per server and pass the
 * instance to the routes; a second call is refused, since its limits could not take effect.
 */
export function installUploads(api: Api, options: { storageDir: string; limits?: Partial<UploadLimits>; log?: Logger }): Uploads {
  if (api.hasDecorator('avatarUploads')) {
    throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'uploads are already installed on this server: install them once and pass the instance to the routes' });
  }
  const uploads = new Uploads(options.storageDir, options.limits ?? {}, options.log);
  api.decorate('avatarUploads', uploads);
  void api.register(multipart, { throwFileSizeLimit: true });
  api.addHook('onReady', async () => {
    await sweepStaging(options.storageDir, { ...(options.log && { log: options.log }) });
  });
  return uploads;
}

/**
 * Route hooks for a multipart route: preValidation receives the form (so the route's schema then
 * validates its text fields; file fields carry the client's file name), onError removes what was
 * stored when anything later fails. `spec` returns null to leave a request alone (a JSON body).
 * Without `uploads`, the instance installUploads put on the server is used.
 */
export function formHooks(spec: (request: FastifyRequest) => FormSpec | null, uploads?: Uploads) {
  return {
    preValidation: async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
      const wanted = spec(request);
      if (!wanted) return;
      const form = await (uploads ?? request.server.avatarUploads).receive(request, reply, wanted);
      forms.set(request, form);
      const files = Object.fromEntries(Object.values(form.files).map((f) => [f.field, f.clientName]));
      request.body = { ...form.fields, ...files };
    },
    onError: async (request: FastifyRequest): Promise<void> => {
      await forms.get(request)?.discard();
    },
  };
}

/** The form preValidation received for this request. */
export function receivedForm(request: FastifyRequest): ReceivedForm {
  const form = forms.get(request);
  if (!form) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'a multipart route ran without its form' });
  return form;
}

/** Replaces server paths in an error's params (staging files, the storage folder) with what the client knows. */
export function withClientNames(error: AvatarError, names: ReadonlyMap<string, string>): AvatarError {
  const swap = (value: string): string => {
    let out = value;
    for (const [path, name] of names) out = out.split(path).join(name);
    return out;
  };
  const params: Record<string, string | number | boolean | undefined> = {};
  let changed = false;
  for (const [key, value] of Object.entries(error.params as ErrorParams)) {
    const next = typeof value === 'string' ? swap(value) : value;
    if (next !== value) changed = true;
    params[key] = next;
  }
  return changed ? AvatarError.fromJSON({ ...error.toJSON(), params }, { cause: error }) : error;
}
