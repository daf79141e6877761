import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvatarError } from '@avatar/core';
import { probeMedia, readAudioInfo, readImageInfo } from './probe.js';

const run = promisify(execFile);
let dir: string;
let wav: string;
let stereo: string;
let png: string;
let text: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-probe-'));
  wav = join(dir, 'tone.wav');
  stereo = join(dir, 'stereo.ogg');
  png = join(dir, 'still.png');
  text = join(dir, 'notes.wav');
  const gen = (...args: string[]) => run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
  await Promise.all([
    gen('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=16000:duration=1.5', wav),
    gen('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=1', '-ac', '2', '-c:a', 'libopus', stereo),
    gen('-f', 'lavfi', '-i', 'color=c=orange:size=97x61,format=rgb24', '-frames:v', '1', png),
    writeFile(text, 'just words\n'),
  ]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function rejection(promise: Promise<unknown>): Promise<AvatarError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(AvatarError);
  return error as AvatarError;
}

describe('probeMedia', () => {
  it('describes the format and every stream', async () => {
    const info = await probeMedia(wav);
    expect(info).toMatchObject({ path: wav, formatName: 'wav' });
    expect(info.sizeBytes).toBeGreaterThan(40_000);
    expect(info.durationSeconds).toBeCloseTo(1.5, 3);
    expect(info.streams).toEqual([
      expect.objectContaining({ index: 0, type: 'audio', codec: 'pcm_s16le', sampleRate: 16000, channels: 1 }),
    ]);
    const image = await probeMedia(png);
    expect(image.streams[0]).toMatchObject({ type: 'video', codec: 'png', width: 97, height: 61, pixFmt: 'rgb24' });
  });

  it('a file ffprobe cannot parse is unreadable, with ffprobe\'s reason', async () => {
    const error = await rejection(probeMedia(text, { input: 'recording' }));
    expect(error.code).toBe('AVATAR_ERR_INPUT_FILE_UNREADABLE');
    expect(error.message).toMatch(/^recording cannot be read: .*notes\.wav \(.*Invalid data found/);
  });

  it('a missing ffprobe is AVATAR_ERR_TOOL_MISSING', async () => {
    const error = await rejection(probeMedia(wav, { ffprobePath: join(dir, 'no-ffprobe') }));
    expect(error.code).toBe('AVATAR_ERR_TOOL_MISSING');
    expect(error.hint).toContain('apt-get install -y ffmpeg');
  });
});

describe('readAudioInfo', () => {
  it('reads duration, sample rate and channels', async () => {
    expect(await readAudioInfo(wav)).toEqual({ durationSeconds: 1.5, sampleRate: 16000, channels: 1, codec: 'pcm_s16le' });
    const ogg = await readAudioInfo(stereo);
    expect(ogg).toMatchObject({ sampleRate: 48000, channels: 2, codec: 'opus' });
    expect(ogg.durationSeconds).toBeCloseTo(1, 1);
  });

  it('anything that is not audio is AVATAR_ERR_INPUT_NOT_AUDIO with the reason', async () => {
    const picture = await rejection(readAudioInfo(png));
    expect(picture.code).toBe('AVATAR_ERR_INPUT_NOT_AUDIO');
    expect(picture.message).toContain('no audio stream');
    const words = await rejection(readAudioInfo(text));
    expect(words.code).toBe('AVATAR_ERR_INPUT_NOT_AUDIO');
    expect(words.message).toContain('Invalid data found');
    const missing = await rejection(readAudioInfo(join(dir, 'gone.wav')));
    expect(missing.code).toBe('AVATAR_ERR_INPUT_FILE_MISSING');
  });
});

describe('readImageInfo', () => {
  it('reads the size of a still and refuses audio', async () => {
    expect(await readImageInfo(png)).toEqual({ width: 97, height: 61, codec: 'png' });
    const error = await rejection(readImageInfo(wav, { input: 'avatar image' }));
    expect(error.code).toBe('AVATAR_ERR_INPUT_NOT_IMAGE');
    expect(error.message).toContain('no picture');
  });
});
