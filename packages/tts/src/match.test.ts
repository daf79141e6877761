import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAvatarError, silentLogger } from '@avatar/core';
import type { RunContext, VoiceMatch } from '@avatar/core';
import { analyzeSpeech } from './analysis.js';
import { createTtsPlugin } from './engines.js';
import { createPitchMatchPlugin } from './match.js';
import { runTool } from './spawn.js';
import { encodeWav, toFloat } from './wav.js';

const PASSAGE = 'Please call Stella. Ask her to bring these things with her from the store: six spoons of fresh snow peas, ' +
  'five thick slabs of blue cheese, and maybe a snack for her brother Bob.';

let dir = '';
const ctx = (): RunContext => ({ signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: join(dir, 'work') });
const plugin = createPitchMatchPlugin();

async function espeak(args: string[], text: string, out: string): Promise<string> {
  const path = join(dir, out);
  await runTool('espeak-ng', [...args, '-w', path, text], { tool: 'espeak-ng', install: '', engine: 'espeak-ng' });
  return path;
}

async function match(path: string): Promise<VoiceMatch> {
  const loaded = await plugin.load({ log: silentLogger, storageDir: join(dir, 'storage'), options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run({ referencePath: path }, ctx());
  } finally {
    await loaded.unload();
  }
}

async function errorOf(path: string): Promise<unknown> {
  return match(path).then(() => undefined, (e: unknown) => e);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-match-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pitch-match', () => {
  let low: VoiceMatch;
  let high: VoiceMatch;

  beforeAll(async () => {
    const lowWav = await espeak(['-v', 'en-us', '-p', '15', '-s', '150'], PASSAGE, 'low.wav');
    const highWav = await espeak(['-v', 'en-us+f3', '-p', '85', '-s', '200'], PASSAGE, 'high.wav');
    // the high one goes through FLAC to show that other formats decode too
    const highFlac = join(dir, 'high.flac');
    await runTool('ffmpeg', ['-v', 'error', '-i', highWav, '-y', highFlac], { tool: 'ffmpeg', install: '', engine: 'ffmpeg' });
    low = await match(lowWav);
    high = await match(highFlac);
  });

  it('measures the speakers', () => {
    expect(low.measured.voicedSeconds).toBeGreaterThan(3);
    expect(low.measured.medianPitchHz).toBeGreaterThan(60);
    expect(low.measured.medianPitchHz).toBeLessThan(110);
    expect(high.measured.medianPitchHz).toBeGreaterThan(180);
    const [p10, p90] = high.measured.pitchRangeHz;
    expect(p10).toBeLessThan(high.measured.medianPitchHz);
    expect(p90).toBeGreaterThan(high.measured.medianPitchHz);
    // 200 wpm against 150 wpm
    expect(high.measured.syllablesPerSecond).toBeGreaterThan(low.measured.syllablesPerSecond);
    expect(low.reason).toContain(low.settings.voice);
  });

  it('gives the low speaker a lower-pitched voice than the high one, and it sounds that way', async () => {
    const pitchOf = async (m: VoiceMatch, name: string): Promise<number> => {
      const loaded = await createTtsPlugin(m.settings.engine as 'flite').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
      const speech = await loaded.run({ text: PASSAGE, voice: m.settings, outputPath: join(dir, name), maxSeconds: 60 }, ctx());
      return analyzeSpeech(toFloat(speech.pcm), speech.sampleRate).medianPitchHz;
    };
    const lowPitch = await pitchOf(low, 'as-low.wav');
    const highPitch = await pitchOf(high, 'as-high.wav');
    expect(lowPitch).toBeLessThan(highPitch * 0.7);
    // the matched voice lands within 3 semitones of the speaker
    expect(Math.abs(12 * Math.log2(lowPitch / low.measured.medianPitchHz))).toBeLessThan(3);
    expect(Math.abs(12 * Math.log2(highPitch / high.measured.medianPitchHz))).toBeLessThan(3);
    expect(high.settings.rate).toBeGreaterThan(low.settings.rate);
  });

  it('keeps the voice calibration in the storage folder', async () => {
    const cache = JSON.parse(await readFile(join(dir, 'storage', 'tts', 'voice-calibration.json'), 'utf8')) as { voices: Record<string, { medianPitchHz: number }> };
    expect(cache.voices['flite:slt']?.medianPitchHz).toBeGreaterThan(140);
    expect(cache.voices['flite:rms']?.medianPitchHz).toBeLessThan(130);
  });

  it('refuses a text file as not audio, with ffmpeg\'s reason', async () => {
    const txt = join(dir, 'notes.txt');
    await writeFile(txt, 'this is not a recording\n'.repeat(50));
    const error = await errorOf(txt);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_NOT_AUDIO')).toBe(true);
    expect((error as Error).message).toMatch(/no audio stream|Invalid data/i);
  });

  it('refuses noise: no voiced speech', async () => {
    const rate = 16000;
    const noise = new Int16Array(rate * 6);
    let seed = 12345;
    for (let i = 0; i < noise.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      noise[i] = (seed % 16000) - 8000;
    }
    const path = join(dir, 'noise.wav');
    await writeFile(path, encodeWav(noise, rate));
    const error = await errorOf(path);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_AUDIO_TOO_SHORT')).toBe(true);
    expect((error as { params: { seconds: number } }).params.seconds).toBeLessThan(1);
  });

  it('refuses a one-second clip as too short', async () => {
    const clip = await espeak(['-v', 'en-us'], 'Hello there.', 'short.wav');
    const error = await errorOf(clip);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_AUDIO_TOO_SHORT')).toBe(true);
  });

  it('refuses binary junk as not audio', async () => {
    const junk = join(dir, 'junk.wav');
    await writeFile(junk, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    const error = await errorOf(junk);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_NOT_AUDIO')).toBe(true);
    expect((error as Error).message).toContain('ffmpeg');
  });

  it('says when the recording is missing', async () => {
    const error = await errorOf(join(dir, 'nope.wav'));
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_FILE_MISSING')).toBe(true);
  });
});
