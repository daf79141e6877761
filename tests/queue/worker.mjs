// A queue worker process for the multi-process tests: a FileJobStore + Worker on a shared folder.
// Usage: node worker.mjs <storageDir> <logFile> <mode: fast|hang> [leaseMs] [once: 1|0]
// Each job it runs appends "<event> <jobId> <pid>" to the log with O_APPEND (one write per line).
import { appendFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileJobStore } from '../../packages/core/dist/store/file-store.js';
import { Worker } from '../../packages/core/dist/worker.js';

const [storageDir, logFile, mode = 'fast', leaseArg = '30000', onceArg = '1'] = process.argv.slice(2);
if (!storageDir || !logFile) {
  console.error('usage: worker.mjs <storageDir> <logFile> [fast|hang] [leaseMs] [once]');
  process.exit(2);
}
const leaseMs = Number(leaseArg);
const note = (event, jobId) => appendFile(logFile, `${event} ${jobId} ${process.pid}\n`, { flag: 'a' });

const handler = async (ctx) => {
  await note('start', ctx.job.jobId);
  if (mode === 'hang') {
    // keep the job file busy with progress writes until the process is killed
    for (let i = 0; !ctx.signal.aborted; i++) {
      ctx.progress((i % 100) / 100, `step-${i}`);
      await sleep(2);
    }
    throw new Error('aborted');
  }
  await note('run', ctx.job.jobId);
  return { pid: process.pid };
};

const store = new FileJobStore({ storageDir });
const worker = new Worker({
  store,
  handlers: { voice_synthesis: handler },
  leaseMs,
  heartbeatMs: Math.max(50, Math.floor(leaseMs / 5)),
  pollMs: 50,
  progressIntervalMs: 0,
});
process.on('SIGTERM', () => void worker.stop());
process.send?.({ ready: true, workerId: worker.workerId });
const summary = await worker.run({ once: onceArg === '1' });
process.send?.({ summary });
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.disconnect?.();
