import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, avatar, ffprobe, tempDir } from './helpers/cli.js';

// A plugin package is packed and installed with npm into a project outside the workspace, beside its own
// copy of @avatar/core (packed from the workspace: a second copy, not the one the CLI runs with); the CLI
// run from that project discovers it in node_modules, picks it with --engine and runs queued jobs with it.
describe('third-party plugin package', () => {
  let project: string;

  beforeAll(async () => {
    const base = await tempDir('avatar-plugin-');
    const source = join(base, 'avatar-plugin-whisper');
    cpSync(join(ROOT, 'tests/fixtures/plugin-whisper'), source, { recursive: true });
    project = join(base, 'project');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-app', version: '1.0.0', private: true }));
    const pack = (dir: string): string => join(base, execFileSync('npm', ['pack', '--silent', '--pack-destination', base], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop() as string);
    const tarballs = [pack(join(ROOT, 'packages/core')), pack(source)];
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], { cwd: project, stdio: 'ignore' });
  }, 120_000);

  it('is discovered, listed by doctor with its package, and runs a queued job', async () => {
    const run = (args: string[]) => avatar(['--storage', join(project, 'storage'), ...args], { cwd: project });
    const doctor = JSON.parse((await run(['--json', 'doctor'])).stdout) as { plugins: { name: string; source: string }[] };
    expect(doctor.plugins.find((p) => p.name === 'whisper')?.source).toBe('avatar-plugin-whisper@1.0.0');

    const voice = JSON.parse((await run(['--json', 'voices', 'create', '--engine', 'whisper', '--voice', 'en-us'])).stdout) as { id: string };
    const job = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'A whisper from a plugin.', '--voice', voice.id])).stdout) as { jobId: string };
    const worker = await run(['worker', '--once']);
    expect(worker.stderr, worker.stderr).toContain(`completed ${job.jobId}`);
    const done = JSON.parse((await run(['--json', 'jobs', 'status', job.jobId])).stdout) as { status: string; result: { outputPath: string } };
    expect(done.status).toBe('completed');
    const probe = ffprobe(done.result.outputPath);
    expect(Number(probe.format.duration)).toBeGreaterThan(0.8);
  });

  it('is picked per run with --engine, gets its options checked by its own schema, and is recorded as the engine that ran', async () => {
    const run = (args: string[], env: NodeJS.ProcessEnv = {}) => avatar(['--storage', join(project, 'storage'), ...args], { cwd: project, env });
    const speak = async (name: string, extra: string[]) => {
      const r = await run(['--json', 'tts', 'The plugin speaks at the speed it is told.', '--output', join(project, name), '--engine', 'tts=whisper', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { durationSeconds: number; engines: Record<string, { name: string; package: string }> };
    };
    const normal = await speak('normal.wav', []);
    expect(normal.engines.tts).toEqual({ name: 'whisper', package: 'avatar-plugin-whisper@1.0.0' });
    const slow = await speak('slow.wav', ['--engine-option', 'tts.wordsPerMinute=100']);
    // the option reached the plugin: the same words take longer
    expect(slow.durationSeconds).toBeGreaterThan(normal.durationSeconds * 1.3);

    const bad = await run(['tts', 'Too slow.', '--output', join(project, 'bad.wav'), '--engine', 'tts=whisper', '--engine-option', 'tts.wordsPerMinute=20']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('error AVATAR_ERR_ENGINE_OPTION_INVALID: option wordsPerMinute of the tts engine "whisper" (avatar-plugin-whisper@1.0.0) must be >= 80');
    const unknown = await run(['tts', 'No such engine.', '--output', join(project, 'none.wav'), '--engine', 'tts=shout']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no tts engine named "shout" is installed (installed: flite, festival, espeak-ng, whisper)');
    expect(existsSync(join(project, 'bad.wav')) || existsSync(join(project, 'none.wav'))).toBe(false);

    // the process's default from AVATAR_ENGINES, through the queue; jobs status names the engine
    const job = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Queued for the plugin.'], { AVATAR_ENGINES: 'tts=whisper' })).stdout) as { jobId: string };
    await run(['worker', '--once'], { AVATAR_ENGINES: 'tts=whisper' });
    const status = await run(['jobs', 'status', job.jobId]);
    expect(status.stdout).toContain('engines: tts whisper (avatar-plugin-whisper@1.0.0)');
    // or per job: params.config.engines, set by --engine on jobs submit, run by a worker with no defaults
    const perJob = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Chosen for this job.', '--engine', 'tts=whisper', '--engine-option', 'tts.wordsPerMinute=120'])).stdout) as { jobId: string; params: { config: unknown } };
    expect(perJob.params.config).toEqual({ engines: { tts: 'whisper' }, engineOptions: { tts: { wordsPerMinute: 120 } } });
    await run(['worker', '--once']);
    const ran = JSON.parse((await run(['--json', 'jobs', 'status', perJob.jobId])).stdout) as { status: string; result: { engines: Record<string, { name: string }> } };
    expect(ran.status).toBe('completed');
    expect(ran.result.engines.tts?.name).toBe('whisper');
  });

  it('its own error codes, thrown with its own copy of core, keep their code and exit code in the CLI and the queue', async () => {
    const run = (args: string[]) => avatar(['--storage', join(project, 'storage'), ...args], { cwd: project });
    const voice = JSON.parse((await run(['--json', 'voices', 'create', '--engine', 'whisper', '--voice', 'xx-nope'])).stdout) as { id: string };
    const direct = await run(['tts', 'Nobody can say this.', '--voice', voice.id, '--output', join(project, 'nope.wav')]);
    expect(direct.code).toBe(2);
    expect(direct.stderr).toContain('error WHISPER_ERR_VOICE_MISSING: espeak-ng has no voice named xx-nope to whisper with');
    expect(direct.stderr).toContain('Pick one of the voices "espeak-ng --voices" lists');
    expect(existsSync(join(project, 'nope.wav'))).toBe(false);

    const job = JSON.parse((await run(['--json', 'jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Nobody can say this.', '--voice', voice.id])).stdout) as { jobId: string };
    await run(['worker', '--once']);
    const failed = JSON.parse((await run(['--json', 'jobs', 'status', job.jobId])).stdout) as { status: string; error: { code: string; message: string } };
    expect(failed.status).toBe('failed');
    expect(failed.error.code).toBe('WHISPER_ERR_VOICE_MISSING');
    expect(failed.error.message).toBe('espeak-ng has no voice named xx-nope to whisper with');
  });

  it('is not seen from a folder where it is not installed', async () => {
    const elsewhere = await tempDir('avatar-noplugin-');
    const r = await avatar(['--storage', join(elsewhere, 's'), 'voices', 'create', '--engine', 'whisper'], { cwd: elsewhere });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no tts engine named "whisper"');
  });
});
