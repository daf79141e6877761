import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { AvatarError, checkReadableFile, ffmpegPath, regionsFromLandmarks } from '@avatar/core';
import type { FaceBox, InspectionSummary, PipelineConfig, RunContext } from '@avatar/core';
import type { CliContext } from '../context.js';
import { addEngineOptions, engineConfigFromFlags, withContext } from '../shared.js';
import type { EngineFlags } from '../shared.js';

type Box = FaceBox;

/** The parts of the built-in inspector's full report (its `details`) this command prints. */
interface InspectionReport {
  path: string;
  video: { width: number; height: number; fps: number; frameCount: number; durationSeconds: number };
  audio: { speechFrames: number; silentFrames: number };
  sync: { lagFrames: number; lagSeconds: number; correlation: number };
  motionSync: { lagFrames: number; correlation: number };
  silence: { stillnessRatio: number | null; closureRatio: number | null };
  borders: { meanMotion: number; maxMotion: number; bandFraction: number; pixels: number };
  sharpness: { ratio: number | null; speaking: number | null; rest: number | null };
}

/** Whether an inspector's details are a report this command knows how to print in full. */
function isFullReport(details: Readonly<Record<string, unknown>>): details is Readonly<Record<string, unknown>> & InspectionReport {
  return ['video', 'audio', 'sync', 'motionSync', 'silence', 'borders', 'sharpness'].every((key) => typeof details[key] === 'object' && details[key] !== null);
}

function describeSummary(path: string, s: InspectionSummary): string {
  return `${path}: lip-sync lag ${s.lagFrames} frames (correlation ${s.correlation.toFixed(2)}), mouth in silences ${s.silenceStillness.toFixed(2)}, border motion ${s.borderMotion.toFixed(2)}, mouth sharpness ratio ${s.sharpnessRatio.toFixed(2)}`;
}

/** "x,y,w,h" in video pixels. */
export function parseBox(name: string) {
  return (value: string): Box => {
    const parts = value.split(',').map((s) => Number(s.trim()));
    const [x, y, width, height] = parts;
    if (parts.length !== 4 || x === undefined || y === undefined || width === undefined || height === undefined ||
      !parts.every((n) => Number.isInteger(n) && n >= 0) || width < 4 || height < 4) {
      throw new InvalidArgumentError(`${name} must be x,y,w,h in video pixels (whole numbers, at least 4x4), e.g. 200,300,120,60.`);
    }
    return { x, y, width, height };
  };
}

const fixed = (n: number | null, digits = 2): string => (n === null ? 'n/a' : n.toFixed(digits));

function describeReport(r: InspectionReport): string {
  const v = r.video;
  const inSync = Math.abs(r.sync.lagFrames) <= 1 && r.sync.correlation >= 0.5;
  const lines = [
    `${r.path}: ${v.width}x${v.height}, ${v.fps.toFixed(2)} fps, ${v.frameCount} frames (${v.durationSeconds.toFixed(2)} s); ` +
      `${r.audio.speechFrames} speech frames, ${r.audio.silentFrames} silent`,
    `sync         mouth opening vs audio envelope: lag ${r.sync.lagFrames >= 0 ? '+' : ''}${r.sync.lagFrames} frames ` +
      `(${(r.sync.lagSeconds * 1000).toFixed(0)} ms, + = video late), correlation ${r.sync.correlation.toFixed(2)}` +
      (inSync ? '  [in sync]' : '  [NOT in sync: want |lag| <= 1 and correlation >= 0.5]'),
    `motion sync  mouth motion vs envelope change: lag ${r.motionSync.lagFrames >= 0 ? '+' : ''}${r.motionSync.lagFrames} frames, correlation ${r.motionSync.correlation.toFixed(2)}`,
    `silence      motion ratio silence/speech ${fixed(r.silence.stillnessRatio, 3)}, distance-from-rest ratio ${fixed(r.silence.closureRatio, 3)} (0 = still and closed)`,
    `borders      mean motion ${r.borders.meanMotion.toFixed(3)} luma levels, max ${r.borders.maxMotion.toFixed(2)} (${(r.borders.bandFraction * 100).toFixed(0)}% band, ${r.borders.pixels} px)`,
    `sharpness    mouth speaking/rest ${fixed(r.sharpness.ratio)} (Laplacian variance ${fixed(r.sharpness.speaking, 1)} vs ${fixed(r.sharpness.rest, 1)})`,
  ];
  return lines.join('\n');
}

export function registerInspect(program: Command): void {
  addEngineOptions(program.command('inspect'))
    .description('measure a finished video from the outside: lip-sync lag and correlation, mouth rest in silences, motion at the frame borders, mouth sharpness')
    .argument('<video>', 'an MP4 or WebM file with a video stream and an audio track')
    .option('--mouth <x,y,w,h>', 'the mouth region in video pixels (default: found by the face stage in the first frame)', parseBox('--mouth'))
    .option('--face <x,y,w,h>', 'the face region in video pixels; border motion is measured outside it', parseBox('--face'))
    .addHelpText('after', [
      '',
      'Without --mouth, the face stage finds the face in the first frame and the mouth and face regions',
      'come from its landmarks (the face must hold still enough for the region to stay on the mouth).',
      'Figures are explained in docs/lipsync.md. Lag is in video frames; positive means the mouth moves',
      'after the sound. The command reports; it does not fail on bad figures.',
    ].join('\n'))
    .action(async (video: string, flags: EngineFlags & { mouth?: Box; face?: Box }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const config = engineConfigFromFlags(flags);
        const path = resolve(video);
        await checkReadableFile(path, 'video');
        let mouth = flags.mouth;
        let face = flags.face;
        if (!mouth) ({ mouth, face } = { ...(await regionsFromFirstFrame(ctx, path, config)), ...(face && { face }) });
        // without --face, the whole frame but its border band is taken as the face
        const regions = { mouth, face: face ?? { x: 0, y: 0, width: 0, height: 0 } };
        const inspector = await ctx.coordinator.resolveEngine('inspect', config);
        const runCtx: RunContext = { signal: new AbortController().signal, progress() {}, log: ctx.log, workDir: ctx.storageDir };
        const summary = await ctx.coordinator.runStage(inspector, { videoPath: path, regions }, runCtx);
        // the inspector's full report where it gives one, else its summary figures
        const { details } = summary;
        if (isFullReport(details)) out.result(details, () => describeReport(details));
        else out.result(summary, () => describeSummary(path, summary));
      });
    });
}

/** The face stage on the video's first frame (decoded to a temporary PNG): mouth and face regions. */
async function regionsFromFirstFrame(ctx: CliContext, video: string, config: Partial<PipelineConfig>): Promise<{ mouth: Box; face: Box }> {
  const dir = await mkdtemp(join(tmpdir(), 'avatar-inspect-'));
  try {
    const frame = join(dir, 'first.png');
    const r = spawnSync(ffmpegPath(), ['-v', 'error', '-nostdin', '-i', video, '-frames:v', '1', frame], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      throw new AvatarError('AVATAR_ERR_INPUT_NOT_VIDEO', { input: 'video', path: video, reason: (r.stderr || String(r.error)).trim().split('\n').pop() ?? 'no video stream' });
    }
    const runCtx: RunContext = { signal: new AbortController().signal, progress() {}, log: ctx.log, workDir: dir };
    const avatar = await ctx.coordinator.runStage(await ctx.coordinator.resolveEngine('face', config), { imagePath: frame }, runCtx);
    return regionsFromLandmarks(avatar.face.landmarks, avatar.width, avatar.height);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
