#!/usr/bin/env node
import { main } from './main.js';

// A reader that goes away (`avatar inspect --help | head -3`) loses the rest of the output, not the
// process with a stack trace: a command goes on to its end (a server or a worker keeps serving). A video
// streamed to stdout (`--output -`) listens itself: its run reports the reader gone and cleans up. Any
// other failure of stdout is thrown, as it was.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (process.stdout.listenerCount('error') > 1 || error.code === 'EPIPE') return;
  throw error;
});

process.exitCode = await main(process.argv);
