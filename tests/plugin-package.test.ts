import { execFileSync } from 'node:child_process';
import { cpSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, avatar, ffprobe, tempDir } from './helpers/cli.js';

// A plugin package is packed and installed with npm into a project outside the workspace; the CLI run
// from that project discovers it in node_modules and runs a queued job with it.
describe('third-party plugin package', () => {
  let project: string;

  beforeAll(async () => {
    const base = await tempDir('avatar-plugin-');
    const source = join(base, 'avatar-plugin-whisper');
    cpSync(join(ROOT, 'tests/fixtures/plugin-whisper'), source, { recursive: true });
    project = join(base, 'project');
    execFileSync('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-app', version: '1.0.0', private: true }));
    const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', base], { cwd: source, encoding: 'utf8' }).trim().split('\n').pop() as string;
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--loglevel=error', join(base, tarball)], { cwd: project, stdio: 'ignore' });
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

  it('is not seen from a folder where it is not installed', async () => {
    const elsewhere = await tempDir('avatar-noplugin-');
    const r = await avatar(['--storage', join(elsewhere, 's'), 'voices', 'create', '--engine', 'whisper'], { cwd: elsewhere });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('no tts engine named "whisper"');
  });
});
