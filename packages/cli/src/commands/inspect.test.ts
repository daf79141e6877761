import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../main.js';

let dir = '';
let video = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-cli-inspect-'));
  video = join(dir, 'clip.mp4');
  await promisify(execFile)('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25:duration=2',
    '-f', 'lavfi', '-i', 'sine=frequency=300:duration=2', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', video]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI in this process, collecting what it prints. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { stdout += String(chunk); return true; });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { stderr += String(chunk); return true; });
  try {
    process.exitCode = undefined;
    const code = await main(['node', 'avatar', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
  }
}

describe('avatar inspect', () => {
  it('prints the report as JSON with --json', async () => {
    const r = await cli(['inspect', video, '--mouth', '60,70,40,20', '--face', '30,10,100,100', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { video: { width: number; frameCount: number }; sync: { byLag: number[] }; borders: { pixels: number } };
    expect(report.video).toMatchObject({ width: 160, frameCount: 50 });
    expect(report.sync.byLag).toHaveLength(11);
    expect(report.borders.pixels).toBeGreaterThan(0);
  });

  it('prints a readable summary without --json', async () => {
    const r = await cli(['inspect', video, '--mouth', '60,70,40,20']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sync +mouth opening vs audio envelope: lag [+-]\d+ frames/m);
    expect(r.stdout).toContain('borders');
  });

  it('refuses a malformed box as a usage error and a missing video with its code', async () => {
    const bad = await cli(['inspect', video, '--mouth', '60,70']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--mouth must be x,y,w,h');
    const missing = await cli(['inspect', join(dir, 'none.mp4'), '--mouth', '60,70,40,20']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('AVATAR_ERR_INPUT_FILE_MISSING');
  });
});
