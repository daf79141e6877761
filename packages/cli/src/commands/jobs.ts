import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { Job, JobParamName, JobParamSpec, JobParams, JobType, JsonValue, WorkerEvent } from '@avatar/core';
import { AvatarError, JOB_PARAMS, JOB_PARAM_SPECS, JOB_STATUSES, JOB_TYPES, MAX_JSON_DEPTH, Worker, checkJobInputs, createJobHandlers, isJobType, nestedDeeperThan } from '@avatar/core';
import type { Output } from '../output.js';
import { addAnimationOptions, addVideoOptions, configFromFlags, engineConfigFromFlags, oneOfParser, parseIntIn, parseNumberIn, withContext } from '../shared.js';
import type { VideoFlags } from '../shared.js';

function describeJob(job: Job): string {
  const lines = [
    `${job.jobId}  ${job.jobType}  ${job.status}${job.stage ? ` (${job.stage})` : ''}  ${Math.round(job.progress * 100)}%`,
    `  created ${job.createdAt}${job.startedAt ? `, started ${job.startedAt}` : ''}${job.completedAt ? `, finished ${job.completedAt}` : ''}${job.attempts > 1 ? `, attempts ${job.attempts}` : ''}`,
  ];
  if (job.error) lines.push(`  error ${job.error.code}: ${job.error.message}`, `    ${job.error.hint}`);
  if (job.result && typeof job.result.outputPath === 'string') lines.push(`  output ${job.result.outputPath}`);
  const engines = job.result?.engines;
  if (engines && typeof engines === 'object' && !Array.isArray(engines)) {
    const used = Object.entries(engines).map(([stage, e]) => {
      const { name, package: pkg } = (e ?? {}) as { name?: unknown; package?: unknown };
      return `${stage} ${String(name)}${typeof pkg === 'string' ? ` (${pkg})` : ''}`;
    });
    if (used.length) lines.push(`  engines: ${used.join(', ')}`);
  }
  return lines.join('\n');
}

const line = (job: Job): string =>
  `${job.jobId}  ${job.jobType.padEnd(17)} ${job.status.padEnd(9)} ${String(Math.round(job.progress * 100)).padStart(3)}%  ${job.stage ?? ''}`;

interface SubmitFlags extends VideoFlags {
  type: string;
  text?: string;
  voice?: string;
  avatar?: string;
  image?: string;
  audio?: string;
  reference?: string;
  output?: string;
  name?: string;
  params?: string;
  live?: boolean;
}

/** Job params from flags; file paths become absolute so any worker finds them. */
function paramsFromFlags(jobType: JobType, flags: SubmitFlags): JobParams {
  const params: JobParams = {};
  const abs = (p: string): string => resolve(p);
  if (flags.params) {
    let extra: unknown;
    try {
      extra = JSON.parse(flags.params);
    } catch (error) {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: '--params', problem: `is not JSON (${(error as Error).message})`, expected: 'Give a JSON object, e.g. --params \'{"text": "hi"}\'.' });
    }
    if (!extra || typeof extra !== 'object' || Array.isArray(extra)) {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: '--params', problem: 'is not a JSON object', expected: 'Give a JSON object.' });
    }
    if (nestedDeeperThan(extra, MAX_JSON_DEPTH)) {
      throw new AvatarError('AVATAR_ERR_JOB_PARAMS_INVALID', { field: '--params', problem: `is nested deeper than ${MAX_JSON_DEPTH} levels`, expected: 'Give the parameters as a flat JSON object (config one level down).' });
    }
    Object.assign(params, extra as Record<string, JsonValue>);
  }
  if (flags.text !== undefined) params.text = flags.text;
  if (flags.voice) params.voiceProfileId = flags.voice;
  if (flags.avatar) params[jobType === 'avatar_generation' ? 'imagePath' : 'avatarImagePath'] = abs(flags.avatar);
  if (flags.image) params.imagePath = abs(flags.image);
  if (flags.audio) params.audioPath = abs(flags.audio);
  if (flags.reference) params.referencePath = abs(flags.reference);
  if (flags.name) params.name = flags.name;
  if (flags.output) params.outputPath = abs(flags.output);
  if (flags.live) params.live = true;
  // speech and voice jobs take only the engine choices; video jobs every setting
  const video = ['full_pipeline', 'video_encoding', 'video_lipsync', 'avatar_generation'].includes(jobType);
  const config = video ? configFromFlags(flags, flags.output ?? '') : engineConfigFromFlags(flags);
  if (video || Object.keys(config).length > 0) {
    params.config = { ...(params.config as Record<string, JsonValue> | undefined), ...(config as Record<string, JsonValue>) };
  }
  return params;
}

/** The job types that take a parameter. */
const typesTaking = (name: JobParamName): JobType[] =>
  JOB_TYPES.filter((type) => JOB_PARAMS[type].required.includes(name) || JOB_PARAMS[type].optional.includes(name));

export function registerJobs(program: Command): void {
  const jobs = program.command('jobs').description('the persistent job queue: submit work, watch it, cancel it');

  const submit = addAnimationOptions(addVideoOptions(
    jobs.command('submit')
      .description('queue a job; a worker ("avatar worker") runs it')
      .requiredOption('--type <type>', `job type: ${JOB_TYPES.join('|')}`, oneOfParser('type', JOB_TYPES))
      .option('--avatar <path>', `${JOB_PARAM_SPECS.avatarImagePath.description} (${typesTaking('avatarImagePath').join(', ')}; avatar_generation's photo)`),
  ));
  // the rest of the flags from core's table of job parameters, each with the job types that take it
  for (const name of Object.keys(JOB_PARAM_SPECS) as JobParamName[]) {
    const spec: JobParamSpec = JOB_PARAM_SPECS[name];
    if (spec.flag) submit.option(spec.flag, `${spec.description} (${typesTaking(name).join(', ') || 'every job'})`);
  }
  submit.option('--params <json>', 'more parameters as a JSON object').action(async (flags: SubmitFlags, command: Command) => {
    await withContext(command, async (ctx, out) => {
      if (!isJobType(flags.type)) throw new AvatarError('AVATAR_ERR_JOB_TYPE_UNKNOWN', { type: flags.type, known: JOB_TYPES.join(', ') });
      const params = paramsFromFlags(flags.type, flags);
      await checkJobInputs(ctx.coordinator, flags.type, params, { store: ctx.store });
      const job = await ctx.store.submit(flags.type, params);
      out.result(job, () => `queued ${job.jobId} (${job.jobType}); run "avatar worker" to process it`);
    });
  });

  jobs.command('list')
    .description('list jobs, newest first')
    .option('--status <status>', `only this status: ${JOB_STATUSES.join('|')}`, oneOfParser('status', JOB_STATUSES))
    .option('--type <type>', `only this type: ${JOB_TYPES.join('|')}`, oneOfParser('type', JOB_TYPES))
    .option('--limit <n>', 'at most this many', parseIntIn('limit', 1, 100000), 50)
    .action(async (flags: { status?: Job['status']; type?: JobType; limit: number }, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const list = await ctx.store.list({ ...(flags.status && { status: flags.status }), ...(flags.type && { type: flags.type }), limit: flags.limit });
        out.result(list, () => (list.length ? list.map(line).join('\n') : 'no jobs'));
      });
    });

  jobs.command('status')
    .description('show one job')
    .argument('<id>', 'job id')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const job = await ctx.store.get(id);
        if (!job) throw new AvatarError('AVATAR_ERR_JOB_NOT_FOUND', { id });
        out.result(job, () => describeJob(job));
      });
    });

  jobs.command('cancel')
    .description('cancel a job: a pending one at once, a running one at its next checkpoint')
    .argument('<id>', 'job id')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const { job, outcome } = await ctx.store.cancel(id);
        out.result(job, () => (outcome === 'cancelled' ? `cancelled ${id}` : `cancellation requested for ${id}; its worker stops it shortly`));
      });
    });

  jobs.command('delete')
    .description('delete a pending or finished job')
    .argument('<id>', 'job id')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        await ctx.store.delete(id);
        out.result({ deleted: id }, () => `deleted ${id}`);
      });
    });

  jobs.command('stats')
    .description('counts by status and type, mean run time per type')
    .action(async (_flags: unknown, command: Command) => {
      await withContext(command, async (ctx, out) => {
        const stats = await ctx.store.stats();
        out.result(stats, () => {
          const byStatus = Object.entries(stats.byStatus).map(([k, v]) => `${k} ${v}`).join(', ');
          const byType = Object.entries(stats.byType).filter(([, v]) => v > 0).map(([k, v]) => {
            const mean = stats.meanRunSeconds[k as JobType];
            return `  ${k.padEnd(17)} ${String(v).padStart(5)}${mean !== undefined ? `  mean run ${mean.toFixed(2)}s` : ''}`;
          });
          return [`${stats.total} jobs: ${byStatus}`, ...byType].join('\n');
        });
      });
    });
}

function logEvent(out: Output, e: WorkerEvent): void {
  if (e.type === 'idle' || e.type === 'progress') return;
  const extra = e.type === 'failed' && e.job.error ? ` ${e.job.error.code}: ${e.job.error.message}` : '';
  if (out.json) process.stdout.write(`${JSON.stringify({ event: e.type, job: e.job })}\n`);
  else out.note(`${e.type} ${e.job.jobId} (${e.job.jobType})${extra}`);
}

export function registerWorker(program: Command): void {
  program.command('worker')
    .description('run queued jobs; several workers may share one storage folder. Ctrl-C stops cleanly: a running job goes back to the queue.')
    .option('--once', 'process what is queued, then exit', false)
    .option('--concurrency <n>', 'jobs at a time (models still load one at a time)', parseIntIn('concurrency', 1, 64), 1)
    .option('--lease <seconds>', 'how long a claim holds without a heartbeat', parseNumberIn('lease', 1, 3600), 30)
    .action(async (flags: { once: boolean; concurrency: number; lease: number }, command: Command) => {
      await withContext(command, { service: true }, async (ctx, out) => {
        // what killed runs and workers left in the storage folder goes first
        await ctx.coordinator.sweepLeftovers();
        const worker = new Worker({
          store: ctx.store, handlers: createJobHandlers(ctx.coordinator), concurrency: flags.concurrency, leaseMs: flags.lease * 1000, log: ctx.log,
        });
        worker.on((e) => logEvent(out, e));
        let stopping = false;
        const stop = (): void => {
          if (stopping) {
            // a second Ctrl-C: the user does not want to wait for a handler that is slow to stop
            out.note('stopping now');
            process.exit(130);
          }
          stopping = true;
          out.note('stopping: running jobs go back to the queue');
          void worker.stop({ graceMs: 0 });
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        try {
          const summary = await worker.run({ once: flags.once });
          out.note(`worker done: ${summary.completed} completed, ${summary.failed} failed, ${summary.cancelled} cancelled, ${summary.released} returned to the queue`);
          if (flags.once) {
            // jobs still held by another worker's claim are left to it, or to whoever takes them back when its lease ends
            for (const job of await ctx.store.list({ status: 'running' })) {
              out.note(`left ${job.jobId} (${job.jobType}): claimed by worker ${job.workerId ?? 'unknown'}; if that worker is gone, a worker takes the job back once its lease ends (avatar doctor shows expired claims)`);
            }
          }
          // the queue could not be read or claimed from (a full disk): the jobs wait, and this says why
          return summary.claimError ? out.error(summary.claimError) : 0;
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      });
    });
}
