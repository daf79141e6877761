#!/usr/bin/env node
import { main } from './main.js';

// A reader that goes away (`avatar inspect --help | head -3`) ends the output, as it would for any other
// command-line tool, not the process with a stack trace. A video streamed to stdout (`--output -`)
// listens itself: its run reports the reader gone and cleans up.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE' && process.stdout.listenerCount('error') === 1) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
});

process.exitCode = await main(process.argv);
