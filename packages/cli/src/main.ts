import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { AvatarError, EXIT, isAvatarError } from '@avatar/core';
import { registerAvatars } from './commands/avatars.js';
import { registerDoctor } from './commands/doctor.js';
import { registerInspect } from './commands/inspect.js';
import { registerEncode, registerLipsync, registerPipeline, registerTts } from './commands/run.js';
import { registerJobs, registerWorker } from './commands/jobs.js';
import { registerPlugins } from './commands/plugins.js';
import { registerServe } from './commands/serve.js';
import { registerVoices } from './commands/voices.js';
import type { GlobalOptions } from './shared.js';

export function buildProgram(): Command {
  const program = new Command('avatar')
    .description('Text and one portrait photo in, a lip-synced talking-head video out.')
    .version('0.1.0')
    .addOption(new Option('--storage <dir>', 'storage folder: jobs, voices, outputs (default ./storage or $AVATAR_STORAGE)'))
    .addOption(new Option('--store <url>', 'the job queue: a store URL such as redis://host:6379/0 where a store package provides it (default: files in the storage folder, or $AVATAR_STORE)'))
    .option('--json', 'print machine-readable JSON on stdout', false)
    .option('--verbose', 'log stages, memory and engine details on stderr', false)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerPipeline(program);
  registerLipsync(program);
  registerTts(program);
  registerEncode(program);
  registerVoices(program);
  registerAvatars(program);
  registerJobs(program);
  registerWorker(program);
  registerServe(program);
  registerInspect(program);
  registerPlugins(program);
  registerDoctor(program);
  for (const command of program.commands) {
    command.exitOverride();
    for (const sub of command.commands) sub.exitOverride();
  }
  return program;
}

/** Runs the CLI; resolves to the exit code (0 done, 1 failed, 2 usage error). */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
      // a usage error: commander has printed it on stderr; --json callers also get it on stdout
      if (argv.includes('--json')) {
        const reason = error.message.replace(/^error: /, '');
        process.stdout.write(`${JSON.stringify({ error: new AvatarError('AVATAR_ERR_USAGE', { reason }).toJSON() }, null, 2)}\n`);
      }
      return EXIT.usage;
    }
    if (isAvatarError(error)) {
      process.stderr.write(`error ${error.code}: ${error.message}\n  ${error.hint}\n`);
      return error.exitCode;
    }
    process.stderr.write(`error AVATAR_ERR_INTERNAL: ${(error as Error).message}\n`);
    return EXIT.failed;
  }
}

export { InvalidArgumentError };
export type { GlobalOptions };
