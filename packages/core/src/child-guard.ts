import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * Children that die with this process. A tool that writes a file (ffmpeg encoding, a speech engine)
 * and is orphaned by a SIGKILL of its parent would otherwise run to its end, writing for nobody. On
 * Linux, util-linux's `setpriv --pdeathsig KILL` asks the kernel to kill the child when its parent
 * dies, then runs the tool in its place (same process, so signals, pipes and exit codes are the
 * tool's own). Where setpriv is missing (another system) the tool runs as it is.
 */

const resolved = new Map<string, string | undefined>();

/** The absolute path `command` runs from, searched in PATH as the shell does; cached per command. */
function which(command: string): string | undefined {
  if (resolved.has(command)) return resolved.get(command);
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, command));
  let found: string | undefined;
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      found = candidate;
      break;
    } catch {
      // not here
    }
  }
  resolved.set(command, found);
  return found;
}

/**
 * The command line that runs `command` with `args` and dies with this process: setpriv in front
 * where it can be (on Linux with util-linux, and when `command` itself is found: a missing tool then
 * still fails to spawn with ENOENT, as callers expect), else the command as given.
 */
export function guardedCommand(command: string, args: readonly string[]): { command: string; args: string[] } {
  const setpriv = process.platform === 'linux' ? which('setpriv') : undefined;
  const tool = setpriv ? which(command) : undefined;
  if (!setpriv || !tool) return { command, args: [...args] };
  return { command: setpriv, args: ['--pdeathsig', 'KILL', '--', tool, ...args] };
}
