import { spawn, spawnSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI, PORTRAIT, avatar, ffmpeg, ffprobe, tempDir } from './helpers/cli.js';

interface LiveRun {
  code: number;
  stdout: Buffer;
  stderr: string;
  /** what stderr had said when the first bytes of video reached stdout */
  stderrAtFirstByte: string | null;
}

/**
 * Runs the CLI with its stdout read as bytes, as a player would read it; `readBytes` stops reading
 * (closes the pipe) after that many, as a player that is closed early does.
 */
function runLive(args: readonly string[], cwd: string, readBytes = Infinity): Promise<LiveRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let taken = 0;
    let stderr = '';
    let stderrAtFirstByte: string | null = null;
    child.stdout.on('data', (d: Buffer) => {
      stderrAtFirstByte ??= stderr;
      chunks.push(d);
      taken += d.byteLength;
      if (taken >= readBytes) child.stdout.destroy();
    });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout: Buffer.concat(chunks), stderr, stderrAtFirstByte });
    });
  });
}

/** Top-level MP4 box types in order. */
function boxes(data: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at + 8 <= data.length;) {
    const size = data.readUInt32BE(at);
    out.push(data.toString('latin1', at + 4, at + 8));
    if (size < 8) break;
    at += size;
  }
  return out;
}

// `--output -`: the video goes to stdout as it is encoded (fragmented MP4), for `| ffplay -` or a pipe.
describe('live output: the video on stdout while it is made', () => {
  let dir: string;
  let storage: string;
  let recording: string;

  beforeAll(async () => {
    dir = await tempDir('avatar-live-');
    storage = join(dir, 'storage');
    recording = join(dir, 'speech.wav');
    const r = await avatar(['--storage', storage, 'tts', 'A portrait speaks this sentence, and the video plays while it is being made.', '--output', recording]);
    expect(r.code, r.stderr).toBe(0);
  });

  it('lipsync --output -: fragmented MP4 on stdout from the start of encoding, the result on stderr, nothing kept', async () => {
    const run = await runLive(['--storage', storage, '--json', 'lipsync', '--avatar', PORTRAIT, '--audio', recording, '--output', '-', '--quality', 'low'], dir);
    expect(run.code, run.stderr).toBe(0);
    // the first fragment came while encoding, long before the run ended (the inspection, beside the
    // encode, ends after it)
    expect(run.stderrAtFirstByte).not.toBeNull();
    expect(run.stderrAtFirstByte).toContain('encode_video');
    expect(run.stderrAtFirstByte).not.toContain('cleanup');
    const kinds = boxes(run.stdout);
    expect(kinds.slice(0, 2)).toEqual(['ftyp', 'moov']);
    expect(kinds.filter((k) => k === 'moof').length).toBeGreaterThanOrEqual(3);
    // a player reads it: video and sound, as long as the speech
    const file = join(dir, 'captured.mp4');
    await writeFile(file, run.stdout);
    const probe = ffprobe(file);
    expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    expect(Math.abs(Number(probe.format.duration) - Number(ffprobe(recording).format.duration))).toBeLessThan(0.15);
    // the result, inspection included, is on stderr (stdout carries only the video)
    const result = JSON.parse(run.stderr.slice(run.stderr.indexOf('{\n'))) as { success: boolean; outputPath: string; inspection: { lagFrames: number } };
    expect(result).toMatchObject({ success: true, outputPath: '-' });
    expect(Math.abs(result.inspection.lagFrames)).toBeLessThanOrEqual(1);
    // no file named "-", no partial beside it, no work folder left
    expect((await readdir(dir)).sort()).toEqual(['captured.mp4', 'speech.wav', 'storage']);
    expect(await readdir(join(storage, 'work')).catch(() => [])).toEqual([]);
  });

  it('pipeline run --output - whose reader goes away: AVATAR_ERR_LIVE_OUTPUT_CLOSED, the run stops, nothing left', async () => {
    const run = await runLive(['--storage', storage, 'pipeline', 'run', 'This sentence is long enough that the player is closed before its video ends, which stops the run.', '--avatar', PORTRAIT, '--output', '-', '--quality', 'low'], dir, 1);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/error AVATAR_ERR_LIVE_OUTPUT_CLOSED: the live video's reader went away after \d+ bytes/);
    expect(run.stderr).toContain('the video on stdout stops where it was');
    expect(await readdir(join(storage, 'work')).catch(() => [])).toEqual([]);
  });

  it('--output - is MP4: WebM is refused before any stage runs', async () => {
    const r = await avatar(['--storage', storage, 'lipsync', '--avatar', PORTRAIT, '--audio', recording, '--output', '-', '--format', 'webm'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/AVATAR_ERR_CONFIG_INVALID: outputFormat must be mp4 for live output/);
    expect(r.stdout).toBe('');
  });

  it('--output - is refused for a command that writes no video stream (tts, encode): exit 2, no file named "-"', async () => {
    for (const args of [['tts', 'Hello.', '--output', '-'], ['encode', '--image', PORTRAIT, '--audio', recording, '--output', '-']]) {
      const r = await avatar(['--storage', storage, ...args], { cwd: dir });
      expect(r.code, args[0]).toBe(2);
      expect(r.stderr).toMatch(/AVATAR_ERR_USAGE: --output - \(the video on stdout\) is for "pipeline run" and "lipsync" only/);
    }
    expect(await readdir(dir)).not.toContain('-');
  });

  // (util-linux's script gives the command a terminal; Debian's bsdutils installs it everywhere)
  it.skipIf(spawnSync('script', ['--version']).status !== 0)('--output - into a terminal is refused: video is not for a screen', () => {
    const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI} --storage ${storage} lipsync --avatar ${PORTRAIT} --audio ${recording} --output -`, '/dev/null'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stdout).toMatch(/AVATAR_ERR_USAGE: --output - writes video to stdout, which is a terminal here/);
  });

  it('without --json too, the report goes to stderr and stdout holds the video alone', async () => {
    const tone = join(dir, 'tone.wav');
    ffmpeg(['-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=16000:duration=1.5', tone]);
    const run = await runLive(['--storage', storage, 'lipsync', '--avatar', PORTRAIT, '--audio', tone, '--output', '-', '--quality', 'low'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^video: - \(1\.\d+s\)$/m);
    const kinds = boxes(run.stdout);
    expect(kinds[0]).toBe('ftyp');
    expect(kinds.every((k) => ['ftyp', 'moov', 'moof', 'mdat', 'mfra'].includes(k))).toBe(true);
  });
});
