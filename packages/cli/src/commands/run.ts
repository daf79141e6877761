import { readFile, stat } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import type { ProgressEvent, RunResult } from '@avatar/core';
import { AvatarError, ERRORS, LIVE_OUTPUT, errorSpec } from '@avatar/core';
import { createProgress } from '../progress.js';
import type { Output } from '../output.js';
import { addAnimationOptions, addEngineOptions, addVideoOptions, configFromFlags, engineConfigFromFlags, parseNumberIn, withContext } from '../shared.js';
import type { EngineFlags, VideoFlags } from '../shared.js';

/** Ctrl-C aborts the run: the stage stops, intermediates go, nothing is left at the output path. */
export function interruptSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

export async function runWithProgress<T extends RunResult>(fn: (signal: AbortSignal, onProgress: (e: ProgressEvent) => void) => Promise<T>): Promise<T> {
  const progress = createProgress(true);
  const interrupt = interruptSignal();
  try {
    return await fn(interrupt.signal, (e) => progress.update(e.fraction, e.stage, e.detail));
  } finally {
    progress.stop();
    interrupt.dispose();
  }
}

/**
 * `--output -`: the video goes to stdout as it is encoded (fragmented MP4), for a player or a pipe;
 * stdout's own failure (the reader went away) is the run's to report, never an uncaught error.
 */
function liveTarget(output: string): { live?: Writable; liveOnly?: boolean } {
  if (output !== LIVE_OUTPUT) return {};
  process.stdout.on('error', () => {});
  return { live: process.stdout, liveOnly: true };
}

/** Prints a run's result and gives the exit code its error maps to. */
export function reportRun(out: Output, result: RunResult, what: string): number {
  if (result.success) {
    out.result(result, () => {
      const stages = result.stages.map((s) => `  ${s.stage.padEnd(18)} ${s.wallSeconds.toFixed(2)}s  peak RSS ${s.peakRssMB} MB${s.engine ? `  (${s.engine})` : ''}`).join('\n');
      const i = result.inspection;
      const inspection = i
        ? `\n  inspection: lip-sync lag ${i.lagFrames} frames (correlation ${i.correlation.toFixed(2)}), mouth in silences ${i.silenceStillness.toFixed(2)}, border motion ${i.borderMotion.toFixed(2)}, mouth sharpness ratio ${i.sharpnessRatio.toFixed(2)}`
        : '';
      const paths = result.paths
        ? `\n  ${Object.entries(result.paths).map(([kind, p]) => `${kind}: ${p.path}${p.notUsed ? ` (not ${p.notUsed})` : ''}`).join('; ')}`
        : '';
      const c = result.captions;
      const captions = c
        ? `\n  captions (${c.mode}, ${c.cues} cues, word timings ${TIMINGS[c.timing]}): ${[c.vtt, c.srt].filter(Boolean).join(', ') || 'no files (live)'}${c.notInVideo ? `; not in the video: ${c.notInVideo}` : ''}${c.warning ? `\n  warning: ${c.warning}` : ''}`
        : '';
      const warnings = (result.warnings ?? []).map((w) => `\n  warning: ${w}`).join('');
      return `${what}: ${result.outputPath} (${result.durationSeconds?.toFixed(2)}s)\n${stages}\n  total ${result.totalSeconds.toFixed(2)}s${inspection}${paths}${captions}${warnings}`;
    });
    return 0;
  }
  const error = result.error;
  if (out.json) out.result(result, () => '');
  const code = error?.code ?? 'AVATAR_ERR_INTERNAL';
  process.stderr.write(`error ${code}: ${error?.message}\n  ${error?.hint}\n`);
  const kept = result.outputPath === LIVE_OUTPUT || out.stdoutTaken ? 'the video on stdout stops where it was' : 'nothing was written at the output path';
  process.stderr.write(`  stages completed: ${result.stagesCompleted.length ? result.stagesCompleted.join(', ') : 'none'}; ${kept}\n`);
  return (errorSpec(code) ?? ERRORS.AVATAR_ERR_INTERNAL).exitCode;
}

const OUTPUT_HELP = 'video to write (.mp4 or .webm); - writes MP4 to stdout as it is encoded (fragmented: play it with "| ffplay -"), with progress and the result on stderr';

interface PipelineFlags extends VideoFlags {
  voice?: string;
  avatar: string;
  output: string;
}

export function registerPipeline(program: Command): void {
  const pipeline = program.command('pipeline').description('run the whole pipeline: text -> speech -> face -> lip-sync -> video');
  addAnimationOptions(addVideoOptions(
    pipeline.command('run')
      .description('render a talking-head video from TEXT and a portrait photo')
      .argument('<text>', 'what the avatar says')
      .option('--voice <id>', 'voice profile id (vp-xxxxxxxx); default: the built-in default voice')
      .requiredOption('--avatar <path>', 'portrait photo (JPEG, PNG or WebP)')
      .requiredOption('--output <path>', OUTPUT_HELP),
  ))
    .option('--max-seconds <n>', 'longest video allowed, seconds (default 120)', parseNumberIn('max-seconds', 1, 3600))
    .option('--keep-intermediates', 'keep the work folder (speech, frames metadata) for debugging', false)
    .action(async (text: string, flags: PipelineFlags, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const result = await runWithProgress((signal, onProgress) => ctx.coordinator.execute({
          text, voiceProfileId: flags.voice ?? null, avatarImage: flags.avatar, outputPath: flags.output,
          config: configFromFlags(flags, flags.output), signal, onProgress, ...liveTarget(flags.output),
        }));
        return reportRun(out, result, 'video');
      });
    });
}

const TIMINGS = { engine: 'from the speech engine', estimated: 'estimated from the audio', aligned: 'from the transcript aligned to the recording' } as const;

/** A transcript given as the path of a file (a regular file that exists), or as the text itself. */
async function readTranscript(value: string): Promise<string> {
  const isFile = !value.includes('\0') && (await stat(value).then((s) => s.isFile(), () => false));
  const text = !isFile ? value : await readFile(value, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new AvatarError('AVATAR_ERR_INPUT_FILE_UNREADABLE', { input: 'transcript', path: value, reason: error.message });
  });
  if (!text.trim()) throw new AvatarError('AVATAR_ERR_INPUT_TEXT_EMPTY', { input: 'transcript' });
  return text;
}

export function registerLipsync(program: Command): void {
  addAnimationOptions(addVideoOptions(
    program.command('lipsync')
      .description('make a portrait speak a recording: the mouth follows the audio (any language, any voice)')
      .requiredOption('--avatar <path>', 'portrait photo (JPEG, PNG or WebP) or a prepared avatar')
      .requiredOption('--audio <path>', 'the recording (WAV, MP3, OGG, FLAC...)')
      .requiredOption('--output <path>', OUTPUT_HELP),
  ))
    .option('--max-seconds <n>', 'longest video allowed, seconds (default 120)', parseNumberIn('max-seconds', 1, 3600))
    .option('--transcript <text|file>', 'what the recording says (the text, or a UTF-8 file of it): aligned to the recording for captions (none without it)')
    .action(async (flags: VideoFlags & { avatar: string; audio: string; output: string; transcript?: string }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const transcript = flags.transcript === undefined ? undefined : await readTranscript(flags.transcript);
        const result = await runWithProgress((signal, onProgress) => ctx.coordinator.lipsync({
          avatarImage: flags.avatar, audioPath: flags.audio, outputPath: flags.output, ...(transcript && { transcript }),
          config: configFromFlags(flags, flags.output), signal, onProgress, ...liveTarget(flags.output),
        }));
        return reportRun(out, result, 'video');
      });
    });
}

export function registerTts(program: Command): void {
  addEngineOptions(program.command('tts'))
    .description('synthesize TEXT to a WAV file')
    .argument('<text>', 'what to say')
    .requiredOption('--output <path>', 'WAV file to write')
    .option('--voice <id>', 'voice profile id (vp-xxxxxxxx); default: the built-in default voice')
    .option('--max-seconds <n>', 'longest speech allowed, seconds (default 120)', parseNumberIn('max-seconds', 1, 3600))
    .action(async (text: string, flags: EngineFlags & { output: string; voice?: string; maxSeconds?: number }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const config = engineConfigFromFlags(flags);
        const result = await runWithProgress((signal, onProgress) => ctx.coordinator.speak({
          text, voiceProfileId: flags.voice ?? null, outputPath: flags.output, signal, onProgress, config,
          ...(flags.maxSeconds !== undefined && { maxSeconds: flags.maxSeconds }),
        }));
        return reportRun(out, result, 'speech');
      });
    });
}

export function registerEncode(program: Command): void {
  addVideoOptions(
    program.command('encode')
      .description('encode a still image and an audio file into a video')
      .requiredOption('--image <path>', 'the picture (JPEG, PNG or WebP)')
      .requiredOption('--audio <path>', 'the sound (WAV, MP3, OGG...)')
      .requiredOption('--output <path>', 'video to write (.mp4 or .webm)'),
  ).action(async (flags: VideoFlags & { image: string; audio: string; output: string }, command: Command) => {
    await withContext(command, async (ctx, out) => {
      const result = await runWithProgress((signal, onProgress) => ctx.coordinator.encodeStill({
        imagePath: flags.image, audioPath: flags.audio, outputPath: flags.output, config: configFromFlags(flags, flags.output), signal, onProgress,
      }));
      return reportRun(out, result, 'video');
    });
  });
}

export { AvatarError };
