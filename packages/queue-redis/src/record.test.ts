import { describe, expect, it } from 'vitest';
import { AvatarError } from '@avatar/core';
import { STALLED_REASON, jobFromHash, type RawRecord } from './record.js';

const ID = 'job-20261207120000-0123abcd';
const base: RawRecord = { name: 'voice_synthesis', data: '{"text":"hi"}', timestamp: String(Date.parse('2026-12-07T12:00:00.000Z')) };

describe('jobFromHash', () => {
  it('reads a pending job as the contract shows it: nothing of an earlier attempt', () => {
    const job = jobFromHash(ID, { ...base, ats: '1', processedOn: '1', pb: 'w1', avp: '0.5', avs: '"lip_sync"', avpa: '1' }, 'pending');
    expect(job).toEqual({
      jobId: ID, status: 'pending', jobType: 'voice_synthesis', params: { text: 'hi' }, createdAt: '2026-12-07T12:00:00.000Z',
      startedAt: null, completedAt: null, result: null, error: null, progress: 0, stage: null, attempts: 1, workerId: null,
    });
  });

  it('shows the progress of the running attempt only', () => {
    const running = { ...base, ats: '2', pb: 'w2', processedOn: String(Date.parse('2026-12-07T12:00:05.000Z')) };
    expect(jobFromHash(ID, { ...running, avp: '0.4', avs: '"encode_video"', avpa: '2' }, 'running')).toMatchObject({
      status: 'running', progress: 0.4, stage: 'encode_video', workerId: 'w2', attempts: 2, startedAt: '2026-12-07T12:00:05.000Z',
    });
    // written by the first attempt: not this one's
    expect(jobFromHash(ID, { ...running, avp: '0.9', avs: '"encode_video"', avpa: '1' }, 'running')).toMatchObject({ progress: 0, stage: null });
  });

  it('turns BullMQ\'s own stall limit into AVATAR_ERR_QUEUE_WORKER_LOST, and any other plain reason into an internal error', () => {
    const lost = jobFromHash(ID, { ...base, ats: '3', pb: 'w9', failedReason: STALLED_REASON, finishedOn: '1000' }, 'failed');
    expect(lost).toMatchObject({ status: 'failed', workerId: null, attempts: 3, error: { code: 'AVATAR_ERR_QUEUE_WORKER_LOST', params: { id: ID, attempts: 3, workerId: 'w9' } } });
    const odd = jobFromHash(ID, { ...base, ats: '1', failedReason: 'something BullMQ said', finishedOn: '1000' }, 'failed');
    expect(odd).toMatchObject({ status: 'failed', error: { code: 'AVATAR_ERR_INTERNAL' } });
    expect(typeof odd !== 'string' && odd.error?.message).toContain('something BullMQ said');
  });

  it('reads a cancelled job from its error; cancelled in the queue it never started', () => {
    const inQueue = new AvatarError('AVATAR_ERR_JOB_CANCELLED', { id: ID, stage: 'queue' }).toJSON();
    expect(jobFromHash(ID, { ...base, ats: '0', pb: 'w1', processedOn: '5', failedReason: JSON.stringify(inQueue), finishedOn: '9' }, 'failed'))
      .toMatchObject({ status: 'cancelled', startedAt: null, workerId: null, error: inQueue, completedAt: new Date(9).toISOString() });
    const midRun = new AvatarError('AVATAR_ERR_JOB_CANCELLED', { id: ID, stage: 'lip_sync' }).toJSON();
    expect(jobFromHash(ID, { ...base, ats: '1', pb: 'w1', processedOn: '5', avp: '0.3', avs: '"lip_sync"', avpa: '1', failedReason: JSON.stringify(midRun), finishedOn: '9' }, 'failed'))
      .toMatchObject({ status: 'cancelled', stage: 'lip_sync', progress: 0.3, workerId: 'w1', startedAt: new Date(5).toISOString() });
  });

  it('says why a damaged record is not a job', () => {
    expect(jobFromHash(ID, { ...base, data: '{not json' }, 'pending')).toBe('data is not JSON');
    expect(jobFromHash(ID, { ...base, returnvalue: 'nope' }, 'completed')).toBe('data or returnvalue is not JSON');
    expect(jobFromHash(ID, { ...base, name: 'make_coffee' }, 'pending')).toMatch(/jobType/);
    expect(jobFromHash(ID, { ...base, data: '[1,2]' }, 'pending')).toMatch(/params/);
  });
});
