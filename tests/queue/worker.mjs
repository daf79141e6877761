// A queue worker process for the multi-process tests: a job store + Worker, the file store on a
// shared folder or, with AVATAR_TEST_STORE=redis://..., the Redis store.
// Usage: node worker.mjs <storageDir> <logFile> <mode: fast|hang> [leaseMs] [once: 1|0]
// Each job it runs appends "<event> <jobId> <pid>" to the log with O_APPEND (one write per line).
// AVATAR_TEST_JOB_MS makes each fast job take that long; warnings go to stderr as "warn <message>".
import { appendFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { openJobStore } from '../../packages/core/dist/store/open.js';
import { Worker } from '../../packages/core/dist/worker.js';

const [storageDir, logFile, mode = 'fast', leaseArg = '30000', onceArg = '1'] = process.argv.slice(2);
if (!storageDir || !logFile) {
  console.error('usage: worker.mjs <storageDir> <logFile> [fast|hang] [leaseMs] [once]');
  process.exit(2);
}
const leaseMs = Number(leaseArg);
const jobMs = Number(process.env.AVATAR_TEST_JOB_MS ?? 0);
const note = (event, jobId) => appendFile(logFile, `${event} ${jobId} ${process.pid}\n`, { flag: 'a' });

const handler = async (ctx) => {
  await note('start', ctx.job.jobId);
  if (mode === 'hang') {
    // keep the job busy with progress writes until the process is killed
    for (let i = 0; !ctx.signal.aborted; i++) {
      ctx.progress((i % 100) / 100, `step-${i}`);
      await sleep(2);
    }
    throw new Error('aborted');
  }
  if (jobMs > 0) await sleep(jobMs);
  await note('run', ctx.job.jobId);
  return { pid: process.pid };
};

const line = (level) => (message) => process.stderr.write(`${level} ${message}\n`);
const log = { debug() {}, info() {}, warn: line('warn'), error: line('error') };
const url = process.env.AVATAR_TEST_STORE;
const kinds = url ? (await import('../../packages/queue-redis/dist/index.js')).jobStores : [];
const store = await openJobStore(url, { storageDir, log, kinds });
const worker = new Worker({
  store,
  handlers: { voice_synthesis: handler },
  leaseMs,
  heartbeatMs: Math.max(50, Math.floor(leaseMs / 5)),
  pollMs: 50,
  progressIntervalMs: 0,
  log,
});
process.on('SIGTERM', () => void worker.stop());
process.send?.({ ready: true, workerId: worker.workerId });
const summary = await worker.run({ once: onceArg === '1' });
await store.close();
process.send?.({ summary });
process.stdout.write(`${JSON.stringify(summary)}\n`);
process.disconnect?.();
