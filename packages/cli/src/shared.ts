import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { AvatarError, CAPTION_MODES, ENCODING_PRESETS, HEAD_MOTIONS, LIVE_OUTPUT, OUTPUT_FORMATS, QUALITIES, formatFromPath, parseEngineAssignments, parseEngineOptionAssignments } from '@avatar/core';
import type { PipelineConfig } from '@avatar/core';
import type { CliContext } from './context.js';
import { openContext, storageFrom } from './context.js';
import type { Output } from './output.js';
import { createLogger, createOutput } from './output.js';

export interface GlobalOptions {
  storage?: string;
  store?: string;
  json: boolean;
  verbose: boolean;
}

export function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

type CommandBody = (ctx: CliContext, out: Output, opts: GlobalOptions) => Promise<number | void>;

/**
 * Opens storage, plugins and queue for one command, runs it, maps errors to exit codes. A `service`
 * (a worker, the server) logs errors without --verbose: nobody sees its answers, the log is all there is.
 */
export async function withContext(command: Command, fn: CommandBody): Promise<void>;
export async function withContext(command: Command, options: { service: boolean }, fn: CommandBody): Promise<void>;
export async function withContext(command: Command, first: CommandBody | { service: boolean }, second?: CommandBody): Promise<void> {
  const service = typeof first === 'function' ? false : first.service;
  const fn = typeof first === 'function' ? first : (second as CommandBody);
  const opts = globals(command);
  const live = (command.opts() as { output?: unknown }).output === LIVE_OUTPUT;
  const out = createOutput(opts.json, { stdoutTaken: live && takesLiveOutput(command) });
  let ctx: CliContext | undefined;
  try {
    if (live) checkLiveOutput(command);
    ctx = await openContext({ storage: storageFrom(opts.storage), ...(opts.store !== undefined && { store: opts.store }), log: createLogger(opts.verbose, { errors: service ? 'always' : 'verbose' }), service });
    const code = await fn(ctx, out, opts);
    process.exitCode = code ?? 0;
  } catch (error) {
    process.exitCode = out.error(error);
  } finally {
    await ctx?.close();
  }
}

/** The commands whose `--output -` is the video on stdout as it is encoded: `pipeline run` and `lipsync`. */
function takesLiveOutput(command: Command): boolean {
  return command.name() === 'lipsync' || (command.name() === 'run' && command.parent?.name() === 'pipeline');
}

/** `--output -` only where it means live video, and never into a terminal. */
function checkLiveOutput(command: Command): void {
  if (!takesLiveOutput(command)) {
    throw new AvatarError('AVATAR_ERR_USAGE', { reason: '--output - (the video on stdout) is for "pipeline run" and "lipsync" only: give a file name' });
  }
  if (process.stdout.isTTY) {
    throw new AvatarError('AVATAR_ERR_USAGE', { reason: '--output - writes video to stdout, which is a terminal here: pipe it to a player ("| ffplay -") or give a file name' });
  }
}

// ---- option parsers: refuse bad values at parse time with a usage error ----

export function parseIntIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}.`);
    return n;
  };
}

export function parseFps(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 60) throw new InvalidArgumentError('fps must be above 0 and at most 60.');
  return n;
}

export function parseNumberIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}.`);
    return n;
  };
}

export function oneOfParser(name: string, allowed: readonly string[]) {
  return (value: string): string => {
    if (!allowed.includes(value)) throw new InvalidArgumentError(`${name} must be one of: ${allowed.join(', ')}.`);
    return value;
  };
}

export interface EngineFlags {
  engine?: string[];
  engineOption?: string[];
  commercialSafe?: boolean;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** --engine STAGE=NAME and --engine-option STAGE.OPTION=VALUE, repeatable, on every command that runs stages. */
export function addEngineOptions(command: Command): Command {
  return command
    .option('--engine <stage=name>', 'the engine for a stage, e.g. lipsync=warp (repeatable; "avatar doctor" lists the installed engines)', collect)
    .option('--engine-option <stage.option=value>', 'an option for the engine of a stage, e.g. face.minFaceSize=48 (repeatable)', collect)
    .option('--commercial-safe', 'refuse engines and models not cleared for commercial use ("avatar plugins list" shows each licence)');
}

/** The engine choices and options the flags set; checked against the installed engines when the run starts. */
export function engineConfigFromFlags(flags: EngineFlags): Partial<PipelineConfig> {
  const config: Partial<PipelineConfig> = {};
  if (flags.engine?.length) config.engines = parseEngineAssignments(flags.engine);
  if (flags.engineOption?.length) config.engineOptions = parseEngineOptionAssignments(flags.engineOption);
  if (flags.commercialSafe) config.commercialSafe = true;
  return config;
}

export interface VideoFlags extends EngineFlags {
  headMotion?: string;
  blinkRate?: number;
  expressiveness?: number;
  seed?: number;
  quality?: string;
  fps?: number;
  crf?: number;
  preset?: string;
  format?: string;
  maxSeconds?: number;
  keepIntermediates?: boolean;
  captions?: string;
}

/** How the talking head moves besides the mouth (pipeline run, lipsync). */
export function addAnimationOptions(command: Command): Command {
  return command
    .option('--head-motion <m>', `slight head motion: ${HEAD_MOTIONS.join('|')} (default subtle)`, oneOfParser('head-motion', HEAD_MOTIONS))
    .option('--blink-rate <n>', 'blinks per minute, 0..60 (default 15)', parseNumberIn('blink-rate', 0, 60))
    .option('--expressiveness <x>', 'how far mouth and jaw move, 0..2 (default 1)', parseNumberIn('expressiveness', 0, 2))
    .option('--seed <n>', 'seeds blinks and head motion: the same inputs and seed give the same video (default 1)', parseIntIn('seed', 0, 2 ** 31 - 1))
    .option('--captions <mode>', `captions from the speech's word timings (a talking head from text): ${CAPTION_MODES.join('|')} (default soft: .vtt and .srt beside the video and a subtitle track in it; burn: drawn into the picture)`, oneOfParser('captions', CAPTION_MODES));
}

export function addVideoOptions(command: Command): Command {
  return addEngineOptions(command)
    .option('--quality <q>', `quality preset: ${QUALITIES.join('|')} (default high; see docs/configuration.md)`, oneOfParser('quality', QUALITIES))
    .option('--fps <n>', 'frames per second (overrides the preset), above 0 and at most 60', parseFps)
    .option('--crf <n>', 'constant rate factor 0..51, lower is better (overrides the preset)', parseIntIn('crf', 0, 51))
    .option('--preset <p>', `encoder speed preset: ${ENCODING_PRESETS.join('|')}`, oneOfParser('preset', ENCODING_PRESETS))
    .option('--format <f>', `output format: ${OUTPUT_FORMATS.join('|')} (default: from the output extension, else mp4)`, oneOfParser('format', OUTPUT_FORMATS));
}

/** Pipeline settings from flags; the format follows the output's extension unless --format says otherwise. */
export function configFromFlags(flags: VideoFlags, outputPath: string): Partial<PipelineConfig> {
  const config: Partial<PipelineConfig> = engineConfigFromFlags(flags);
  if (flags.quality) config.videoQuality = flags.quality as PipelineConfig['videoQuality'];
  if (flags.fps !== undefined) config.videoFps = flags.fps;
  if (flags.crf !== undefined) config.encodingCrf = flags.crf;
  if (flags.preset) config.encodingPreset = flags.preset as PipelineConfig['encodingPreset'];
  const format = flags.format ?? formatFromPath(outputPath);
  if (format) config.outputFormat = format as PipelineConfig['outputFormat'];
  if (flags.maxSeconds !== undefined) config.maxVideoLengthSeconds = flags.maxSeconds;
  if (flags.keepIntermediates) config.cleanupIntermediates = false;
  if (flags.headMotion) config.headMotion = flags.headMotion as PipelineConfig['headMotion'];
  if (flags.blinkRate !== undefined) config.blinkRate = flags.blinkRate;
  if (flags.expressiveness !== undefined) config.expressiveness = flags.expressiveness;
  if (flags.seed !== undefined) config.seed = flags.seed;
  if (flags.captions) config.captions = flags.captions as PipelineConfig['captions'];
  return config;
}
