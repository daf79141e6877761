import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { AvatarError, guardedCommand, isAvatarError } from '@avatar/core';

export interface ToolRunOptions {
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

export interface ToolResult {
  stdout: string;
  stderr: string;
}

const KEEP = 64 * 1024;

function tail(text: string, max = 2000): string {
  const trimmed = text.trim();
  return trimmed.length > max ? `...${trimmed.slice(-max)}` : trimmed;
}

/**
 * Runs a tool with an argument array (no shell, so text can never become a command). ENOENT becomes
 * AVATAR_ERR_TOOL_MISSING with the install command, a non-zero exit AVATAR_ERR_TTS_FAILED with the tool's
 * stderr, and an abort kills the child and rejects with AVATAR_ERR_CANCELLED.
 */
export function runTool(command: string, args: readonly string[], options: ToolRunOptions): Promise<ToolResult> {
  const { signal } = options;
  if (signal?.aborted) return Promise.reject(new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' }));
  return new Promise<ToolResult>((resolve, reject) => {
    // (dies with this process: an engine orphaned by a SIGKILL would write on for nobody)
    const guarded = guardedCommand(command, args);
    const child = spawn(guarded.command, guarded.args, { cwd: options.cwd, stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const finish = (error: AvatarError | undefined): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve({ stdout, stderr });
    };
    const onAbort = (): void => {
      child.kill('SIGKILL');
      finish(new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' }));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < KEEP * 16) stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-KEEP);
    });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' || error.code === 'EACCES') {
        finish(new AvatarError('AVATAR_ERR_TOOL_MISSING', { tool: `${options.tool} (${command})`, install: options.install }, { cause: error }));
      } else {
        finish(new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: options.engine, reason: error.message }, { cause: error }));
      }
    });
    child.on('spawn', () => {
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
    });
    child.on('close', (code, sig) => {
      if (code === 0) return finish(undefined);
      const reason = tail(stderr) || tail(stdout) || (sig ? `killed by ${sig}` : `exit code ${String(code)}`);
      finish(options.failure?.(reason, code) ?? new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: options.engine, reason }));
    });
    // a child that exits before reading stdin must not crash us with EPIPE
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** The absolute path `command` runs from, searching PATH like the shell does; undefined when absent. */
export async function whichTool(command: string): Promise<string | undefined> {
  const candidates = command.includes('/')
    ? [command]
    : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next folder
    }
  }
  return undefined;
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
