import type { Command } from 'commander';
import { AvatarError, QUALITIES, QUALITY_PRESETS, toAvatarError } from '@avatar/core';
import type { PipelineConfig } from '@avatar/core';
import { THRESHOLD_ENV, checkFace, disposeFaceEngines, loadFaceEngines, resolveFaceOptions } from '@avatar/face';
import type { FaceCheck, FaceThresholds } from '@avatar/face';
import { createOutput } from '../output.js';
import { globals, oneOfParser, parseIntIn, parseNumberIn, withContext } from '../shared.js';
import { reportRun, runWithProgress } from './run.js';

interface ThresholdFlags {
  minFace?: number;
  maxYaw?: number;
  maxPitch?: number;
  detector?: string;
}

function addThresholdOptions(command: Command): Command {
  return command
    .option('--min-face <px>', 'smallest face width accepted, px (default 64; $AVATAR_FACE_MIN_SIZE)', parseIntIn('min-face', 1, 4096))
    .option('--max-yaw <deg>', 'largest |yaw| accepted, degrees (default 30; $AVATAR_FACE_MAX_YAW)', parseNumberIn('max-yaw', 0, 90))
    .option('--max-pitch <deg>', 'largest |pitch| accepted, degrees (default 25; $AVATAR_FACE_MAX_PITCH)', parseNumberIn('max-pitch', 0, 90))
    .option('--detector <name>', 'face detector: tiny|ssd (default tiny; $AVATAR_FACE_DETECTOR)', oneOfParser('detector', ['tiny', 'ssd']));
}

/** Flags become the environment the face plugin reads when it loads, so check and prepare agree. */
function applyThresholdFlags(flags: ThresholdFlags): void {
  const set: Partial<Record<keyof FaceThresholds, number | undefined>> = { minFaceSize: flags.minFace, maxYaw: flags.maxYaw, maxPitch: flags.maxPitch };
  for (const [key, value] of Object.entries(set) as [keyof FaceThresholds, number | undefined][]) {
    if (value !== undefined) process.env[THRESHOLD_ENV[key]] = String(value);
  }
  if (flags.detector) process.env.AVATAR_FACE_DETECTOR = flags.detector;
}

const fmt = (n: number): string => (Math.round(n * 10) / 10).toString();

function describeCheck(c: FaceCheck): string {
  const lines: string[] = [`${c.path}: ${c.width}x${c.height}${c.prepared ? ` (prepared avatar, face details from ${c.sidecarPath})` : ''}`];
  const faces = c.report?.faces ?? (c.face ? [{ box: c.face.box, score: c.face.score, pose: c.face.pose, quality: c.face.quality }] : []);
  if (c.report) lines.push(`  models: detector ${c.report.models.detector}, landmarks ${c.report.models.landmarks}`);
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
      const opts = globals(command);
      const out = createOutput(opts.json);
      applyThresholdFlags(flags);
      let engines: Awaited<ReturnType<typeof loadFaceEngines>> | undefined;
      try {
        const options = resolveFaceOptions();
        engines = await loadFaceEngines(options);
        const { check } = await checkFace(photo, engines, options);
        out.result({ ...check, usable: check.verdict.usable }, () => describeCheck(check));
        process.exitCode = check.verdict.usable ? 0 : 1;
      } catch (thrown) {
        const error = toAvatarError(thrown);
        if (isRefusal(error)) {
          out.result({ path: photo, usable: false, verdict: { usable: false, chosen: null, reasons: [{ rule: 'decodable', measured: 'no', limit: 'yes', error: error.toJSON() }], warnings: [] } },
            () => `${photo}\nverdict: refused\n  decodable: ${error.message}\n    ${error.hint}`);
          process.exitCode = 1;
        } else {
          process.exitCode = out.error(error);
        }
      } finally {
        if (engines) await disposeFaceEngines(engines);
      }
    });

  addThresholdOptions(avatars.command('prepare')
    .description('check a photo, then write the avatar: face centred, eye line level, square at the quality preset\'s size, PNG plus a .face.json sidecar with landmarks, pose and quality')
    .argument('<photo>', 'JPEG, PNG or WebP photo')
    .requiredOption('--output <path>', 'where to write the avatar (.png); the sidecar goes beside it as <name>.face.json')
    .option('--quality <q>', `size preset: ${QUALITIES.map((q) => `${q} ${QUALITY_PRESETS[q].size}px`).join(', ')}`, oneOfParser('quality', QUALITIES), 'high'))
    .action(async (photo: string, flags: ThresholdFlags & { output: string; quality: string }, command: Command) => {
      applyThresholdFlags(flags);
      await withContext(command, async (ctx, out) => {
        const config: Partial<PipelineConfig> = { videoQuality: flags.quality as PipelineConfig['videoQuality'] };
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
