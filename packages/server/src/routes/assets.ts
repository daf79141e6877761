import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';
import type { FastifyError, FastifyRequest } from 'fastify';
import { AvatarError, VOICE_ID_PATTERN, atomicWriteFile, installedVoices, toAvatarError } from '@avatar/core';
import type { Avatar, PipelineCoordinator, VoiceProfile } from '@avatar/core';
import { EngineVoiceSchema, errorResponses } from '../schemas.js';
import { clientGoneError, formHooks, mediaTypeOf, receivedForm, withClientNames } from '../uploads.js';
import type { ReceivedForm, Uploads } from '../uploads.js';
import type { Api, RouteContext } from './context.js';

/*
 * Storage layout (all under the storage folder):
 *   avatars/<avatarId>/photo.<jpg|png|webp>   the uploaded photo, byte for byte as it came
 *   avatars/<avatarId>/avatar.json            what the face check found (AvatarInfo and the photo's format)
 *   avatars/.upload-<16 hex>/                 an upload being received and checked; renamed to
 *                                             avatars/<avatarId> in one step once every check passed
 *   voices/vp-<8 hex>.json                    voice profiles (core's VoiceProfileStore); the sample a profile
 *                                             was measured from is not kept
 * Ids are chosen by the server; no client file name ever becomes part of a path.
 */

export const AVATAR_ID_PATTERN = /^av-[0-9a-f]{8}$/;
const PHOTO_FILE = /^photo\.(jpg|png|webp)$/;
const META_FILE = 'avatar.json';
const META_FORMAT = 'avatar-upload';

const PHOTO_TYPES: Record<string, string> = { jpg: 'image/jpeg', png: 'image/png', webp: 'image/webp' };

const BoxSchema = Type.Object({ x: Type.Number(), y: Type.Number(), width: Type.Number(), height: Type.Number() });

export const AvatarInfoSchema = Type.Object({
  avatarId: Type.String({ description: 'av-<8 hex>' }),
  createdAt: Type.String(),
  width: Type.Integer({ description: 'the photo, px (after its EXIF orientation)' }),
  height: Type.Integer(),
  imagePath: Type.String({ description: 'storage-relative path of the photo, usable as params.avatarImagePath' }),
  face: Type.Object({
    usable: Type.Literal(true),
    score: Type.Number({ description: 'detector confidence 0..1' }),
    box: BoxSchema,
    warnings: Type.Array(Type.String(), { description: 'quality remarks that do not refuse the photo' }),
  }),
});
export type AvatarInfo = Static<typeof AvatarInfoSchema>;

export const VoiceInfoSchema = Type.Object({
  voiceProfileId: Type.String({ description: 'vp-<8 hex>, usable as params.voiceProfileId' }),
  name: Type.String(),
  createdAt: Type.String(),
  engine: Type.String(),
  voice: Type.String(),
  language: Type.String(),
  rate: Type.Number(),
  pitch: Type.Number(),
  origin: Type.Union([Type.Literal('manual'), Type.Literal('matched')]),
  measured: Type.Optional(Type.Object({
    durationSeconds: Type.Number(),
    voicedSeconds: Type.Number(),
    medianPitchHz: Type.Number(),
    pitchRangeHz: Type.Array(Type.Number()),
    syllablesPerSecond: Type.Number(),
  })),
  reason: Type.Optional(Type.String()),
});
export type VoiceInfo = Static<typeof VoiceInfoSchema>;

/** The 422 a refused photo gets: the error, and the face check's reasons. */
export const FaceRefusalSchema = Type.Object({
  error: Type.Object({
    code: Type.String(),
    message: Type.String(),
    hint: Type.String(),
    reasons: Type.Optional(Type.Array(Type.Object({ rule: Type.String(), code: Type.String(), message: Type.String(), hint: Type.String() }))),
  }),
});

const file = (description: string) => Type.String({ format: 'binary', description });

const AvatarFormSchema = Type.Object(
  { photo: file('the portrait: JPEG, PNG or WebP, recognised from its bytes') },
  { required: ['photo'], additionalProperties: false },
);
const VoiceFormSchema = Type.Object(
  {
    sample: file('a recording of the voice: WAV, MP3, OGG, FLAC or M4A, recognised from its bytes; a few sentences of speech'),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'a name to recognise the profile by' })),
  },
  { additionalProperties: false },
);

const AvatarIdParams = Type.Object({ id: Type.String({ pattern: AVATAR_ID_PATTERN.source, description: 'av-<8 hex>' }) }, { additionalProperties: false });
const VoiceIdParams = Type.Object({ id: Type.String({ pattern: VOICE_ID_PATTERN.source, description: 'vp-<8 hex>' }) }, { additionalProperties: false });
const Photo = Type.Unsafe<NodeJS.ReadableStream>({ type: 'string', format: 'binary', description: 'the photo as uploaded' });

/** Which face rule an error from the face stage stands for. */
function ruleOf(error: AvatarError): string {
  const p = error.params;
  switch (error.code) {
    case 'AVATAR_ERR_FACE_NONE': return 'face-found';
    case 'AVATAR_ERR_FACE_SEVERAL': return 'one-face';
    case 'AVATAR_ERR_FACE_TOO_SMALL': return 'min-size';
    case 'AVATAR_ERR_FACE_POSE': return typeof p.axis === 'string' ? p.axis : 'pose';
    case 'AVATAR_ERR_FACE_CUT_OFF': return typeof p.part === 'string' ? `${p.part}-inside` : 'cut-off';
    case 'AVATAR_ERR_INPUT_IMAGE_DAMAGED': return 'decodable';
    default: return 'face-check';
  }
}

/** A refusal by the face stage (a 422): the photo is fine as a file but cannot be animated. */
function isRefusal(error: AvatarError): boolean {
  return error.httpStatus === 422;
}

/** A 415 from fastify (no parser for the body's type) says what these routes take instead. */
function notMultipart(field: string, example: string) {
  return (error: FastifyError, request: FastifyRequest): never => {
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      throw new AvatarError('AVATAR_ERR_HTTP_NOT_MULTIPART', { type: mediaTypeOf(request), field, example });
    }
    throw error;
  };
}

export function toVoiceInfo(profile: VoiceProfile): VoiceInfo {
  const { id, name, createdAt, engine, voice, language, rate, pitch, origin, measured, reason } = profile;
  return {
    voiceProfileId: id, name, createdAt, engine, voice, language, rate, pitch, origin,
    ...(measured && { measured: { ...measured, pitchRangeHz: [...measured.pitchRangeHz] } }),
    ...(reason !== undefined && { reason }),
  };
}

interface AvatarMeta {
  format: typeof META_FORMAT;
  version: 1;
  photo: { file: string; format: string; bytes: number };
  faceEngine: string;
  avatar: Omit<AvatarInfo, 'imagePath'>;
}

export interface AssetRouteOptions {
  coordinator: PipelineCoordinator;
  /** the server's one Uploads (installUploads), with its limits */
  uploads: Uploads;
}

/**
 * `/v1/avatars` (portrait photos checked by the face stage and kept for jobs) and `/v1/voices`
 * (voice profiles measured from a recording). The face check and the voice measurement go through the
 * coordinator, so whichever face and voice plugins are registered do the work, within the memory budget.
 */
export function registerAssetRoutes(api: Api, ctx: RouteContext, options: AssetRouteOptions): void {
  const { storageDir, log } = ctx;
  const { coordinator, uploads } = options;
  const avatarsDir = join(storageDir, 'avatars');
  const voices = coordinator.voices;

  const readAvatar = async (id: string): Promise<{ info: AvatarInfo; photoPath: string; meta: AvatarMeta } | null> => {
    if (!AVATAR_ID_PATTERN.test(id)) return null;
    const dir = join(avatarsDir, id);
    let meta: AvatarMeta;
    try {
      meta = JSON.parse(await readFile(join(dir, META_FILE), 'utf8')) as AvatarMeta;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') log.warn(`avatar ${id}: ${META_FILE} cannot be read`, { reason: String(error) });
      return null;
    }
    // the file names inside come from the server, but a damaged or edited file must not point elsewhere
    if (meta?.format !== META_FORMAT || typeof meta.photo?.file !== 'string' || !PHOTO_FILE.test(meta.photo.file) || meta.avatar?.avatarId !== id) {
      log.warn(`avatar ${id}: ${META_FILE} is not a valid avatar description`);
      return null;
    }
    return { info: { ...meta.avatar, imagePath: `avatars/${id}/${meta.photo.file}` }, photoPath: join(dir, meta.photo.file), meta };
  };
  const getAvatar = async (id: string) => {
    const found = await readAvatar(id);
    if (!found) throw new AvatarError('AVATAR_ERR_HTTP_AVATAR_NOT_FOUND', { id });
    return found;
  };

  // ---- avatars ----

  const avatarForm = formHooks(() => ({ parent: avatarsDir, files: [{ field: 'photo', kind: 'image', required: true }], fields: [] }), uploads);
  api.post('/v1/avatars', {
    schema: {
      summary: 'upload a portrait photo: the face check runs at once; a usable photo is kept as an avatar',
      description: 'multipart/form-data with the file in field "photo". 201 with the avatar; 422 with the face check\'s reasons when the photo cannot be animated (nothing is kept).',
      body: { content: { 'multipart/form-data': { schema: AvatarFormSchema } } },
      response: { 201: Type.Object({ avatar: AvatarInfoSchema }), 422: FaceRefusalSchema, ...errorResponses(400, 401, 413, 415, 501, 503) },
    },
    ...avatarForm,
    errorHandler: notMultipart('photo', 'portrait.jpg'),
  }, async (request, reply) => {
    const form = receivedForm(request);
    // the staging folder is removed (when not committed) before the answer goes out, so a client that
    // looks right after the answer finds nothing half-kept
    const outcome = await (async () => {
      try {
        const photo = form.files.photo;
        if (!photo) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'the photo went missing' });
        const names = new Map([[photo.path, photo.clientName], [form.dir, 'the upload'], [storageDir, 'storage']]);
        const faceEngine = await coordinator.resolveEngine('face');
        let avatar: Avatar;
        try {
          avatar = await coordinator.runStage(faceEngine, { imagePath: photo.path }, {
            signal: form.signal, workDir: form.dir, log, progress: () => undefined,
          });
        } catch (thrown) {
          if (form.signal.aborted) throw clientGoneError();
          const error = withClientNames(toAvatarError(thrown, 'validate_avatar'), names);
          if (!isRefusal(error)) throw error;
          return {
            refused: {
              code: error.code, message: error.message, hint: error.hint,
              // the plugin contract hands over the first broken rule; that is the reason given
              reasons: [{ rule: ruleOf(error), code: error.code, message: error.message, hint: error.hint }],
            },
          };
        }
        const createdAt = new Date().toISOString();
        const face = avatar.face;
        // checkContent already named the file for its format: photo.<jpg|png|webp>
        const photoFile = `photo.${photo.ext}`;
        const info = (avatarId: string): Omit<AvatarInfo, 'imagePath'> => ({
          avatarId, createdAt, width: avatar.width, height: avatar.height,
          face: { usable: true, score: face.score, box: { x: face.box.x, y: face.box.y, width: face.box.width, height: face.box.height }, warnings: [] },
        });
        // the avatar appears whole or not at all: its folder is renamed into place with everything inside
        for (let attempt = 0; ; attempt += 1) {
          const avatarId = `av-${randomBytes(4).toString('hex')}`;
          const meta: AvatarMeta = {
            format: META_FORMAT, version: 1, faceEngine: faceEngine.plugin.name,
            photo: { file: photoFile, format: photo.format, bytes: photo.bytes },
            avatar: info(avatarId),
          };
          await atomicWriteFile(join(form.dir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
          // a client gone by now gets nothing kept: its staging folder is removed below, not committed
          if (form.signal.aborted) throw clientGoneError();
          try {
            await rename(form.dir, join(avatarsDir, avatarId));
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            if ((code === 'EEXIST' || code === 'ENOTEMPTY') && attempt < 5) continue;
            throw error;
          }
          const created: AvatarInfo = { ...meta.avatar, imagePath: `avatars/${avatarId}/${photoFile}` };
          log.info(`avatar ${avatarId} created`, { width: created.width, height: created.height });
          return { created };
        }
      } finally {
        await form.discard();
      }
    })();
    if (outcome.refused) return reply.code(422).send({ error: outcome.refused });
    return reply.code(201).header('location', `/v1/avatars/${outcome.created.avatarId}`).send({ avatar: outcome.created });
  });

  api.get('/v1/avatars', {
    schema: { summary: 'the avatars, newest first', response: { 200: Type.Object({ avatars: Type.Array(AvatarInfoSchema) }), ...errorResponses(401) } },
  }, async () => {
    let names: string[];
    try {
      names = await readdir(avatarsDir);
    } catch {
      return { avatars: [] };
    }
    const found = await Promise.all(names.filter((n) => AVATAR_ID_PATTERN.test(n)).map((n) => readAvatar(n)));
    const avatars = found.filter((a) => a !== null).map((a) => a.info);
    avatars.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.avatarId.localeCompare(a.avatarId));
    return { avatars };
  });

  api.get('/v1/avatars/:id', {
    schema: { summary: 'one avatar', params: AvatarIdParams, response: { 200: AvatarInfoSchema, ...errorResponses(400, 401, 404) } },
  }, async (request) => (await getAvatar(request.params.id)).info);

  api.get('/v1/avatars/:id/photo', {
    schema: { summary: 'the avatar\'s photo as it was uploaded', params: AvatarIdParams, response: { 200: Photo, ...errorResponses(400, 401, 404) } },
  }, async (request, reply) => {
    const { photoPath, meta } = await getAvatar(request.params.id);
    const ext = meta.photo.file.slice('photo.'.length);
    let size: number;
    try {
      size = (await stat(photoPath)).size;
    } catch {
      throw new AvatarError('AVATAR_ERR_HTTP_AVATAR_NOT_FOUND', { id: request.params.id });
    }
    return reply
      .header('content-type', PHOTO_TYPES[ext] ?? 'application/octet-stream')
      .header('content-length', size)
      .header('x-content-type-options', 'nosniff')
      .header('content-disposition', `inline; filename="${request.params.id}.${ext}"`)
      .header('cache-control', 'private, max-age=3600')
      .send(createReadStream(photoPath));
  });

  api.delete('/v1/avatars/:id', {
    schema: { summary: 'delete an avatar and its photo', params: AvatarIdParams, response: { 204: Type.Null(), ...errorResponses(400, 401, 404) } },
  }, async (request, reply) => {
    const { id } = request.params;
    if (!(await readAvatar(id))) throw new AvatarError('AVATAR_ERR_HTTP_AVATAR_NOT_FOUND', { id });
    // out of sight in one step, then removed: a reader sees the avatar whole or not at all
    const gone = join(avatarsDir, `.deleted-${id}-${randomBytes(4).toString('hex')}`);
    try {
      await rename(join(avatarsDir, id), gone);
    } catch (error) {
      // deleted meanwhile by another request; any other failure is the server's
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new AvatarError('AVATAR_ERR_HTTP_AVATAR_NOT_FOUND', { id });
      throw error;
    }
    await rm(gone, { recursive: true, force: true });
    return reply.code(204).send(null);
  });

  // ---- voices ----

  const voicesDir = voices.dir;
  const voiceForm = formHooks(() => ({ parent: voicesDir, files: [{ field: 'sample', kind: 'audio', required: true }], fields: ['name'] }), uploads);
  api.post('/v1/voices', {
    schema: {
      summary: 'measure a voice from a recording and save the nearest engine voice as a profile',
      description: 'multipart/form-data: the recording in field "sample", an optional "name". Voice matching, not cloning: the profile picks an engine voice, rate and pitch near the speaker\'s. The recording is not kept.',
      body: { content: { 'multipart/form-data': { schema: VoiceFormSchema } } },
      response: { 201: Type.Object({ voice: VoiceInfoSchema }), ...errorResponses(400, 401, 413, 415, 422, 501, 503) },
    },
    ...voiceForm,
    errorHandler: notMultipart('sample', 'sample.wav'),
  }, async (request, reply) => {
    const form: ReceivedForm = receivedForm(request);
    let profile: VoiceProfile;
    try {
      const sample = form.files.sample;
      if (!sample) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'the sample went missing' });
      const name = form.fields.name;
      const result = await coordinator.matchVoice({ referencePath: sample.path, signal: form.signal, ...(name !== undefined && { name }) });
      if (!result.success || !result.profile) {
        const error = result.error;
        const thrown = error ? AvatarError.fromJSON(error) : new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'voice matching gave no profile' });
        throw withClientNames(thrown, new Map([[sample.path, sample.clientName], [form.dir, 'the upload'], [storageDir, 'storage']]));
      }
      profile = result.profile;
    } finally {
      // the recording was only needed for the measurement: gone before the answer
      await form.discard();
    }
    log.info(`voice profile ${profile.id} created from an upload`, { engine: profile.engine, voice: profile.voice });
    return reply.code(201).header('location', `/v1/voices/${profile.id}`).send({ voice: toVoiceInfo(profile) });
  });

  api.get('/v1/voices', {
    schema: { summary: 'the saved voice profiles, newest first', response: { 200: Type.Object({ voices: Type.Array(VoiceInfoSchema) }), ...errorResponses(401) } },
  }, async () => {
    const { profiles, damaged } = await voices.list();
    for (const d of damaged) log.warn(`a voice profile was skipped: ${d.message}`, { code: d.code });
    return { voices: profiles.map(toVoiceInfo) };
  });

  // the voices the speech engines themselves speak with, in every language they have: what a job's
  // voice settings (engine, voice, language) may name without a saved profile
  api.get('/v1/engine-voices', {
    schema: {
      summary: 'the voices each installed speech engine speaks with here, with their languages',
      querystring: Type.Object({
        engine: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$', description: 'only this engine (e.g. espeak-ng)' })),
        language: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9-]{1,35}$', description: 'only voices whose language starts with this tag (e.g. pt, en-GB)' })),
      }, { additionalProperties: false }),
      response: { 200: Type.Object({ voices: Type.Array(EngineVoiceSchema) }), ...errorResponses(400, 401) },
    },
  }, async (request) => {
    const { engine, language } = request.query as { engine?: string; language?: string };
    return { voices: await installedVoices(ctx.registry, { ...(engine && { engine }), ...(language && { language }) }) };
  });

  // a profile from an engine's own voice (JSON): what `avatar voices create` does, over HTTP
  api.post('/v1/voices/from-engine', {
    schema: {
      summary: 'save a voice profile that speaks with one of an engine\'s own voices (GET /v1/engine-voices lists them)',
      body: Type.Object({
        engine: Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,63}$' }),
        voice: Type.String({ minLength: 1, maxLength: 200 }),
        language: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9-]{1,35}$', description: "default: the voice's own" })),
        rate: Type.Optional(Type.Number({ minimum: 0.25, maximum: 4, description: 'speaking rate, 1 = normal' })),
        pitch: Type.Optional(Type.Number({ minimum: -24, maximum: 24, description: 'semitones' })),
        name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
      }, { additionalProperties: false }),
      response: { 201: Type.Object({ voice: VoiceInfoSchema }), ...errorResponses(400, 401) },
    },
  }, async (request, reply) => {
    const body = request.body as { engine: string; voice: string; language?: string; rate?: number; pitch?: number; name?: string };
    // the engine must be installed, and a voice it lists keeps its language; one it does not list is refused
    const listed = await installedVoices(ctx.registry, { engine: body.engine });
    const own = listed.find((v) => v.voice === body.voice);
    if (!own) {
      const known = listed.slice(0, 20).map((v) => v.voice).join(', ') + (listed.length > 20 ? `, ... (${listed.length} in all: GET /v1/engine-voices?engine=${body.engine})` : '');
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'voice', problem: `is not a voice ${body.engine} has here`, value: JSON.stringify(body.voice), expected: listed.length ? `One of: ${known}.` : `${body.engine} lists no voices here: see avatar doctor.` });
    }
    const profile = await voices.create(
      { engine: body.engine, voice: body.voice, language: body.language ?? own.language, rate: body.rate ?? 1, pitch: body.pitch ?? 0 },
      body.name !== undefined ? { name: body.name } : {},
    );
    log.info(`voice profile ${profile.id} created from ${body.engine}/${body.voice}`, { engine: profile.engine, voice: profile.voice });
    return reply.code(201).header('location', `/v1/voices/${profile.id}`).send({ voice: toVoiceInfo(profile) });
  });

  api.get('/v1/voices/:id', {
    schema: { summary: 'one voice profile', params: VoiceIdParams, response: { 200: VoiceInfoSchema, ...errorResponses(400, 401, 404, 500) } },
  }, async (request) => toVoiceInfo(await voices.get(request.params.id)));

  api.delete('/v1/voices/:id', {
    schema: { summary: 'delete a voice profile', params: VoiceIdParams, response: { 204: Type.Null(), ...errorResponses(400, 401, 404) } },
  }, async (request, reply) => {
    await voices.delete(request.params.id);
    return reply.code(204).send(null);
  });

  // the folders exist from the start, so listing and uploads never race on creating them
  api.addHook('onReady', async () => {
    await mkdir(avatarsDir, { recursive: true });
  });
}
