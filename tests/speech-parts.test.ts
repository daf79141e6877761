import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIPELINE_CONFIG, resolveEncodeSettings, silentLogger } from '@avatar/core';
import type { Avatar, FrameStream, LipsyncInput, Speech, SpeechPart, StagePlugin } from '@avatar/core';
import { plugins as faces } from '@avatar/face';
import { plugins as renderers } from '@avatar/lipsync';
import { plugins as speakers } from '@avatar/tts';
import { PORTRAIT } from './helpers/cli.js';

// Frames drawn from the speech as it is made (LipsyncInput.speechParts) are the frames drawn from the
// whole speech, byte for byte, and they start before the speech is whole.

const LOW = resolveEncodeSettings({ ...DEFAULT_PIPELINE_CONFIG, videoQuality: 'low' });
const TEXT = 'Hello! I am Grace. This video was made from one photo and a few sentences, on an ordinary computer. '
  + 'Every frame follows the speech as it is made, sentence by sentence. And the eyes blink now and then, as they should.';
const find = <K extends 'tts' | 'face' | 'lipsync'>(list: readonly StagePlugin[], stage: K, name: string): StagePlugin<K> => {
  const plugin = list.find((p) => p.stage === stage && p.name === name);
  if (!plugin) throw new Error(`${stage}/${name} is not exported`);
  return plugin as StagePlugin<K>;
};
const ctx = (workDir: string) => ({ signal: new AbortController().signal, workDir, log: silentLogger, progress: () => undefined });

let dir = '';
let speech: Speech;
let parts: SpeechPart[] = [];
let avatar: Avatar;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-parts-'));
  const flite = await find(speakers, 'tts', 'flite').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  speech = await flite.run({
    text: TEXT, voice: { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(dir, 'speech.wav'), maxSeconds: 60,
    onPart: (part) => parts.push(part),
  }, ctx(dir));
  const face = await find(faces, 'face', 'onnx-face').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    avatar = await face.run({ imagePath: PORTRAIT, prepare: { outputPath: join(dir, 'avatar.png'), size: LOW.size } }, ctx(dir));
  } finally {
    await face.unload();
  }
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Each frame's digest (the renderer reuses its buffers: hashed as they come). */
async function digests(input: Omit<LipsyncInput, 'avatar' | 'settings' | 'animation' | 'maxSeconds' | 'audioPath'>, onFrame?: (n: number) => void): Promise<{ stream: FrameStream; frames: string[] }> {
  const warp = await find(renderers, 'lipsync', 'warp').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    const stream = await warp.run({
      ...input, avatar, audioPath: speech.wavPath, maxSeconds: 60, settings: LOW,
      animation: { headMotion: 'subtle', blinkRate: 30, expressiveness: 1, seed: 7 },
    }, ctx(dir));
    const frames: string[] = [];
    for await (const frame of stream.frames) {
      frames.push(createHash('sha1').update(frame).digest('hex'));
      onFrame?.(frames.length);
    }
    return { stream, frames };
  } finally {
    await warp.unload();
  }
}

describe('frames from the speech as it is made', () => {
  it('are the frames of the whole speech, byte for byte, and start before the speech is whole', async () => {
    expect(parts.length).toBeGreaterThanOrEqual(3);
    const whole = await digests({ speech });
    expect(whole.frames.length).toBe(Math.ceil(speech.durationSeconds * LOW.fps));
    let given = 0;
    let drawnBeforeLast = -1;
    async function* asMade(): AsyncGenerator<SpeechPart> {
      for (const part of parts) {
        // the last part comes only after the frames of the first ones have had a chance to be drawn
        if (part.index === parts.length - 1) await new Promise((resolve) => setTimeout(resolve, 200));
        given++;
        yield part;
      }
    }
    let drawn = 0;
    const streamed = await digests({ speechParts: asMade() }, (n) => {
      drawn = n;
      if (given < parts.length) drawnBeforeLast = n;
    });
    expect(streamed.stream.frameCount).toBe(0);
    expect(drawnBeforeLast).toBeGreaterThan(25);
    expect(drawn).toBe(whole.frames.length);
    expect(streamed.frames).toEqual(whole.frames);
  });

  it('fail with the speech when it fails partway', async () => {
    async function* failing(): AsyncGenerator<SpeechPart> {
      yield parts[0] as SpeechPart;
      yield parts[1] as SpeechPart;
      throw new Error('the speech engine failed');
    }
    await expect(digests({ speechParts: failing() })).rejects.toThrow(/the speech engine failed/);
  });
});
