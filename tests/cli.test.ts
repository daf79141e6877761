import { spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, PORTRAIT, ROOT, avatar, ffmpeg, ffprobe, tempDir } from './helpers/cli.js';

let dir: string;
let storage: string;
const run = (args: string[], env?: NodeJS.ProcessEnv) => avatar(['--storage', storage, ...args], env ? { env } : {});

beforeAll(async () => {
  dir = await tempDir('avatar-cli-');
  storage = join(dir, 'storage');
});

describe('avatar CLI: speech and still-image video', () => {
  it('tts writes a real WAV with the default voice', async () => {
    const out = join(dir, 'hello.wav');
    const r = await run(['tts', 'Hello there. This is a test of the speech stage.', '--output', out]);
    expect(r.stderr).not.toContain('error');
    expect(r.code).toBe(0);
    const probe = ffprobe(out);
    expect(probe.streams[0]).toMatchObject({ codec_type: 'audio', codec_name: 'pcm_s16le', channels: 1 });
    expect(Number(probe.format.duration)).toBeGreaterThan(1.5);
    expect(Number(probe.format.duration)).toBeLessThan(8);
    expect(await readdir(join(storage, 'work')).catch(() => [])).toEqual([]);
  });

  it('encode turns a photo and speech into an MP4 whose duration matches the audio', async () => {
    const wav = join(dir, 'speech.wav');
    expect((await run(['tts', 'One photo, one voice.', '--output', wav])).code).toBe(0);
    const out = join(dir, 'still.mp4');
    const r = await run(['--json', 'encode', '--image', PORTRAIT, '--audio', wav, '--output', out, '--quality', 'low']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { success: boolean; outputPath: string; stagesCompleted: string[] };
    expect(result).toMatchObject({ success: true, outputPath: out, stagesCompleted: ['encode_video'] });
    const probe = ffprobe(out);
    const video = probe.streams.find((s) => s.codec_type === 'video');
    const audio = probe.streams.find((s) => s.codec_type === 'audio');
    expect(video).toMatchObject({ codec_name: 'h264', pix_fmt: 'yuv420p' });
    expect(audio).toMatchObject({ codec_name: 'aac' });
    expect(Math.max(video?.width ?? 0, video?.height ?? 0)).toBe(256);
    expect(Math.abs(Number(probe.format.duration) - Number(ffprobe(wav).format.duration))).toBeLessThan(0.05);
  });

  it('pipeline run renders a talking head whose mouth the inspector finds in sync with the speech', async () => {
    const out = join(dir, 'talk.mp4');
    const r = await run(['--json', 'pipeline', 'run', 'Hello there. I am speaking from a single photo, and my mouth follows the words.', '--avatar', PORTRAIT, '--output', out, '--quality', 'low']);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { success: boolean; stagesCompleted: string[]; durationSeconds: number; inspection: { lagFrames: number; correlation: number; borderMotion: number; silenceStillness: number } };
    expect(result.stagesCompleted).toEqual(['load_profile', 'synthesize_speech', 'validate_avatar', 'generate_lipsync', 'encode_video', 'inspect_video', 'cleanup']);
    expect(Math.abs(result.inspection.lagFrames)).toBeLessThanOrEqual(1);
    expect(result.inspection.correlation).toBeGreaterThanOrEqual(0.5);
    expect(result.inspection.borderMotion).toBeLessThan(0.5);
    const probe = ffprobe(out);
    const video = probe.streams.find((s) => s.codec_type === 'video');
    expect(video).toMatchObject({ codec_name: 'h264', width: 256, height: 256, pix_fmt: 'yuv420p' });
    expect(probe.streams.some((s) => s.codec_type === 'audio' && s.codec_name === 'aac')).toBe(true);
    expect(Math.abs(Number(probe.format.duration) - result.durationSeconds)).toBeLessThan(0.1);
    expect(await readdir(join(storage, 'work')).catch(() => [])).toEqual([]);
  });

  it('a photo without a face stops the run at validate_avatar, leaving nothing behind', async () => {
    const out = join(dir, 'noface.mp4');
    const r = await run(['--json', 'pipeline', 'run', 'Hello.', '--avatar', join(ROOT, 'tests/fixtures/faces/coffee.jpg'), '--output', out, '--quality', 'low']);
    expect(r.code).toBe(2);
    const result = JSON.parse(r.stdout) as { success: boolean; stagesCompleted: string[]; error: { code: string } };
    expect(result.stagesCompleted).toEqual(['load_profile', 'synthesize_speech']);
    expect(result.error.code).toBe('AVATAR_ERR_FACE_NONE');
    expect(existsSync(out)).toBe(false);
    expect(await readdir(join(storage, 'work')).catch(() => [])).toEqual([]);
  });
});

describe('avatar CLI: voices', () => {
  it('creates, lists, shows and deletes a profile, and speaks with it', async () => {
    const created = await run(['--json', 'voices', 'create', '--engine', 'espeak-ng', '--voice', 'en-us', '--rate', '1.2', '--name', 'Quick']);
    expect(created.code, created.stderr).toBe(0);
    const profile = JSON.parse(created.stdout) as { id: string; engine: string };
    expect(profile).toMatchObject({ engine: 'espeak-ng' });
    const list = await run(['voices', 'list']);
    expect(list.stdout).toContain(profile.id);
    expect((await run(['voices', 'show', profile.id])).stdout).toContain('rate 1.2');
    const wav = join(dir, 'quick.wav');
    expect((await run(['tts', 'With a chosen voice.', '--voice', profile.id, '--output', wav])).code).toBe(0);
    expect(Number(ffprobe(wav).format.duration)).toBeGreaterThan(0.5);
    expect((await run(['voices', 'delete', profile.id])).code).toBe(0);
    const gone = await run(['voices', 'show', profile.id]);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('AVATAR_ERR_VOICE_NOT_FOUND');
  });

  it('lists the engines\' own voices by language, and a profile made from one speaks its language', async () => {
    const listed = await run(['--json', 'voices', 'engines', '--language', 'pt']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { engine: string; voice: string; language: string }[]).map((v) => `${v.engine}:${v.voice}:${v.language}`).sort())
      .toEqual(['espeak-ng:pt-br:pt-BR', 'espeak-ng:pt:pt']);
    const human = await run(['voices', 'engines', '--engine', 'flite']);
    expect(human.stdout).toMatch(/^flite\s+rms\s+en-US\s+male/m);
    const created = await run(['--json', 'voices', 'create', '--engine', 'espeak-ng', '--voice', 'pt-br']);
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ engine: 'espeak-ng', voice: 'pt-br', language: 'pt-BR' });
    const unknown = await run(['voices', 'engines', '--engine', 'nonesuch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('AVATAR_ERR_PLUGIN_NOT_FOUND');
  });

  it('refuses an unknown engine naming the installed ones', async () => {
    const r = await run(['voices', 'create', '--engine', 'nonesuch']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no tts engine named "nonesuch" is installed \(installed: .*flite/);
  });
});

describe('avatar CLI: engines', () => {
  it('plugins list and info describe every installed engine: package, default, options, licences, check', async () => {
    const list = await run(['--json', 'plugins', 'list']);
    expect(list.code, list.stderr).toBe(0);
    const plugins = JSON.parse(list.stdout) as { stage: string; name: string; package: string; default: boolean; license: { commercialUse: boolean } | null; check: { ok: boolean } }[];
    expect(plugins.map((p) => `${p.stage}/${p.name}`)).toEqual(expect.arrayContaining(['tts/flite', 'face/onnx-face', 'lipsync/warp', 'encode/ffmpeg', 'inspect/sync-inspector', 'voice/pitch-match']));
    expect(plugins.filter((p) => p.default).map((p) => p.stage).sort()).toEqual(['encode', 'face', 'inspect', 'lipsync', 'tts', 'voice']);
    expect(plugins.every((p) => p.license?.commercialUse === true && p.check.ok)).toBe(true);
    const info = await run(['plugins', 'info', 'onnx-face']);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain('package: @avatar/face@0.1.0, plugin API 1');
    expect(info.stdout).toContain('minFaceSize (number): smallest face width accepted, px (default 64)');
    expect(info.stdout).toContain('models: tiny_face_detector MIT; face_landmark_68 MIT');
    const missing = await run(['plugins', 'info', 'nvenc']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no such engine named "nvenc" is installed (installed: tts/flite,');
  });

  it('--engine-option reaches the face engine (avatars check and prepare judge alike), --commercial-safe refuses the research-only detector', async () => {
    const strict = await run(['--json', 'avatars', 'check', PORTRAIT, '--engine-option', 'face.minFaceSize=4000']);
    expect(strict.code).toBe(1);
    expect(strict.stdout).toContain('AVATAR_ERR_FACE_TOO_SMALL');
    const prepared = await run(['avatars', 'prepare', PORTRAIT, '--output', join(dir, 'strict.png'), '--quality', 'low', '--min-face', '4000']);
    expect(prepared.code).toBe(2);
    expect(prepared.stderr).toContain('AVATAR_ERR_FACE_TOO_SMALL');
    const bad = await run(['avatars', 'check', PORTRAIT, '--engine-option', 'face.minFacePx=48']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('option minFacePx of the face engine "onnx-face" (@avatar/face@0.1.0) is not an option of this engine');
    const safe = await run(['avatars', 'prepare', PORTRAIT, '--output', join(dir, 'ssd.png'), '--quality', 'low', '--detector', 'ssd', '--commercial-safe']);
    expect(safe.code).toBe(2);
    expect(safe.stderr).toContain('AVATAR_ERR_ENGINE_LICENSE');
    // and inspect, which runs the face engine on a video's first frame, holds it to the same rule
    const wav = join(dir, 'safe.wav');
    expect((await run(['tts', 'Hello.', '--output', wav])).code).toBe(0);
    const still = join(dir, 'safe.mp4');
    expect((await run(['encode', '--image', PORTRAIT, '--audio', wav, '--output', still, '--quality', 'low'])).code).toBe(0);
    const inspect = await run(['inspect', still, '--commercial-safe', '--engine-option', 'face.detector=ssd']);
    expect(inspect.code).toBe(2);
    expect(inspect.stderr).toContain('AVATAR_ERR_ENGINE_LICENSE');
    expect(existsSync(join(dir, 'strict.png')) || existsSync(join(dir, 'ssd.png'))).toBe(false);
  });

  it('--store picks the job queue: a store no package provides is refused, a Redis that does not answer is named; a password is never shown', async () => {
    const r = await run(['--store', 'memcached://worker:s3cret@127.0.0.1:11211', 'jobs', 'list']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('error AVATAR_ERR_STORE_UNSUPPORTED: no job store for memcached: URLs is installed');
    expect(r.stderr).toContain('redis:, rediss:');
    expect(r.stderr + r.stdout).not.toContain('s3cret');
    const env = await run(['jobs', 'list'], { AVATAR_STORE: 'file:' });
    expect(env.code, env.stderr).toBe(0);
    // nothing listens on port 1: the Redis store says so within its wait
    const away = await run(['--store', 'redis://worker:s3cret@127.0.0.1:1/0', 'jobs', 'list']);
    expect(away.code).toBe(1);
    expect(away.stderr).toContain('error AVATAR_ERR_STORE_UNAVAILABLE: the job store at redis://***:***@127.0.0.1:1/0 does not answer: connect ECONNREFUSED');
    expect(away.stderr + away.stdout).not.toContain('s3cret');
    // the doctor says whether the store answers, and fails when it does not
    const doctor = await run(['--store', 'redis://worker:s3cret@127.0.0.1:1/0', '--json', 'doctor']);
    expect(doctor.code).toBe(1);
    expect(JSON.parse(doctor.stdout)).toMatchObject({ queue: { location: 'redis://***:***@127.0.0.1:1/0', ok: false } });
    expect(doctor.stdout + doctor.stderr).not.toContain('s3cret');
    // a command that needs no queue is not stopped by one that cannot be opened or reached
    for (const store of ['memcached://worker:s3cret@127.0.0.1:11211', 'redis://worker:s3cret@127.0.0.1:1/0']) {
      const unrelated = await run(['plugins', 'list', '--no-check'], { AVATAR_STORE: store });
      expect(unrelated.code, unrelated.stderr).toBe(0);
    }
    const odd = await run(['--store', 'redis://admin:se/cr@t@db host', 'jobs', 'list']);
    expect(odd.code).toBe(2);
    expect(odd.stderr).not.toContain('se/cr');
  });

  it('a settings file sets engine defaults for every command; a bad one is refused naming the file', async () => {
    const settings = join(dir, 'settings.json');
    await writeFile(settings, JSON.stringify({ engines: { tts: 'espeak-ng' } }));
    const out = join(dir, 'espeak.wav');
    const r = await run(['--json', 'tts', 'Spoken by the engine the settings name.', '--output', out], { AVATAR_CONFIG: settings });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { engines: { tts: { name: string } } }).engines.tts.name).toBe('espeak-ng');
    // and plugins list says which engine runs get
    const listed = JSON.parse((await run(['--json', 'plugins', 'list', '--stage', 'tts', '--no-check'], { AVATAR_CONFIG: settings })).stdout) as { name: string; default: boolean }[];
    expect(listed.filter((p) => p.default).map((p) => p.name)).toEqual(['espeak-ng']);
    await writeFile(settings, JSON.stringify({ engines: { tts: 'espeak-ng' }, quality: 'high' }));
    const bad = await run(['tts', 'x', '--output', join(dir, 'x.wav')], { AVATAR_CONFIG: settings });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`quality in ${settings} is not a setting of the settings file`);
  });
});

describe('avatar CLI: the job queue', () => {
  it('submits jobs, a worker runs them once, status and stats report them', async () => {
    const wavJob = await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Queued speech works.']);
    expect(wavJob.code, wavJob.stderr).toBe(0);
    const job = JSON.parse(wavJob.stdout) as { jobId: string; status: string; jobType: string; progress: number };
    expect(job).toMatchObject({ status: 'pending', jobType: 'voice_synthesis', progress: 0 });
    expect(job.jobId).toMatch(/^job-\d{14}-[0-9a-f]{8}$/);

    const worker = await run(['worker', '--once']);
    expect(worker.code, worker.stderr).toBe(0);
    expect(worker.stderr).toContain(`completed ${job.jobId}`);

    const status = await run(['--json', 'jobs', 'status', job.jobId]);
    const done = JSON.parse(status.stdout) as { status: string; progress: number; result: { outputPath: string; durationSeconds: number } };
    expect(done).toMatchObject({ status: 'completed', progress: 1 });
    expect(done.result.outputPath).toBe(join(storage, 'outputs', `${job.jobId}.wav`));
    expect(Math.abs(Number(ffprobe(done.result.outputPath).format.duration) - done.result.durationSeconds)).toBeLessThan(0.05);

    const stats = JSON.parse((await run(['--json', 'jobs', 'stats'])).stdout) as { byStatus: Record<string, number>; meanRunSeconds: Record<string, number> };
    expect(stats.byStatus.completed).toBeGreaterThanOrEqual(1);
    expect(stats.meanRunSeconds.voice_synthesis).toBeGreaterThan(0);

    const cancel = await run(['jobs', 'cancel', job.jobId]);
    expect(cancel.code).toBe(2);
    expect(cancel.stderr).toContain('AVATAR_ERR_JOB_FINISHED');
  });

  it('queued talking-head jobs: one completes with its inspection, one fails with the stage it reached; a pending job cancels at once', async () => {
    const good = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'full_pipeline', '--text', 'Hello from the queue.', '--avatar', PORTRAIT, '--quality', 'low'])).stdout) as { jobId: string };
    const bad = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'full_pipeline', '--text', 'Hi.', '--avatar', join(ROOT, 'tests/fixtures/faces/chelsea_cat.jpg'), '--quality', 'low'])).stdout) as { jobId: string };
    const pending = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'never'])).stdout) as { jobId: string };
    const cancelled = await run(['--json', 'jobs', 'cancel', pending.jobId]);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ status: 'cancelled' });
    expect((await run(['worker', '--once'])).code).toBe(0);
    const done = JSON.parse((await run(['--json', 'jobs', 'status', good.jobId])).stdout) as { status: string; result: { outputPath: string; inspection: { lagFrames: number; correlation: number } } };
    expect(done.status).toBe('completed');
    expect(Math.abs(done.result.inspection.lagFrames)).toBeLessThanOrEqual(1);
    expect(existsSync(done.result.outputPath)).toBe(true);
    const failed = JSON.parse((await run(['--json', 'jobs', 'status', bad.jobId])).stdout) as { status: string; error: { code: string; params: { stagesCompleted: string } } };
    expect(failed.status).toBe('failed');
    expect(failed.error.code).toBe('AVATAR_ERR_FACE_NONE');
    expect(failed.error.params.stagesCompleted).toBe('load_profile,synthesize_speech');
    const list = JSON.parse((await run(['--json', 'jobs', 'list', '--status', 'cancelled'])).stdout) as { jobId: string }[];
    expect(list.map((j) => j.jobId)).toContain(pending.jobId);
  });

  it('a damaged job file is skipped with a warning and listing still works', async () => {
    await mkdir(join(storage, 'jobs'), { recursive: true });
    await writeFile(join(storage, 'jobs', 'job-20260101000000-deadbeef.json'), '{"jobId": "job-2026');
    const r = await run(['jobs', 'list']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('job-20260101000000-deadbeef');
    expect(r.stdout).toContain('voice_synthesis');
  });
});

describe('avatar CLI: bad input gets a clear error, a non-zero exit and writes nothing', () => {
  const cases: { name: string; args: () => string[]; code: number; match: RegExp }[] = [
    { name: 'empty text', args: () => ['tts', '   ', '--output', join(dir, 'x.wav')], code: 2, match: /AVATAR_ERR_INPUT_TEXT_EMPTY: text is empty/ },
    { name: 'text over the length limit', args: () => ['tts', 'word '.repeat(400), '--max-seconds', '5', '--output', join(dir, 'x.wav')], code: 2, match: /AVATAR_ERR_INPUT_TEXT_TOO_LONG/ },
    { name: 'unknown voice profile', args: () => ['tts', 'hi', '--voice', 'vp-12345678', '--output', join(dir, 'x.wav')], code: 2, match: /voice profile vp-12345678 does not exist/ },
    { name: 'missing avatar', args: () => ['pipeline', 'run', 'hi', '--avatar', join(dir, 'nope.jpg'), '--output', join(dir, 'x.mp4')], code: 2, match: /avatar image not found: .*nope\.jpg/ },
    { name: 'avatar that is not an image', args: () => ['pipeline', 'run', 'hi', '--avatar', join(dir, 'fake.png'), '--output', join(dir, 'x.mp4')], code: 2, match: /avatar image is not a JPEG, PNG or WebP image/ },
    { name: 'output folder missing', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'no/such/x.mp4')], code: 2, match: /the folder for output path does not exist/ },
    { name: 'output extension not matching the format', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'x.mp4'), '--format', 'webm'], code: 2, match: /ends in "\.mp4" but the output format is webm/ },
    { name: 'crf out of range', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'x.mp4'), '--crf', '60'], code: 2, match: /crf must be a whole number from 0 to 51/ },
    { name: 'unknown quality', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'x.mp4'), '--quality', 'ultra'], code: 2, match: /quality must be one of: high, medium, low/ },
    { name: 'fps of zero', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'x.mp4'), '--fps', '0'], code: 2, match: /fps must be above 0 and at most 60/ },
    { name: 'fps over 60', args: () => ['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'x.mp4'), '--fps', '61'], code: 2, match: /fps must be above 0/ },
    { name: 'unknown job id', args: () => ['jobs', 'status', 'job-20260101000000-00000000'], code: 2, match: /job job-20260101000000-00000000 does not exist/ },
    { name: 'unknown command', args: () => ['fly'], code: 2, match: /unknown command/ },
    { name: 'reference recording that is not audio', args: () => ['voices', 'clone', join(dir, 'fake.png')], code: 2, match: /AVATAR_ERR_INPUT_NOT_AUDIO/ },
    { name: 'reference recording too short', args: () => ['voices', 'clone', join(dir, 'short.wav')], code: 2, match: /AVATAR_ERR_INPUT_AUDIO_TOO_SHORT/ },
  ];

  beforeAll(async () => {
    await writeFile(join(dir, 'fake.png'), 'this is text, not a picture');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=220:duration=2', join(dir, 'tone.wav')]);
    expect((await run(['tts', 'Hi.', '--output', join(dir, 'short.wav')])).code).toBe(0);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const before = new Set(await readdir(dir));
    const r = await run(c.args());
    expect(r.stderr).toMatch(c.match);
    expect(r.code).toBe(c.code);
    expect((await readdir(dir)).filter((f) => !before.has(f))).toEqual([]);
  });

  it('a missing TTS engine names the install command', async () => {
    const r = await run(['tts', 'hello', '--output', join(dir, 'y.wav')], { PATH: '/nonexistent' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AVATAR_ERR_TOOL_MISSING: flite .*is not installed or not on PATH/);
    expect(r.stderr).toContain('apt-get install');
    expect(existsSync(join(dir, 'y.wav'))).toBe(false);
  });

  it('a missing ffmpeg names the install command', async () => {
    const r = await run(['encode', '--image', PORTRAIT, '--audio', join(dir, 'tone.wav'), '--output', join(dir, 'z.mp4')], { PATH: '/nonexistent' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/AVATAR_ERR_TOOL_MISSING: ffmpeg/);
    expect(r.stderr).toContain('apt-get install');
    expect(existsSync(join(dir, 'z.mp4'))).toBe(false);
  });

  it('an output folder that cannot be written to is refused before any work', async (test) => {
    const base = await tempDir('avatar-ro-');
    const locked = join(base, 'locked');
    await mkdir(locked);
    await chmod(locked, 0o555);
    // Root may write anywhere, whatever the mode. As root, the folder is a read-only mount instead; where
    // that is refused, an ordinary user runs the CLI, if it can reach it (a clone under /root it cannot).
    let unmount = false;
    let asUser: number | undefined;
    if (process.getuid?.() === 0) {
      unmount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,ro', 'tmpfs', locked]).status === 0;
      if (!unmount) {
        if (spawnSync(process.execPath, [CLI, '--version'], { uid: 65534, gid: 65534 }).status !== 0) {
          test.skip(`as root, neither a read-only mount nor an ordinary user that can run ${CLI} is available here`);
        }
        asUser = 65534;
        await chmod(base, 0o777);
      }
    }
    try {
      const r = await avatar(['--storage', join(base, 'storage'), 'tts', 'hello', '--output', join(locked, 'x.wav')], { cwd: base, ...(asUser !== undefined && { uid: asUser }) });
      expect(r.stderr).toContain('AVATAR_ERR_OUTPUT_NOT_WRITABLE: the folder for output path is not writable');
      expect(r.code).toBe(2);
      expect(await readdir(locked)).toEqual([]);
    } finally {
      if (unmount) spawnSync('umount', [locked]);
    }
  });

  it('help and version exit 0', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('pipeline');
    expect((await run(['voices', 'clone', '--help'])).stdout).toMatch(/not neural\s+voice cloning/);
    expect((await run(['--version'])).code).toBe(0);
  });
});

describe('avatar doctor', () => {
  it('lists the built-in engines with their tools and says there is no GPU plainly', async () => {
    // a storage folder of its own: the one the tests above share holds a damaged job file on purpose
    const r = await avatar(['--storage', join(dir, 'doctor-storage'), '--json', 'doctor']);
    expect(r.code, `${r.stderr}\n${r.stdout.slice(0, 2000)}`).toBe(0);
    expect((JSON.parse(r.stdout) as { storageFindings: unknown[] }).storageFindings).toEqual([]);
    // and that one it names, with what to do, exiting 1
    const shared = await run(['--json', 'doctor']);
    expect(shared.code).toBe(1);
    const findings = (JSON.parse(shared.stdout) as { storageFindings: { kind: string; path: string; advice: string }[] }).storageFindings;
    expect(findings).toEqual([expect.objectContaining({ kind: 'damaged_job', path: expect.stringContaining('job-20260101000000-deadbeef.json'), advice: expect.stringContaining('delete it') })]);
    const report = JSON.parse(r.stdout) as { plugins: { stage: string; name: string; source: string; check: { ok: boolean } }[]; gpu: { available: boolean; reason?: string }; stagesMissing: string[] };
    const names = report.plugins.map((p) => `${p.stage}/${p.name}`);
    expect(names).toEqual(expect.arrayContaining(['tts/flite', 'tts/festival', 'tts/espeak-ng', 'encode/ffmpeg', 'voice/pitch-match']));
    expect(report.plugins.every((p) => p.check.ok)).toBe(true);
    expect(report.plugins.find((p) => p.name === 'flite')?.source).toBe('@avatar/tts@0.1.0');
    expect(names).toContain('face/onnx-face');
    expect(report.stagesMissing).toEqual([]);
    expect(names).toEqual(expect.arrayContaining(['face/onnx-face', 'lipsync/warp', 'inspect/sync-inspector']));
    if (!report.gpu.available) expect(report.gpu.reason).toMatch(/^no GPU/);
    void readFile;
  });
});

describe('avatar serve: upload limits from flags and the environment', () => {
  it('refuses a bad flag and a bad variable before it listens', async () => {
    const flag = await run(['serve', '--port', '0', '--max-photo-mb', '0']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/max-photo-mb must be a number from 0\.01 to 1024/);
    const env = await run(['serve', '--port', '0'], { AVATAR_UPLOAD_MAX_AUDIO_SECONDS: 'abc' });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/AVATAR_ERR_USAGE: AVATAR_UPLOAD_MAX_AUDIO_SECONDS must be a whole number of seconds from 1 to 3600, not "abc"/);
  });

  it('a flag wins over its variable; a variable alone sets its limit', async () => {
    const tone = join(dir, 'serve-tone.wav');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=220:duration=1', tone]);
    const child = spawn(process.execPath, [CLI, '--storage', storage, '--json', 'serve', '--port', '0', '--no-worker', '--max-photo-mb', '0.05'], {
      cwd: ROOT, env: { ...process.env, AVATAR_API_KEYS: '', AVATAR_UPLOAD_MAX_PHOTO_MB: '100', AVATAR_UPLOAD_MAX_AUDIO_MB: '0.01' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line) resolve((JSON.parse(line) as { url: string }).url);
        });
        child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
        void exited.then((code) => reject(new Error(`serve ended (${code}): ${err}`)));
      });
      const post = async (route: string, field: string, path: string, name: string): Promise<{ status: number; body: { error: { code: string; message: string } } }> => {
        const fd = new FormData();
        fd.append(field, new Blob([await readFile(path)]), name);
        const res = await fetch(`${url}${route}`, { method: 'POST', body: fd });
        return { status: res.status, body: await res.json() as { error: { code: string; message: string } } };
      };
      // the portrait is 60 KB: over the flag's 0.05 MiB, far under the variable's 100 MiB
      const photo = await post('/v1/avatars', 'photo', PORTRAIT, 'grace.jpg');
      expect(photo.status).toBe(413);
      expect(photo.body.error.code).toBe('AVATAR_ERR_HTTP_UPLOAD_TOO_LARGE');
      expect(photo.body.error.message).toContain('51.2 KiB');
      // a second of 44.1 kHz audio is 86 KB: over the variable's 0.01 MiB
      const audio = await post('/v1/voices', 'sample', tone, 'tone.wav');
      expect(audio.status).toBe(413);
      expect(audio.body.error.message).toContain('10.2 KiB');
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
