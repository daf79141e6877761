import type { Redis } from 'ioredis';

// An atomic read, the state changes BullMQ has no command for (as Lua scripts over BullMQ's keys),
// and a counter the servers of one Redis share (its key
// layout: <prefix>:<queue>:wait|paused|prioritized|active|completed|failed|events, a hash per job,
// <job>:lock holding the owner's token). Each runs atomically in Redis like BullMQ's own scripts.

/** progress and stage, written only by the worker whose token holds the lock; tagged with the attempt */
const PROGRESS = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local ats = redis.call('HGET', KEYS[2], 'ats') or '0'
local fraction = ARGV[2]
if fraction == '' then
  -- keep this attempt's progress, change only the stage
  if redis.call('HGET', KEYS[2], 'avpa') == ats then fraction = redis.call('HGET', KEYS[2], 'avp') or '0' else fraction = '0' end
end
redis.call('HSET', KEYS[2], 'avp', fraction, 'avs', ARGV[3], 'avpa', ats)
return 1
`;

/**
 * A job still waiting is failed with the given reason (a cancel in the queue, or a recovered job out of
 * attempts); in 'cancel' mode a running one gets a cancel request instead. Answers what it found.
 */
const FINISH_WAITING = `
local id = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('ZSCORE', KEYS[6], id) then return 'completed' end
if redis.call('ZSCORE', KEYS[7], id) then return 'failed' end
local removed = redis.call('LREM', KEYS[2], 1, id) + redis.call('LREM', KEYS[3], 1, id) + redis.call('ZREM', KEYS[4], id)
if removed > 0 then
  redis.call('ZADD', KEYS[7], ARGV[3], id)
  redis.call('HSET', KEYS[1], 'failedReason', ARGV[2], 'finishedOn', ARGV[3])
  redis.call('HDEL', KEYS[1], 'defa', 'avcancel')
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'event', 'failed', 'jobId', id, 'failedReason', ARGV[2], 'prev', 'waiting')
  return 'finished'
end
if ARGV[4] == 'cancel' and redis.call('LPOS', KEYS[5], id) then
  redis.call('HSET', KEYS[1], 'avcancel', '1')
  return 'requested'
end
return 'running'
`;

/** A job's fields and its state in one atomic read: {state, values of ARGV[2..]} ('' state: no such job). */
const READ = `
local values = redis.call('HMGET', KEYS[1], unpack(ARGV, 2))
if not values[1] then return {''} end
local state = 'pending'
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then state = 'completed'
elseif redis.call('ZSCORE', KEYS[3], ARGV[1]) then state = 'failed'
elseif redis.call('LPOS', KEYS[4], ARGV[1]) then state = 'running' end
local reply = {state}
for i = 1, #values do reply[i + 1] = values[i] or false end
return reply
`;

/**
 * release, in one step: only by the lock's holder; a job with a cancel request is left for the caller
 * to mark cancelled; otherwise back to the head of the queue (as BullMQ's moveJobFromActiveToWait
 * puts it: the wait list, a marker for blocked workers, a 'waiting' event) with its attempt given back
 * (ats) and its progress forgotten. Atomic, so no claim, cancel or second release comes in between.
 */
const RELEASE = `
local id = ARGV[1]
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 'lost' end
if redis.call('HGET', KEYS[1], 'avcancel') == '1' then return 'cancel' end
if redis.call('LREM', KEYS[3], 1, id) == 0 then return 'lost' end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[5], id)
redis.call('HINCRBY', KEYS[1], 'ats', -1)
redis.call('HDEL', KEYS[1], 'avp', 'avs', 'avpa')
redis.call('RPUSH', KEYS[4], id)
local meta = redis.call('HMGET', KEYS[6], 'paused', 'concurrency')
local maxed = meta[2] and redis.call('LLEN', KEYS[3]) >= tonumber(meta[2])
if not meta[1] and not maxed then redis.call('ZADD', KEYS[7], 0, '0') end
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'event', 'waiting', 'jobId', id, 'prev', 'active')
return 'released'
`;

/** A fixed-window counter: the count with this call and the ms left of the window. */
const COUNT = `
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
`;

export type FinishOutcome = 'missing' | 'completed' | 'failed' | 'finished' | 'requested' | 'running';

export interface StoreScripts {
  avatarRelease(
    jobKey: string, lockKey: string, active: string, wait: string, stalled: string, meta: string, marker: string, events: string,
    jobId: string, token: string,
  ): Promise<'lost' | 'cancel' | 'released'>;
  avatarCount(key: string, windowMs: string): Promise<[number, number]>;
  /** ARGV: the job id, then the fields to read (the first must always be set, e.g. name) */
  avatarRead(jobKey: string, completed: string, failed: string, active: string, jobId: string, ...fields: string[]): Promise<(string | null)[]>;
  avatarProgress(lockKey: string, jobKey: string, token: string, fraction: string, stageJson: string): Promise<number>;
  avatarFinishWaiting(
    jobKey: string, wait: string, paused: string, prioritized: string, active: string, completed: string, failed: string, events: string,
    jobId: string, reason: string, nowMs: string, mode: 'cancel' | 'finish',
  ): Promise<FinishOutcome>;
}

/** Registers the scripts on a connection (ioredis sends each by its SHA, loading it on first use). */
export function withScripts(redis: Redis): Redis & StoreScripts {
  redis.defineCommand('avatarRead', { numberOfKeys: 4, lua: READ });
  redis.defineCommand('avatarCount', { numberOfKeys: 1, lua: COUNT });
  redis.defineCommand('avatarRelease', { numberOfKeys: 8, lua: RELEASE });
  redis.defineCommand('avatarProgress', { numberOfKeys: 2, lua: PROGRESS });
  redis.defineCommand('avatarFinishWaiting', { numberOfKeys: 8, lua: FINISH_WAITING });
  return redis as Redis & StoreScripts;
}
