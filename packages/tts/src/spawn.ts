import { AvatarError, isAvatarError, runTool as runCoreTool } from '@avatar/core';
import type { ToolResult } from '@avatar/core';

export { whichTool } from '@avatar/core';
export type { ToolResult } from '@avatar/core';

export interface TtsToolOptions {
  /** the tool's name in errors ("flite") */
  tool: string;
  /** the command that installs it, for AVATAR_ERR_TOOL_MISSING */
  install: string;
  /** the engine named in AVATAR_ERR_TTS_FAILED */
  engine: string;
  signal?: AbortSignal;
  /** written to the child's stdin, which is then closed */
  stdin?: string;
  cwd?: string;
  /** told the child's pid once it runs (tests use it to see that a cancelled child is gone) */
  onSpawn?: (pid: number) => void;
  /** map a non-zero exit to an error of this code (default AVATAR_ERR_TTS_FAILED) */
  failure?: (stderr: string, code: number | null) => AvatarError;
}

/**
 * A speech engine's tool, run through core's runTool: a non-zero exit is AVATAR_ERR_TTS_FAILED with what
 * the tool said (unless `failure` says otherwise), an abort AVATAR_ERR_CANCELLED during tts.
 */
export function runTool(command: string, args: readonly string[], options: TtsToolOptions): Promise<ToolResult> {
  return runCoreTool(command, args, {
    tool: options.tool,
    install: options.install,
    failure: (said, code) => options.failure?.(said, code) ?? new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: options.engine, reason: said }),
    cancelled: () => new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' }),
    maxStdout: 1024 * 1024,
    ...(options.signal && { signal: options.signal }),
    ...(options.stdin !== undefined && { stdin: options.stdin }),
    ...(options.cwd !== undefined && { cwd: options.cwd }),
    ...(options.onSpawn && { onSpawn: options.onSpawn }),
  });
}

/** The version `pick` finds in the tool's output (exit status ignored), or undefined when it cannot run. */
export async function toolVersion(command: string, args: readonly string[], pick: RegExp): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await runTool(command, args, { tool: command, install: '', engine: command });
    return pick.exec(`${stdout}\n${stderr}`)?.[1];
  } catch (error) {
    if (isAvatarError(error, 'AVATAR_ERR_TTS_FAILED')) return pick.exec(String(error.params.reason))?.[1];
    return undefined;
  }
}
