import type { Command } from 'commander';
import { AvatarError, QUALITIES, QUALITY_PRESETS, toAvatarError } from '@avatar/core';
import type { FaceAssessment, PipelineConfig } from '@avatar/core';
import { addEngineOptions, engineConfigFromFlags, oneOfParser, parseIntIn, parseNumberIn, withContext } from '../shared.js';
import type { EngineFlags } from '../shared.js';
import { reportRun, runWithProgress } from './run.js';

interface ThresholdFlags extends EngineFlags {
  minFace?: number;
  maxYaw?: number;
  maxPitch?: number;
  detector?: string;
}

function addThresholdOptions(command: Command): Command {
  return addEngineOptions(command)
    .option('--min-face <px>', 'smallest face width accepted, px (default 64; $AVATAR_FACE_MIN_SIZE)', parseIntIn('min-face', 1, 4096))
    .option('--max-yaw <deg>', 'largest |yaw| accepted, degrees (default 30; $AVATAR_FACE_MAX_YAW)', parseNumberIn('max-yaw', 0, 90))
    .option('--max-pitch <deg>', 'largest |pitch| accepted, degrees (default 25; $AVATAR_FACE_MAX_PITCH)', parseNumberIn('max-pitch', 0, 90))
    .option('--detector <name>', 'face detector: tiny|ssd (default tiny; $AVATAR_FACE_DETECTOR)', oneOfParser('detector', ['tiny', 'ssd']));
}

/**
 * The face engine's options from the flags: --engine-option face.* with the short flags over them
 * (--min-face is face.minFaceSize), so that check and prepare judge a photo alike.
 */
function faceEngineConfig(flags: ThresholdFlags): Partial<PipelineConfig> {
  const config = engineConfigFromFlags(flags);
  const short = {
    ...(flags.minFace !== undefined && { minFaceSize: flags.minFace }),
    ...(flags.maxYaw !== undefined && { maxYaw: flags.maxYaw }),
    ...(flags.maxPitch !== undefined && { maxPitch: flags.maxPitch }),
    ...(flags.detector !== undefined && { detector: flags.detector }),
  };
  return { ...config, engineOptions: { ...config.engineOptions, face: { ...config.engineOptions?.face, ...short } } };
}

const fmt = (n: number): string => (Math.round(n * 10) / 10).toString();

function describeCheck(c: FaceAssessment): string {
  const lines: string[] = [`${c.path}: ${c.width}x${c.height}${c.prepared ? ` (prepared avatar, face details from ${c.sidecarPath})` : ''}`];
  const { faces } = c;
  if (c.models && !c.prepared) lines.push(`  models: detector ${c.models.detector}, landmarks ${c.models.landmarks}`);
  lines.push(`  faces: ${faces.length}`);
  faces.forEach((f, i) => {
    lines.push(`  face ${i + 1}: ${Math.round(f.box.width)}x${Math.round(f.box.height)} px at (${Math.round(f.box.x)}, ${Math.round(f.box.y)}), score ${f.score.toFixed(2)}`);
    if (f.pose) lines.push(`    pose: yaw ${fmt(f.pose.yaw)}, pitch ${fmt(f.pose.pitch)}, roll ${fmt(f.pose.roll)} degrees`);
    const q = f.quality;
    if (q) lines.push(`    quality: sharpness ${q.sharpness} (x${q.sharpnessRatio} the whole image), mean luminance ${q.meanLuma}, dark ${fmt(q.darkFraction * 100)}%, bright ${fmt(q.brightFraction * 100)}%, mouth ${q.mouthInside ? 'inside' : 'cut off'}, chin ${q.chinInside ? 'inside' : 'cut off'}`);
  });
  lines.push(`verdict: ${c.verdict.usable ? 'usable' : 'refused'}`);
  for (const r of c.verdict.reasons) lines.push(`  ${r.rule}: ${r.error.message}\n    ${r.error.hint}`);
  for (const w of c.verdict.warnings) lines.push(`  warning ${w.rule}: ${w.message}`);
  return lines.join('\n');
}

/** A photo that cannot be decoded is refused like one without a face; a missing file is a usage error. */
function isRefusal(error: AvatarError): boolean {
  return error.code.startsWith('AVATAR_ERR_FACE_') || error.code.startsWith('AVATAR_ERR_INPUT_IMAGE_') || error.code === 'AVATAR_ERR_INPUT_NOT_IMAGE';
}

export function registerAvatars(program: Command): void {
  const avatars = program.command('avatars').description('check photos for lip-sync and prepare avatars from them');

  addThresholdOptions(avatars.command('check')
    .description('detect the face, measure pose and quality, say whether the photo can be animated and why not (exit 0 usable, 1 refused)')
    .argument('<photo>', 'JPEG, PNG or WebP photo, or a prepared avatar'))
    .action(async (photo: string, flags: ThresholdFlags, command: Command) => {
      await withContext(command, async (ctx, out) => {
        try {
          // the face engine the settings pick (the built-in one unless told otherwise), with its options
          const check = await ctx.coordinator.assessFace(photo, { config: faceEngineConfig(flags) });
          out.result({ ...check, usable: check.verdict.usable }, () => describeCheck(check));
          return check.verdict.usable ? 0 : 1;
        } catch (thrown) {
          const error = toAvatarError(thrown);
          if (!isRefusal(error)) throw error;
          out.result({ path: photo, usable: false, faces: [], verdict: { usable: false, reasons: [{ rule: 'decodable', measured: 'no', limit: 'yes', error: error.toJSON() }], warnings: [] } },
            () => `${photo}\nverdict: refused\n  decodable: ${error.message}\n    ${error.hint}`);
          return 1;
        }
      });
    });

  addThresholdOptions(avatars.command('prepare')
    .description('check a photo, then write the avatar: face centred, eye line level, square at the quality preset\'s size, PNG plus a .face.json sidecar with landmarks, pose and quality')
    .argument('<photo>', 'JPEG, PNG or WebP photo')
    .requiredOption('--output <path>', 'where to write the avatar (.png); the sidecar goes beside it as <name>.face.json')
    .option('--quality <q>', `size preset: ${QUALITIES.map((q) => `${q} ${QUALITY_PRESETS[q].size}px`).join(', ')}`, oneOfParser('quality', QUALITIES), 'high'))
    .action(async (photo: string, flags: ThresholdFlags & { output: string; quality: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const config: Partial<PipelineConfig> = { ...faceEngineConfig(flags), videoQuality: flags.quality as PipelineConfig['videoQuality'] };
        const result = await runWithProgress((signal, onProgress) =>
          ctx.coordinator.prepareAvatar({ imagePath: photo, outputPath: flags.output, config, signal, onProgress }));
        if (!result.success || !result.avatar) return reportRun(out, result, 'avatar');
        const avatar = result.avatar;
        out.result({ ...result, avatar }, () => {
          const p = avatar.face.pose;
          return `avatar: ${avatar.imagePath} (${avatar.width}x${avatar.height}), face details in ${avatar.face.sidecarPath}\n  face ${Math.round(avatar.face.box.width)} px wide, yaw ${fmt(p.yaw)}, pitch ${fmt(p.pitch)}, roll ${fmt(p.roll)} degrees after alignment`;
        });
        return 0;
      });
    });
}
