import { FFMPEG_INSTALL, ffmpegPath, ffprobePath, runTool as runCoreTool, toolMissing as coreToolMissing } from '@avatar/core';
import type { AvatarError } from '@avatar/core';
import { recallFacts, rememberFacts, toolIdentity } from './facts.js';

export { FFMPEG_INSTALL } from '@avatar/core';

/** Where the ffmpeg and ffprobe binaries are. */
export interface FfmpegToolPaths {
  /** default: $AVATAR_FFMPEG, else "ffmpeg" from PATH */
  ffmpegPath?: string;
  /** default: $AVATAR_FFPROBE, else "ffprobe" from PATH */
  ffprobePath?: string;
}

export interface ResolvedTools {
  ffmpeg: string;
  ffprobe: string;
}

/** Read at call time, so a changed environment takes effect without reloading the module. */
export function resolveTools(paths: FfmpegToolPaths = {}): ResolvedTools {
  return {
    ffmpeg: paths.ffmpegPath ?? ffmpegPath(),
    ffprobe: paths.ffprobePath ?? ffprobePath(),
  };
}

export interface ToolOutput {
  stdout: string;
  stderr: string;
}

/** A tool that ran but failed; the caller turns it into the right AvatarError. */
export class ToolRunError extends Error {
  override readonly name = 'ToolRunError';
  constructor(
    readonly tool: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${tool} failed (exit ${exitCode ?? 'signal'}): ${meaningfulLines(stderr, 3) || 'no message'}`);
  }
}

export function toolMissing(toolName: 'ffmpeg' | 'ffprobe', binary: string, cause?: unknown): AvatarError {
  return coreToolMissing(toolName, binary, FFMPEG_INSTALL, cause);
}

/**
 * Runs ffmpeg or ffprobe to completion (core's runTool: dies with this process) and collects its
 * output; a missing binary is AVATAR_ERR_TOOL_MISSING, a failure a ToolRunError the caller maps.
 */
export function runTool(
  toolName: 'ffmpeg' | 'ffprobe',
  binary: string,
  args: readonly string[],
  options: { signal?: AbortSignal; maxBuffer?: number } = {},
): Promise<ToolOutput> {
  return runCoreTool(binary, args, {
    tool: toolName,
    install: FFMPEG_INSTALL,
    failure: (said, code) => new ToolRunError(toolName, code, said),
    cancelled: () => new DOMException('The operation was aborted', 'AbortError'),
    maxStdout: options.maxBuffer ?? 32 * 1024 * 1024,
    ...(options.signal && { signal: options.signal }),
  });
}

const versions = new Map<string, string>();

/**
 * The first line of `<binary> -version`, asked once per binary path and kept on disk while the binary
 * stays the same (facts.ts); a missing binary throws AVATAR_ERR_TOOL_MISSING. Only successes are kept,
 * so installing the tool later is noticed.
 */
export async function toolVersion(toolName: 'ffmpeg' | 'ffprobe', binary: string): Promise<string> {
  const known = versions.get(binary);
  if (known !== undefined) return known;
  const identity = await toolIdentity(binary);
  const kept = (await recallFacts(identity)).version;
  if (kept !== undefined) {
    versions.set(binary, kept);
    return kept;
  }
  let out: ToolOutput;
  try {
    out = await runTool(toolName, binary, ['-hide_banner', '-version']);
  } catch (error) {
    if (error instanceof ToolRunError) throw toolMissing(toolName, binary, error);
    throw error;
  }
  const first = out.stdout.split('\n')[0]?.trim() ?? '';
  const version = /version\s+(\S+)/.exec(first)?.[1] ?? (first || 'unknown');
  versions.set(binary, version);
  await rememberFacts(identity, { version });
  return version;
}

const PROGRESS_LINE = /^(frame|size|video:|audio:)=?|time=\S+.*bitrate=|^\s*$/;
const NOISE_LINE = /^(Press \[q\]|Stream mapping:|Input #|Output #|Metadata:|Duration:|Stream #|ffmpeg version|Conversion failed!|\s)/;
/** Lists of valid values and end-of-encode statistics that follow the real complaint. */
const AFTERWORD = /^(\S+: )?(Possible (presets|tunes|profiles):|frame [IPB]|mb [IPB]|kb\/s|Qavg|8x8|coded|i16|i8|i4|ref [PB]|Weighted|consecutive|final ratefactor|direct mvs|using)/;
const ADDRESS_PREFIX = /^\[([^\]@]+?)\s*@\s*0x[0-9a-f]+\]\s*/i;

/**
 * The last `count` lines of ffmpeg's stderr that say something: progress lines, stream listings and
 * banner lines dropped, "[libx264 @ 0x55...] msg" shortened to "libx264: msg".
 */
export function meaningfulLines(stderr: string, count = 3): string {
  const lines = stderr
    .split(/\r\n|\r|\n/)
    .filter((line) => !PROGRESS_LINE.test(line) && !NOISE_LINE.test(line))
    .map((line) => line.trim().replace(ADDRESS_PREFIX, (_whole, source: string) => `${source.trim()}: `));
  const reasons = lines.filter((line) => !AFTERWORD.test(line));
  const unique = reasons.filter((line, index) => reasons.indexOf(line) === index);
  return unique.slice(-count).join(' | ');
}
