import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { pngDeclaring } from '@avatar/core/testing';
import { PORTRAIT, avatar, tempDir } from './helpers/cli.js';

// Inputs that can be checked before any work are checked then, the same way by every command: a job is
// refused at submit as its run would refuse it, and nothing is queued or written.

describe('inputs checked before any work', () => {
  let dir: string;
  let storage: string;
  let gif: string;
  let bomb: string;
  let audio: string;
  const run = (args: string[]) => avatar(['--storage', storage, '--json', ...args]);
  const errorOf = (stdout: string): { code: string; message: string } => (JSON.parse(stdout) as { error: { code: string; message: string } }).error;

  beforeAll(async () => {
    dir = await tempDir('avatar-inputs-');
    storage = join(dir, 'storage');
    gif = join(dir, 'portrait.gif');
    await sharp(PORTRAIT).resize(128).gif().toFile(gif);
    bomb = join(dir, 'bomb.png');
    await writeFile(bomb, pngDeclaring(12_000, 10_000));
    audio = join(dir, 'voice.wav');
    const spoken = await run(['tts', 'Hello.', '--output', audio]);
    expect(spoken.code, spoken.stderr).toBe(0);
  });

  it('an output path that is a folder is refused before any stage runs', async () => {
    const folder = join(dir, 'video.mp4');
    await mkdir(folder);
    const r = await run(['pipeline', 'run', 'Hello.', '--avatar', PORTRAIT, '--output', folder]);
    expect(r.code, r.stderr).toBe(2);
    expect(errorOf(r.stdout).code).toBe('AVATAR_ERR_OUTPUT_IS_DIRECTORY');
    expect((JSON.parse(r.stdout) as { stagesCompleted: string[] }).stagesCompleted).toEqual([]);
    expect(await readdir(folder)).toEqual([]);
  });

  it('a GIF is named as a format not taken, and a photo over the pixel limit is refused from its header, by every command', async () => {
    for (const args of [
      ['pipeline', 'run', 'Hello.', '--avatar', gif, '--output', join(dir, 'a.mp4')],
      ['encode', '--image', gif, '--audio', audio, '--output', join(dir, 'b.mp4')],
      ['jobs', 'submit', '--type', 'full_pipeline', '--text', 'Hello.', '--avatar', gif],
    ]) {
      const r = await run(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(errorOf(r.stdout).code, args[0]).toBe('AVATAR_ERR_INPUT_IMAGE_UNSUPPORTED');
    }
    for (const args of [
      ['pipeline', 'run', 'Hello.', '--avatar', bomb, '--output', join(dir, 'c.mp4')],
      ['encode', '--image', bomb, '--audio', audio, '--output', join(dir, 'd.mp4')],
      ['jobs', 'submit', '--type', 'video_encoding', '--image', bomb, '--audio', audio],
    ]) {
      const r = await run(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(2);
      const error = errorOf(r.stdout);
      expect(error.code, args[0]).toBe('AVATAR_ERR_INPUT_IMAGE_TOO_LARGE');
      expect(error.message).toContain('12000x10000');
    }
  });

  it('jobs submit refuses what the run would refuse, and queues nothing', async () => {
    const cases: [string[], string][] = [
      [['--type', 'full_pipeline', '--text', 'Hello.', '--avatar', join(dir, 'missing.jpg')], 'AVATAR_ERR_INPUT_FILE_MISSING'],
      [['--type', 'full_pipeline', '--text', '   ', '--avatar', PORTRAIT], 'AVATAR_ERR_INPUT_TEXT_EMPTY'],
      [['--type', 'voice_synthesis', '--text', '\u{1F600}\u{1F389}'], 'AVATAR_ERR_INPUT_TEXT_UNSAYABLE'],
      [['--type', 'video_lipsync', '--avatar', PORTRAIT, '--audio', join(dir, 'none.wav')], 'AVATAR_ERR_INPUT_FILE_MISSING'],
      [['--type', 'full_pipeline', '--text', 'Hello.', '--avatar', PORTRAIT, '--output', join(dir, 'out.txt')], 'AVATAR_ERR_OUTPUT_EXTENSION'],
    ];
    for (const [args, code] of cases) {
      const r = await run(['jobs', 'submit', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(errorOf(r.stdout).code, args.join(' ')).toBe(code);
    }
    const listed = await run(['jobs', 'list']);
    expect(JSON.parse(listed.stdout)).toEqual([]);
  });

  it('a job may take as input the output of a job queued ahead of it, not of one that does not exist', async () => {
    const speech = await run(['jobs', 'submit', '--type', 'voice_synthesis', '--text', 'Hello.']);
    expect(speech.code, speech.stderr).toBe(0);
    const { jobId } = JSON.parse(speech.stdout) as { jobId: string };
    const next = await run(['jobs', 'submit', '--type', 'video_lipsync', '--avatar', PORTRAIT, '--audio', join(storage, 'outputs', `${jobId}.wav`)]);
    expect(next.code, next.stderr).toBe(0);
    const none = await run(['jobs', 'submit', '--type', 'video_lipsync', '--avatar', PORTRAIT, '--audio', join(storage, 'outputs', 'job-20200101000000-0badf00d.wav')]);
    expect(none.code).toBe(2);
    expect(errorOf(none.stdout).code).toBe('AVATAR_ERR_INPUT_FILE_MISSING');
  });
});
