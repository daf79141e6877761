import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PORTRAIT, ROOT, avatar, tempDir } from './helpers/cli.js';

const CAMERAMAN = join(ROOT, 'tests/fixtures/faces/cameraman.png');
const CAT = join(ROOT, 'tests/fixtures/faces/chelsea_cat.jpg');

describe('avatar avatars', () => {
  let dir: string;
  let storage: string;
  const run = (args: string[]) => avatar(['--storage', storage, ...args]);
  beforeAll(async () => {
    dir = await tempDir('avatar-face-cli-');
    storage = join(dir, 'storage');
  });

  it('check: a usable portrait exits 0 with faces, pose, quality and the verdict', async () => {
    const r = await run(['--json', 'avatars', 'check', PORTRAIT]);
    expect(r.code, r.stderr).toBe(0);
    const check = JSON.parse(r.stdout) as { usable: boolean; faces: { pose: { yaw: number }; landmarks: unknown[] }[]; details: { timings: unknown } };
    expect(check.usable).toBe(true);
    expect(check.faces[0]?.landmarks).toHaveLength(68);
    expect(check.details.timings).toBeDefined(); // the engine's own full report
    const human = await run(['avatars', 'check', PORTRAIT]);
    expect(human.stdout).toMatch(/pose: yaw -?[\d.]+, pitch -?[\d.]+, roll -?[\d.]+ degrees/);
    expect(human.stdout).toContain('verdict: usable');
  });

  it('check: a near-profile photo exits 1 and says why; the limit is configurable', async () => {
    const r = await run(['avatars', 'check', CAMERAMAN]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('verdict: refused');
    expect(r.stdout).toMatch(/yaw: the face in avatar image is turned too far: yaw is \d+ degrees, over the limit of 30/);
    const lenient = await run(['--json', 'avatars', 'check', CAMERAMAN, '--max-yaw', '80', '--max-pitch', '60', '--min-face', '32']);
    expect(lenient.code, lenient.stdout).toBe(0);
  });

  it('check: a file that is not an image is refused (exit 1) with the reason', async () => {
    const bad = join(dir, 'bad.jpg');
    await writeFile(bad, 'plain text');
    const r = await run(['--json', 'avatars', 'check', bad]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ usable: false, verdict: { reasons: [{ error: { code: 'AVATAR_ERR_INPUT_NOT_IMAGE' } }] } });
  });

  it('prepare: writes the PNG and its sidecar at the preset size; a refused photo writes nothing (exit 2)', async () => {
    const out = join(dir, 'me.png');
    const r = await run(['--json', 'avatars', 'prepare', PORTRAIT, '--output', out, '--quality', 'medium']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ success: true, avatar: { width: 512, height: 512 } });
    const sidecar = JSON.parse(await readFile(join(dir, 'me.face.json'), 'utf8')) as { face: { landmarks: unknown[] } };
    expect(sidecar.face.landmarks).toHaveLength(68);

    const check = await run(['avatars', 'check', out]);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain('prepared avatar, face details from');

    const refused = await run(['avatars', 'prepare', CAT, '--output', join(dir, 'cat.png')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('AVATAR_ERR_FACE_NONE');
    expect((await readdir(dir)).filter((f) => f.startsWith('cat'))).toEqual([]);
    expect(existsSync(join(dir, 'cat.face.json'))).toBe(false);
  });

  it('an avatar_generation job prepares the avatar through the queue', async () => {
    const submitted = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'avatar_generation', '--avatar', PORTRAIT, '--quality', 'low'])).stdout) as { jobId: string };
    expect((await run(['worker', '--once'])).code).toBe(0);
    const job = JSON.parse((await run(['--json', 'jobs', 'status', submitted.jobId])).stdout) as { status: string; result: { outputPath: string; avatar: { width: number } } };
    expect(job.status, JSON.stringify(job)).toBe('completed');
    expect(job.result.avatar.width).toBe(256);
    expect(existsSync(job.result.outputPath)).toBe(true);
  });
});
