import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { DEFAULT_PIPELINE_CONFIG, regionsFromLandmarks, resolveEncodeSettings, silentLogger } from '@avatar/core';
import type { Avatar, EncodeSettings, Speech, StagePlugin, VoiceSettings } from '@avatar/core';
import { runStagePluginConformance } from '@avatar/core/testing';
import { plugins as encoders } from '@avatar/encode';
import { plugins as faces } from '@avatar/face';
import { plugins as renderers } from '@avatar/lipsync';
import { plugins as speakers } from '@avatar/tts';
import { PORTRAIT } from './helpers/cli.js';

// Every built-in engine passes the same conformance suite a third party runs on theirs
// (@avatar/core/testing), on real inputs: real speech, a real photo, real frames, a real video.

const LOW: EncodeSettings = resolveEncodeSettings({ ...DEFAULT_PIPELINE_CONFIG, videoQuality: 'low' });
const TEXT = 'The conformance suite checks every engine the same way. It runs this text, then runs it again and stops it early, and looks at what is left behind.';
const find = <T extends StagePlugin>(list: readonly StagePlugin[], stage: string, name: string): T => {
  const plugin = list.find((p) => p.stage === stage && p.name === name);
  if (!plugin) throw new Error(`${stage}/${name} is not exported`);
  return plugin as T;
};
const never = new AbortController().signal;
const runCtx = (workDir: string) => ({ signal: never, workDir, log: silentLogger, progress: () => undefined });

function speechFile(dir: string, name = 'speech.wav'): string {
  const path = join(dir, name);
  const r = spawnSync('flite', ['-voice', 'slt', '-t', TEXT, '-o', path]);
  if (r.status !== 0) throw new Error(`flite: ${r.stderr.toString()}`);
  return path;
}

async function speech(dir: string): Promise<Speech> {
  const flite = find<StagePlugin<'tts'>>(speakers, 'tts', 'flite');
  const loaded = await flite.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    const voice: VoiceSettings = { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 };
    return await loaded.run({ text: TEXT, voice, outputPath: join(dir, 'speech.wav'), maxSeconds: 60 }, runCtx(dir));
  } finally {
    await loaded.unload();
  }
}

async function avatar(dir: string): Promise<Avatar> {
  const face = find<StagePlugin<'face'>>(faces, 'face', 'onnx-face');
  const loaded = await face.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run({ imagePath: PORTRAIT, prepare: { outputPath: join(dir, 'avatar.png'), size: LOW.size } }, runCtx(dir));
  } finally {
    await loaded.unload();
  }
}

for (const name of ['flite', 'festival', 'espeak-ng']) {
  const plugin = find<StagePlugin<'tts'>>(speakers, 'tts', name);
  const voice = plugin.defaultVoice ?? { voice: '', language: 'en-US' };
  runStagePluginConformance(plugin, {
    input: (dir) => ({ text: TEXT, voice: { engine: name, voice: voice.voice, language: voice.language, rate: 1, pitch: 0 }, outputPath: join(dir, 'out.wav'), maxSeconds: 60 }),
    cancelAfterMs: 20,
  });
}

runStagePluginConformance(find<StagePlugin<'voice'>>(speakers, 'voice', 'pitch-match'), {
  input: (dir) => ({ referencePath: speechFile(dir) }),
  cancelAfterMs: 20,
  timeoutMs: 120_000,
});

runStagePluginConformance(find<StagePlugin<'face'>>(faces, 'face', 'onnx-face'), {
  input: (dir) => ({ imagePath: PORTRAIT, prepare: { outputPath: join(dir, 'avatar.png'), size: LOW.size } }),
  cancelAfterMs: 5,
});

runStagePluginConformance(find<StagePlugin<'lipsync'>>(renderers, 'lipsync', 'warp'), {
  input: async (dir) => {
    const spoken = await speech(dir);
    return {
      avatar: await avatar(dir), speech: spoken, audioPath: spoken.wavPath, maxSeconds: 60, settings: LOW,
      animation: { headMotion: 'subtle', blinkRate: 15, expressiveness: 1, seed: 1 },
    };
  },
});

runStagePluginConformance(find<StagePlugin<'encode'>>(encoders, 'encode', 'ffmpeg'), {
  input: (dir) => ({ kind: 'still', imagePath: PORTRAIT, audioPath: speechFile(dir), outputPath: join(dir, 'still.mp4'), settings: LOW }),
  cancelAfterMs: 100,
});

runStagePluginConformance(find<StagePlugin<'inspect'>>(renderers, 'inspect', 'sync-inspector'), {
  input: async (dir) => {
    const encoder = find<StagePlugin<'encode'>>(encoders, 'encode', 'ffmpeg');
    const loaded = await encoder.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const videoPath = join(dir, 'still.mp4');
    try {
      await loaded.run({ kind: 'still', imagePath: PORTRAIT, audioPath: speechFile(dir), outputPath: videoPath, settings: LOW }, runCtx(dir));
    } finally {
      await loaded.unload();
    }
    const face = await avatar(dir);
    const regions = regionsFromLandmarks(face.face.landmarks, face.width, face.height);
    return { videoPath, regions };
  },
  cancelAfterMs: 50,
});
