import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { inspectVideo } from '@avatar/lipsync';
import type { Box, InspectionReport } from '@avatar/lipsync';
import { createOutput } from '../output.js';
import { globals } from '../shared.js';

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
    `borders      mean motion ${r.borders.meanMotion.toFixed(3)} grey levels, max ${r.borders.maxMotion.toFixed(2)} (${(r.borders.bandFraction * 100).toFixed(0)}% band, ${r.borders.pixels} px)`,
    `sharpness    mouth speaking/rest ${fixed(r.sharpness.ratio)} (Laplacian variance ${fixed(r.sharpness.speaking, 1)} vs ${fixed(r.sharpness.rest, 1)})`,
  ];
  return lines.join('\n');
}

export function registerInspect(program: Command): void {
  program.command('inspect')
    .description('measure a finished video from the outside: lip-sync lag and correlation, mouth rest in silences, motion at the frame borders, mouth sharpness')
    .argument('<video>', 'an MP4 or WebM file with a video stream and an audio track')
    .requiredOption('--mouth <x,y,w,h>', 'the mouth region in video pixels', parseBox('--mouth'))
    .option('--face <x,y,w,h>', 'the face region in video pixels; border motion is measured outside it', parseBox('--face'))
    .addHelpText('after', [
      '',
      'The mouth region has to be given by hand for now: finding it automatically from the face in the',
      'video is not available yet. Figures are explained in docs/lipsync.md. Lag is in video frames;',
      'positive means the mouth moves after the sound. The command reports; it does not fail on bad figures.',
    ].join('\n'))
    .action(async (video: string, flags: { mouth: Box; face?: Box }, command: Command) => {
      const out = createOutput(globals(command).json);
      try {
        const report = await inspectVideo(video, { mouthBox: flags.mouth, ...(flags.face && { faceBox: flags.face }) });
        out.result(report, () => describeReport(report));
        process.exitCode = 0;
      } catch (error) {
        process.exitCode = out.error(error);
      }
    });
}
