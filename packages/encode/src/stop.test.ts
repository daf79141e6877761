import { describe, expect, it } from 'vitest';
import { Stop } from './stop.js';

describe('Stop', () => {
  it('gives each frame as it comes, the stop\'s reason once stopped, and a frame\'s failure as it is', async () => {
    const stop = new Stop<'aborted' | 'exited'>();
    expect(await stop.race(Promise.resolve(1))).toBe(1);
    await expect(stop.race(Promise.reject(new Error('bad frame')))).rejects.toThrow('bad frame');
    const never = new Promise<number>(() => {});
    const waiting = stop.race(never);
    stop.stop('exited');
    stop.stop('aborted'); // the first reason holds
    expect(await waiting).toBe('exited');
    expect(await stop.race(Promise.resolve(2))).toBe('exited');
    expect(stop.stopped).toBe('exited');
  });

  it('leaves nothing behind per wait: after any number of frames it waits on none of them', async () => {
    // (Promise.race([frame, stopped]) leaves a reaction on `stopped` per call, kept until the end)
    const stop = new Stop<'aborted'>();
    const waits = (): number => (stop as unknown as { waiting: Set<unknown> }).waiting.size;
    for (let k = 0; k < 1000; k++) expect(await stop.race(Promise.resolve(k))).toBe(k);
    await stop.race(Promise.reject(new Error('x'))).catch(() => undefined);
    expect(waits()).toBe(0);
    const late = stop.race(new Promise<number>((resolve) => setTimeout(() => resolve(7), 10)));
    expect(waits()).toBe(1);
    expect(await late).toBe(7);
    expect(waits()).toBe(0);
    stop.stop('aborted');
    expect(await stop.race(new Promise<number>(() => {}))).toBe('aborted');
    expect(waits()).toBe(0);
  });
});
