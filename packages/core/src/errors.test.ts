import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AvatarError, ERRORS, defineErrorCodes, errorSpec, intendedPath, isAvatarError, toAvatarError } from './errors.js';

const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

describe('error table', () => {
  it('every code is documented in docs/errors.md with its exit code and HTTP status', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      const at = doc.indexOf(`### ${code}\n`);
      expect(at, `${code} missing from docs/errors.md`).toBeGreaterThanOrEqual(0);
      const section = doc.slice(at, doc.indexOf('\n### ', at + 1) >>> 0 || undefined);
      expect(section).toContain(`exit code: ${spec.exitCode}`);
      expect(section).toContain(`HTTP status: ${spec.httpStatus}`);
    }
  });

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^### (AVATAR_ERR_\w+)$/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERRORS).sort());
  });

  it('codes follow AVATAR_ERR_<AREA>_<WHAT> and map to the CLI exit codes 1 or 2', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^AVATAR_ERR_[A-Z]+(_[A-Z0-9]+)*$/);
      expect([1, 2]).toContain(spec.exitCode);
      expect(spec.httpStatus).toBeGreaterThanOrEqual(400);
      expect(spec.hint.length).toBeGreaterThanOrEqual(10);
    }
  });

  it('fills message and hint from params and serialises without the stack', () => {
    const error = new AvatarError('AVATAR_ERR_INPUT_FILE_MISSING', { input: 'avatar image', path: '/nope.jpg' });
    expect(error.message).toBe('avatar image not found: /nope.jpg');
    expect(error.exitCode).toBe(2);
    expect(error.httpStatus).toBe(400);
    expect(JSON.parse(JSON.stringify(error))).toEqual({
      code: 'AVATAR_ERR_INPUT_FILE_MISSING', message: error.message, hint: error.hint, params: { input: 'avatar image', path: '/nope.jpg' },
    });
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_FILE_MISSING')).toBe(true);
  });

  it('turns aborts into cancellations and unknown throws into internal errors', () => {
    const abort = Object.assign(new Error('stop'), { name: 'AbortError' });
    expect(toAvatarError(abort, 'encode_video').code).toBe('AVATAR_ERR_CANCELLED');
    expect(toAvatarError(abort, 'encode_video').message).toContain('encode_video');
    expect(toAvatarError(new TypeError('x')).code).toBe('AVATAR_ERR_INTERNAL');
  });
});

describe('a file system\'s failures', () => {
  const systemError = (code: string, fields: Record<string, string>): Error => Object.assign(new Error(`${code}: failed`), { code, ...fields });

  it('get codes of their own, naming the file and its folder, never "a bug"', () => {
    const full = toAvatarError(systemError('ENOSPC', { syscall: 'copyfile', path: '/s/work/a.wav', dest: '/s/work/run-1/.speech.partial-12-ab12cd.wav' }));
    expect(full.code).toBe('AVATAR_ERR_STORAGE_FULL');
    expect(full.params).toMatchObject({ path: '/s/work/run-1/speech.wav', folder: '/s/work/run-1' });
    expect(full.exitCode).toBe(1);
    expect(full.httpStatus).toBe(507);
    expect(toAvatarError(systemError('EDQUOT', { path: '/q/x' })).message).toContain('quota');
    expect(toAvatarError(systemError('EROFS', { path: '/ro/x.json' })).code).toBe('AVATAR_ERR_STORAGE_READ_ONLY');
    const io = toAvatarError(systemError('EIO', { path: '/bad/x', syscall: 'fsync' }));
    expect(io.code).toBe('AVATAR_ERR_STORAGE_IO');
    expect(io.message).toContain('fsync /bad/x');
    expect(toAvatarError(systemError('EACCES', { path: '/x' })).code).toBe('AVATAR_ERR_INTERNAL');
  });

  it('name the file the user knows, not the temporary one written beside it', () => {
    expect(intendedPath('/o/..out.partial-5076-afff0e.partial-5076-5f5be4.mp4')).toBe('/o/out.mp4');
    expect(intendedPath('/s/jobs/.job-1.json.tmp-12-abcd1234')).toBe('/s/jobs/job-1.json');
    expect(intendedPath('/o/.video.partial-1-ab.webm')).toBe('/o/video.webm');
    expect(intendedPath('/o/.video.partial-4242-a1b2c3-d4e5f6.mp4')).toBe('/o/video.mp4');
    expect(intendedPath('/o/plain.partial.mp4')).toBe('/o/plain.partial.mp4');
  });
});

describe('errors across copies of this package and from plugins', () => {
  /** What another copy of @avatar/core throws: its own class, the same Symbol.for brand. */
  class ForeignAvatarError extends Error {
    override readonly name = 'AvatarError';
    readonly hint = 'Pick a voice the engine has.';
    readonly httpStatus = 422;
    readonly exitCode = 2;
    readonly params = { voice: 'xx' };
    constructor(readonly code: string) {
      super('voice xx is not installed');
      Object.defineProperty(this, Symbol.for('avatar.error'), { value: true });
    }
    toJSON() {
      return { code: this.code, message: this.message, hint: this.hint, params: this.params };
    }
  }

  it('are recognised by their brand, not by instanceof, and keep code, message, hint, exit code and status', () => {
    const foreign = new ForeignAvatarError('AVATAR_ERR_INPUT_TEXT_UNSAYABLE');
    expect(foreign instanceof AvatarError).toBe(false);
    expect(isAvatarError(foreign)).toBe(true);
    expect(isAvatarError(foreign, 'AVATAR_ERR_INPUT_TEXT_UNSAYABLE')).toBe(true);
    const adopted = toAvatarError(foreign);
    expect(adopted).toBeInstanceOf(AvatarError);
    expect(adopted.toJSON()).toEqual(foreign.toJSON());
    expect([adopted.exitCode, adopted.httpStatus]).toEqual([2, 422]);
    expect(adopted.cause).toBe(foreign);
    // a plain object or an unbranded Error with a code is not one of ours
    expect(isAvatarError({ code: 'AVATAR_ERR_INTERNAL' })).toBe(false);
    expect(isAvatarError(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe(false);
  });

  it('a plugin defines codes of its own, namespaced, with message, hint, exit code and status', () => {
    const errors = defineErrorCodes('whisper', {
      VOICE_MISSING: { message: 'the whisper voice {voice} is not installed', hint: 'Install {voice} with espeak-ng.', httpStatus: 422, exitCode: 2 },
      CRASHED: { message: 'espeak-ng crashed', hint: 'Run it by hand to see why.' },
    });
    expect(errors.codes.VOICE_MISSING).toBe('WHISPER_ERR_VOICE_MISSING');
    const error = errors.create('VOICE_MISSING', { voice: 'en-xx' });
    expect(error).toBeInstanceOf(AvatarError);
    expect(error.toJSON()).toEqual({ code: 'WHISPER_ERR_VOICE_MISSING', message: 'the whisper voice en-xx is not installed', hint: 'Install en-xx with espeak-ng.', params: { voice: 'en-xx' } });
    expect([error.exitCode, error.httpStatus]).toEqual([2, 422]);
    expect(errors.create('CRASHED').exitCode).toBe(1);
    expect(errorSpec('WHISPER_ERR_CRASHED')).toMatchObject({ httpStatus: 500, exitCode: 1 });
    // a stored job's error comes back with the plugin's meaning
    const back = AvatarError.fromJSON(error.toJSON());
    expect([back.code, back.message, back.exitCode, back.httpStatus]).toEqual([error.code, error.message, 2, 422]);
    // the same definition again (a second copy of the plugin) is fine, another meaning is not
    expect(() => defineErrorCodes('whisper', { CRASHED: { message: 'espeak-ng crashed', hint: 'Run it by hand to see why.' } })).not.toThrow();
    expect(() => defineErrorCodes('whisper', { CRASHED: { message: 'something else', hint: 'Run it by hand to see why.' } })).toThrow(/another meaning/);
    expect(() => defineErrorCodes('avatar', { X: { message: 'm', hint: 'h' } })).toThrow(/not avatar/);
    expect(() => defineErrorCodes('whisper', { lower: { message: 'm', hint: 'h' } })).toThrow(/upper case/);
  });

  it('rebuilds a stored error: host codes written again from their params, unknown ones kept as they were', () => {
    const known = AvatarError.fromJSON({ code: 'AVATAR_ERR_CANCELLED', message: 'old words', hint: 'old hint', params: { stage: 'encode_video' } });
    expect(known.message).toBe('the run was cancelled during encode_video');
    const unknown = AvatarError.fromJSON({ code: 'NEWER_ERR_THING', message: 'a newer host said this', hint: 'do that', params: {} });
    expect([unknown.message, unknown.hint, unknown.exitCode]).toEqual(['a newer host said this', 'do that', 1]);
  });
});
