import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { PORTRAIT, ROOT, avatar, ffmpeg, ffprobe, tempDir } from './helpers/cli.js';

interface Result {
  success: boolean;
  durationSeconds: number;
  stagesCompleted: string[];
  error: { code: string; message: string } | null;
  inspection?: { lagFrames: number; correlation: number; borderMotion: number; silenceStillness: number; sharpnessRatio: number };
  paths?: { render?: { path: string; notUsed?: string }; encode?: { path: string; notUsed?: string } };
}

// video_lipsync: a portrait speaks a recording that no engine of ours made (here espeak-ng, stored as OGG).
describe('avatar lipsync: a portrait and a recording', () => {
  let dir: string;
  let storage: string;
  let recording: string;
  const run = (args: string[]) => avatar(['--storage', storage, '--json', ...args]);

  beforeAll(async () => {
    dir = await tempDir('avatar-lipsync-');
    storage = join(dir, 'storage');
    const wav = join(dir, 'voice.wav');
    const r = await avatar(['--storage', storage, 'voices', 'create', '--engine', 'espeak-ng', '--voice', 'en-gb', '--json']);
    const voice = JSON.parse(r.stdout) as { id: string };
    await avatar(['--storage', storage, 'tts', 'This recording was made elsewhere. Then a pause. And then the speech goes on again.', '--voice', voice.id, '--output', wav]);
    recording = join(dir, 'voice.ogg');
    // speech, a second of silence, then the speech again: the mouth must rest in the middle
    ffmpeg(['-i', wav, '-f', 'lavfi', '-t', '1', '-i', 'anullsrc=r=22050:cl=mono', '-i', wav, '-filter_complex', '[0:a][1:a][2:a]concat=n=3:v=0:a=1', '-c:a', 'libopus', recording]);
  });

  it('makes a talking head in sync with the recording, with the background still', async () => {
    const out = join(dir, 'talk.webm');
    const r = await run(['lipsync', '--avatar', PORTRAIT, '--audio', recording, '--output', out, '--quality', 'low', '--head-motion', 'lively']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as Result;
    expect(result.stagesCompleted).toEqual(['validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup']);
    // which way it ran, and why not a faster one: the compiled kernels when the addon is built (the set-up
    // step builds it), VP9 for WebM, and no GPU path in this version
    const built = existsSync(join(ROOT, 'native/build/Release/avatar_native.node'));
    expect(result.paths?.render).toMatchObject({ path: built ? 'native' : 'ts', notUsed: expect.stringContaining('cuda: ') });
    expect(result.paths?.encode).toEqual({ path: 'libvpx-vp9', notUsed: 'nvenc: NVENC has no VP9 encoder' });
    const i = result.inspection!;
    expect(Math.abs(i.lagFrames)).toBeLessThanOrEqual(1);
    expect(i.correlation).toBeGreaterThanOrEqual(0.5);
    expect(i.borderMotion).toBeLessThan(0.5);
    expect(i.silenceStillness).toBeLessThan(0.5);
    const probe = ffprobe(out);
    expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['opus', 'vp9']);
    expect(Math.abs(Number(probe.format.duration) - Number(ffprobe(recording).format.duration))).toBeLessThan(0.1);

    // `avatar inspect` finds the mouth by itself and comes to the same verdict
    const inspected = await run(['inspect', out]);
    expect(inspected.code, inspected.stderr).toBe(0);
    const report = JSON.parse(inspected.stdout) as { sync: { lagFrames: number; correlation: number } };
    expect(Math.abs(report.sync.lagFrames)).toBeLessThanOrEqual(1);
    expect(report.sync.correlation).toBeGreaterThanOrEqual(0.5);
  });

  // the sync figures hold whatever the mouth looks like: the photo's own teeth, a beard, a grey photo, a
  // dark one (the last two made from real photos here, as the contact sheets make them)
  it.each([
    ['a grey photo', 'grey', 'low'],
    ['a dark photo of a smile', 'dark', 'low'],
    ['a smile showing its teeth', 'faces/astronaut_eileen_collins.jpg', 'low'],
    ['a full beard, black and white', 'faces/mendeleev_beard.jpg', 'low'],
    ['a grey beard and glasses', 'faces/lamport_beard.jpg', 'low'],
    ['a moustache above a high collar, the chin close to it', 'faces/barkla.jpg', 'low'],
    ['a photo of 1024x1346 at its own detail, drawn at high', 'faces/barkla_1024.jpg', 'high'],
  ])('stays in sync on %s', async (_, photo, quality) => {
    const out = join(dir, `talk-${photo.replace(/\W+/g, '-')}.mp4`);
    let avatarPath = join(ROOT, 'tests/fixtures', photo);
    if (photo === 'grey' || photo === 'dark') {
      avatarPath = join(dir, `${photo}.png`);
      await (photo === 'grey' ? sharp(PORTRAIT).grayscale() : sharp(join(ROOT, 'tests/fixtures/faces/astronaut_eileen_collins.jpg')).linear(0.35, 0).gamma(1.2)).png().toFile(avatarPath);
    }
    const r = await run(['lipsync', '--avatar', avatarPath, '--audio', recording, '--output', out, '--quality', quality]);
    expect(r.code, r.stderr).toBe(0);
    const i = (JSON.parse(r.stdout) as Result).inspection!;
    expect(Math.abs(i.lagFrames)).toBeLessThanOrEqual(1);
    expect(i.correlation).toBeGreaterThanOrEqual(0.5);
    expect(i.borderMotion).toBeLessThan(0.5);
    expect(i.silenceStillness).toBeLessThan(0.5);
  });

  it('the same inputs and seed give the same video', async () => {
    const a = join(dir, 'a.mp4');
    const b = join(dir, 'b.mp4');
    for (const out of [a, b]) expect((await run(['lipsync', '--avatar', PORTRAIT, '--audio', recording, '--output', out, '--quality', 'low', '--seed', '5'])).code).toBe(0);
    const frames = (path: string): string => {
      const probe = ffprobe(path);
      return JSON.stringify(probe.streams.map((s) => [s.codec_name, s.width, s.height, s.duration]));
    };
    expect(frames(a)).toEqual(frames(b));
    const { createHash } = await import('node:crypto');
    const { spawnSync } = await import('node:child_process');
    const md5 = (path: string): string => createHash('md5').update(spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:v', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'], { maxBuffer: 1 << 28 }).stdout).digest('hex');
    expect(md5(a)).toBe(md5(b));
  });

  it('silent audio is valid: the mouth stays closed and the frames stay the photo', async () => {
    const silence = join(dir, 'silence.wav');
    ffmpeg(['-f', 'lavfi', '-t', '2', '-i', 'anullsrc=r=16000:cl=mono', silence]);
    const out = join(dir, 'silent.mp4');
    const r = await run(['lipsync', '--avatar', PORTRAIT, '--audio', silence, '--output', out, '--quality', 'low', '--head-motion', 'none', '--blink-rate', '0']);
    expect(r.code, r.stderr).toBe(0);
    const { spawnSync } = await import('node:child_process');
    const gray = spawnSync('ffmpeg', ['-v', 'error', '-i', out, '-map', '0:v', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'], { maxBuffer: 1 << 28 }).stdout as Buffer;
    const size = 256 * 256;
    const first = gray.subarray(0, size);
    const last = gray.subarray(gray.length - size);
    let diff = 0;
    for (let k = 0; k < size; k++) diff += Math.abs((first[k] ?? 0) - (last[k] ?? 0));
    expect(diff / size).toBeLessThan(0.5);
  });

  it.each([
    ['audio that cannot be decoded', async () => { const p = join(dir, 'bad.mp3'); await writeFile(p, 'not audio at all'); return ['--audio', p]; }, 2, /AVATAR_ERR_INPUT_NOT_AUDIO/],
    ['audio longer than the limit', async () => ['--audio', recording, '--max-seconds', '2'], 2, /AVATAR_ERR_INPUT_AUDIO_TOO_LONG/],
    ['an avatar with no usable face', async () => ['--audio', recording, '--avatar-override', join(ROOT, 'tests/fixtures/faces/coffee.jpg')], 2, /AVATAR_ERR_FACE_NONE/],
  ] as const)('%s: clear error, nothing written', async (_name, extra, code, pattern) => {
    const out = join(dir, 'refused.mp4');
    const args = await extra();
    const override = args.indexOf('--avatar-override');
    const photo = override >= 0 ? args[override + 1]! : PORTRAIT;
    const rest = override >= 0 ? args.filter((_, k) => k !== override && k !== override + 1) : [...args];
    const r = await run(['lipsync', '--avatar', photo, ...rest, '--output', out, '--quality', 'low']);
    expect(r.stderr).toMatch(pattern);
    expect(r.code).toBe(code);
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.includes('partial'))).toEqual([]);
  });

  it('runs as a queued video_lipsync job and stores the inspection in the result', async () => {
    const job = JSON.parse((await run(['jobs', 'submit', '--type', 'video_lipsync', '--avatar', PORTRAIT, '--audio', recording, '--quality', 'low'])).stdout) as { jobId: string };
    expect((await avatar(['--storage', storage, 'worker', '--once'])).code).toBe(0);
    const done = JSON.parse((await run(['jobs', 'status', job.jobId])).stdout) as { status: string; result: { outputPath: string; inspection: { lagFrames: number } } };
    expect(done.status).toBe('completed');
    expect(Math.abs(done.result.inspection.lagFrames)).toBeLessThanOrEqual(1);
    expect(existsSync(done.result.outputPath)).toBe(true);
  });
});
