import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AvatarError, ERRORS, intendedPath, isAvatarError, toAvatarError } from './errors.js';

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
