import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_PIPELINE_CONFIG, resolveEncodeSettings, silentLogger } from '@avatar/core';
import type { EncodeSettings, StagePlugin } from '@avatar/core';
import { runStagePluginConformance } from '@avatar/core/testing';
import { plugins as faces } from '@avatar/face';
import { warpPlugin } from '@avatar/lipsync';
import { labelPlugin } from '../examples/avatar-plugin-label/index.js';
import { PORTRAIT, ROOT, avatar, ffprobe, tempDir } from './helpers/cli.js';

// The example plugin package (examples/avatar-plugin-label): it passes the stage conformance suite on a
// still image and on frames streamed from the built-in renderer, and, packed and installed with npm into a
// project outside the workspace, it is picked with --engine for a whole pipeline run whose video shows
// the label.

const LOW: EncodeSettings = resolveEncodeSettings({ ...DEFAULT_PIPELINE_CONFIG, videoQuality: 'low' });
const TEXT = 'This video says what it is, in the corner, for as long as it plays.';
const never = new AbortController().signal;

function speechFile(dir: string): string {
  const path = join(dir, 'speech.wav');
  expect(spawnSync('flite', ['-voice', 'slt', '-t', TEXT, '-o', path]).status).toBe(0);
  return path;
}

const label = labelPlugin as unknown as StagePlugin<'encode'>;

runStagePluginConformance(label, {
  input: (dir) => ({ kind: 'still', imagePath: PORTRAIT, audioPath: speechFile(dir), outputPath: join(dir, 'still.mp4'), settings: LOW }),
  options: { text: 'Conformance' },
  source: 'avatar-plugin-label@1.0.0',
});

runStagePluginConformance(label, {
  input: async (dir) => {
    const audioPath = speechFile(dir);
    const face = faces.find((p) => p.stage === 'face') as StagePlugin<'face'>;
    const ctx = { signal: never, workDir: dir, log: silentLogger, progress: () => undefined };
    const faceStage = await face.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const portrait = await faceStage.run({ imagePath: PORTRAIT, prepare: { outputPath: join(dir, 'avatar.png'), size: LOW.size } }, ctx).finally(() => faceStage.unload());
    const renderer = await warpPlugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const frames = await renderer.run({
      avatar: portrait, audioPath, maxSeconds: 60, settings: LOW, animation: { headMotion: 'subtle', blinkRate: 15, expressiveness: 1, seed: 1 },
    }, ctx);
    return { kind: 'frames', frames, audioPath, outputPath: join(dir, 'frames.mp4'), settings: LOW };
  },
  cancelAfterMs: 100,
  source: 'avatar-plugin-label@1.0.0',
});

describe('the example label engine, loaded directly', () => {
  it('draws a label with "%" and braces as written, where ffmpeg would otherwise expand or drop it', async () => {
    const dir = await tempDir('avatar-label-');
    const audioPath = speechFile(dir);
    const ctx = { signal: never, workDir: dir, log: silentLogger, progress: () => undefined };
    const encodeWith = async (plugin: StagePlugin<'encode'>, options: Record<string, unknown>, name: string): Promise<string> => {
      const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options, device: { kind: 'cpu' } });
      const outputPath = join(dir, name);
      await loaded.run({ kind: 'still', imagePath: PORTRAIT, audioPath, outputPath, settings: LOW }, ctx).finally(() => loaded.unload());
      return outputPath;
    };
    const { plugins: encoders } = await import('@avatar/encode');
    const plain = await encodeWith(encoders.find((p) => p.stage === 'encode') as StagePlugin<'encode'>, {}, 'plain.mp4');
    const labelled = await encodeWith(label, { text: '100% {real}', position: 'top-left', size: 0.08, opacity: 1 }, 'percent.mp4');
    const video = ffprobe(labelled).streams.find((s) => s.codec_type === 'video');
    const [width, height] = [video?.width ?? 0, video?.height ?? 0];
    expect(regionDifference(grayFrame(plain, 1), grayFrame(labelled, 1), width, height, [0.02, 0.02, 0.45, 0.14])).toBeGreaterThan(15);
  });
});

/** Mean absolute difference of two gray frames over a box given in shares of the frame. */
function regionDifference(a: Buffer, b: Buffer, width: number, height: number, box: [number, number, number, number]): number {
  const [x0, y0, x1, y1] = [Math.round(box[0] * width), Math.round(box[1] * height), Math.round(box[2] * width), Math.round(box[3] * height)];
  let sum = 0;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) sum += Math.abs((a[y * width + x] ?? 0) - (b[y * width + x] ?? 0));
  return sum / ((x1 - x0) * (y1 - y0));
}

function grayFrame(video: string, at: number): Buffer {
  return execFileSync('ffmpeg', ['-v', 'error', '-ss', String(at), '-i', video, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'], { maxBuffer: 1 << 24 });
}

describe('the example plugin package, installed from outside the workspace', () => {
  let project: string;

  beforeAll(async () => {
    const base = await tempDir('avatar-example-');
    const source = join(base, 'avatar-plugin-label');
    cpSync(join(ROOT, 'examples/avatar-plugin-label'), source, { recursive: true });
    project = join(base, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'my-videos', version: '1.0.0', private: true }));
    const pack = (dir: string): string => join(base, execFileSync('npm', ['pack', '--silent', '--pack-destination', base], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop() as string);
    // the plugin's peer, @avatar/core, is the host's own: installed beside it, as a user's project would have it
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', pack(join(ROOT, 'packages/core')), pack(source)], { cwd: project, stdio: 'ignore' });
  }, 180_000);

  it('is picked with --engine for a whole pipeline run, and the video carries the label where it said', async () => {
    const run = (args: string[]) => avatar(['--storage', join(project, 'storage'), ...args], { cwd: project, timeoutMs: 120_000 });
    const common = ['pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--quality', 'low', '--head-motion', 'none', '--seed', '3'];
    const plain = await run(['--json', ...common, '--output', join(project, 'plain.mp4')]);
    expect(plain.code, plain.stderr).toBe(0);
    const labelled = await run(['--json', ...common, '--output', join(project, 'labelled.mp4'), '--engine', 'encode=label',
      '--engine-option', 'encode.text=Made with avatar', '--engine-option', 'encode.position=top-left', '--engine-option', 'encode.size=0.08']);
    expect(labelled.code, labelled.stderr).toBe(0);
    const result = JSON.parse(labelled.stdout) as { engines: Record<string, { name: string; package: string }>; inspection: { correlation: number } };
    expect(result.engines.encode).toMatchObject({ name: 'label', package: 'avatar-plugin-label@1.0.0' });
    expect(result.inspection.correlation).toBeGreaterThan(0.3); // still a talking head in sync

    const probe = ffprobe(join(project, 'labelled.mp4'));
    expect(probe.streams.map((s) => s.codec_name).sort()).toEqual(['aac', 'h264']);
    const video = probe.streams.find((s) => s.codec_type === 'video');
    const [width, height] = [video?.width ?? 0, video?.height ?? 0];
    // the same frame of both videos: the label's corner differs, the opposite corner does not
    const a = grayFrame(join(project, 'plain.mp4'), 1);
    const b = grayFrame(join(project, 'labelled.mp4'), 1);
    const labelCorner = regionDifference(a, b, width, height, [0.02, 0.02, 0.45, 0.14]);
    const otherCorner = regionDifference(a, b, width, height, [0.55, 0.86, 0.98, 0.98]);
    expect(labelCorner).toBeGreaterThan(15);
    expect(otherCorner).toBeLessThan(3);
  }, 240_000);

  it('refuses an option its schema does not allow, naming the package, before any work', async () => {
    const out = join(project, 'never.mp4');
    const r = await avatar(['--storage', join(project, 'storage'), 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', out, '--engine', 'encode=label', '--engine-option', 'encode.position=middle'], { cwd: project });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('option position of the encode engine "label" (avatar-plugin-label@1.0.0) must be equal to one of the allowed values');
    expect(existsSync(out)).toBe(false);
  });

  it('its README is the tutorial: every option it documents is one the engine takes', () => {
    const readme = readFileSync(join(ROOT, 'examples/avatar-plugin-label/README.md'), 'utf8');
    for (const option of Object.keys(label.options?.properties ?? {})) expect(readme).toContain(`\`${option}\``);
  });
});
