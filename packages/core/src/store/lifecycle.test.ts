import { describe, expect, it } from 'vitest';
import { AvatarError } from '../errors.js';
import type { Job } from '../jobs.js';
import {
  abandonedJob, cancelledJob, checkJobRecord, claimedJob, completedJob, failedJob, jobStats, newJob, progressedJob, releasedJob, selectJobs,
} from './lifecycle.js';

// The job lifecycle as pure functions over the record: what every store does to a job, whatever it
// keeps it in. The stores' own behaviour (claims, leases, durability) is the conformance suite's.

const at = (iso: string): Date => new Date(iso);

describe('the job lifecycle', () => {
  it('a new job is pending with copied params; a bad type or params is refused with its code', () => {
    const params = { text: 'Hello', config: { seed: 3 } };
    const job = newJob('voice_synthesis', params, at('2026-12-06T10:00:00Z'));
    expect(job).toMatchObject({ status: 'pending', jobType: 'voice_synthesis', attempts: 0, progress: 0, workerId: null, createdAt: '2026-12-06T10:00:00.000Z' });
    params.config.seed = 4;
    expect((job.params.config as { seed: number }).seed).toBe(3);
    expect(checkJobRecord(JSON.parse(JSON.stringify(job)), job.jobId)).toEqual(job);
    expect(() => newJob('paint' as never, {})).toThrow(expect.objectContaining({ code: 'AVATAR_ERR_JOB_TYPE_UNKNOWN' }));
    expect(() => newJob('voice_synthesis', { text: Number.NaN } as never)).toThrow(expect.objectContaining({ code: 'AVATAR_ERR_JOB_PARAMS_INVALID', params: expect.objectContaining({ field: 'params.text' }) }));
  });

  it('claim, progress, complete: each a new record, the attempt counted once', () => {
    const pending = newJob('voice_synthesis', { text: 'x' });
    const running = claimedJob(pending, 'w1', at('2026-12-06T10:00:01Z'));
    expect(running).toMatchObject({ status: 'running', workerId: 'w1', attempts: 1, startedAt: '2026-12-06T10:00:01.000Z' });
    expect(progressedJob(running, 1.7, 'encode_video')).toMatchObject({ progress: 1, stage: 'encode_video' });
    expect(progressedJob(running, Number.NaN, null).progress).toBe(0);
    const done = completedJob(running, { outputPath: '/o.wav' }, at('2026-12-06T10:00:03Z'));
    expect(done).toMatchObject({ status: 'completed', progress: 1, result: { outputPath: '/o.wav' }, error: null });
    expect(pending.status).toBe('pending'); // records are never changed in place
    const failed = failedJob(running, new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'x' }).toJSON());
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'AVATAR_ERR_INTERNAL' } });
  });

  it('cancel, release and a lost worker follow the same rules in every store', () => {
    const pending = newJob('voice_synthesis', { text: 'x' });
    expect(cancelledJob(pending, null).error).toMatchObject({ code: 'AVATAR_ERR_JOB_CANCELLED', params: { stage: 'queue' } });
    const running = progressedJob(claimedJob(pending, 'w1'), 0.5, 'synthesize_speech');
    expect(cancelledJob(running, 'synthesize_speech')).toMatchObject({ status: 'cancelled', stage: 'synthesize_speech' });
    // a shutdown gives the attempt back; a cancel asked meanwhile wins
    expect(releasedJob(running, { cancelRequested: false })).toMatchObject({ status: 'pending', attempts: 0, workerId: null, progress: 0 });
    expect(releasedJob(running, { cancelRequested: true }).status).toBe('cancelled');
    // a lost worker keeps the attempt, and fails the job once they are used up
    expect(abandonedJob(running, { workerId: 'w1', maxAttempts: 3, cancelRequested: false })).toMatchObject({ status: 'pending', attempts: 1 });
    const third = { ...running, attempts: 3 };
    expect(abandonedJob(third, { workerId: 'w1', maxAttempts: 3, cancelRequested: false }).error).toMatchObject({ code: 'AVATAR_ERR_QUEUE_WORKER_LOST', params: { attempts: 3, workerId: 'w1' } });
  });

  it('lists newest first with filters and paging, and counts', () => {
    const make = (iso: string, type: Job['jobType'], status: Job['status']): Job => ({ ...newJob(type, {}, at(iso)), status });
    const jobs = [
      make('2026-12-06T10:00:00Z', 'voice_synthesis', 'completed'),
      make('2026-12-06T10:00:02Z', 'full_pipeline', 'pending'),
      make('2026-12-06T10:00:01Z', 'voice_synthesis', 'failed'),
    ];
    const all = selectJobs(jobs);
    expect(all.map((j) => j.createdAt)).toEqual(['2026-12-06T10:00:02.000Z', '2026-12-06T10:00:01.000Z', '2026-12-06T10:00:00.000Z']);
    expect(selectJobs(jobs, { type: 'voice_synthesis', limit: 1 })).toEqual([all[1]]);
    expect(selectJobs(jobs, { status: ['completed', 'pending'] })).toEqual([all[0], all[2]]);
    expect(selectJobs(jobs, { after: { createdAt: all[0]!.createdAt, jobId: all[0]!.jobId } })).toEqual([all[1], all[2]]);
    const started = { ...jobs[0]!, startedAt: '2026-12-06T10:00:00.000Z', completedAt: '2026-12-06T10:00:04.000Z' };
    const stats = jobStats([started, jobs[1]!, jobs[2]!]);
    expect(stats).toMatchObject({ total: 3, byStatus: { completed: 1, pending: 1, failed: 1 }, byType: { voice_synthesis: 2, full_pipeline: 1 }, meanRunSeconds: { voice_synthesis: 4 } });
  });
});
