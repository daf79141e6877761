import { describe, expect, it } from 'vitest';
import type { GpuMemoryProvider } from './gpu.js';
import { NoGpuProvider } from './gpu.js';
import { MemoryLogger, silentLogger } from './log.js';
import type { LoadContext, StagePlugin } from './plugin.js';
import { ResourceManager } from './resources.js';

const ctx: LoadContext = { log: silentLogger, storageDir: '/tmp' };

function model(name: string, resources: StagePlugin<'tts'>['resources'], events: string[]): StagePlugin<'tts'> {
  return {
    name, stage: 'tts', apiVersion: 1, resources,
    async load() {
      events.push(`load ${name}`);
      // hold some real memory so the snapshots have something to show
      const weights = new Float32Array(1_000_000).fill(1);
      return {
        async run() { throw new Error(`run ${name} ${weights.length}`); },
        async unload() { events.push(`unload ${name}`); },
      };
    },
  };
}

describe('ResourceManager', () => {
  it('says "no GPU" plainly without a provider', async () => {
    const rm = new ResourceManager();
    const snap = await rm.snapshot('t');
    expect(snap.gpu).toEqual({ available: false, reason: expect.stringMatching(/^no GPU/) });
    expect(snap.rssMB).toBeGreaterThan(10);
  });

  it('unloads after the work and also when it fails, logging memory at each boundary', async () => {
    const events: string[] = [];
    const log = new MemoryLogger();
    const rm = new ResourceManager({ log });
    const value = await rm.withModel(model('a', { device: 'cpu', ramMB: 10 }, events), ctx, async () => 42);
    expect(value).toBe(42);
    await expect(rm.withModel(model('b', { device: 'cpu', ramMB: 10 }, events), ctx, async (m) => m.run({} as never, {} as never)))
      .rejects.toThrow(/run b/);
    expect(events).toEqual(['load a', 'unload a', 'load b', 'unload b']);
    expect(rm.loadedModels).toEqual([]);
    const labels = rm.history.map((s) => s.label);
    expect(labels).toEqual(['before load tts/a', 'loaded tts/a', 'unloaded tts/a', 'before load tts/b', 'loaded tts/b', 'unloaded tts/b']);
    expect(log.entries.filter((e) => e.message.startsWith('memory')).length).toBe(6);
  });

  it('runs heavy models one at a time', async () => {
    const events: string[] = [];
    const rm = new ResourceManager();
    const slow = async (tag: string): Promise<void> => {
      events.push(`start ${tag}`);
      await new Promise((r) => setTimeout(r, 30));
      events.push(`end ${tag}`);
    };
    await Promise.all([
      rm.withModel(model('a', { device: 'cpu', ramMB: 100 }, events), ctx, () => slow('a')),
      rm.withModel(model('b', { device: 'cpu', ramMB: 100 }, events), ctx, () => slow('b')),
    ]);
    expect(events).toEqual(['load a', 'start a', 'end a', 'unload a', 'load b', 'start b', 'end b', 'unload b']);
  });

  it('"if-room": beside the loaded model when the budget has room, else it waits for the slot; a free slot is taken as usual', async () => {
    const slow = (events: string[], tag: string) => async (): Promise<void> => {
      events.push(`start ${tag}`);
      await new Promise((r) => setTimeout(r, 30));
      events.push(`end ${tag}`);
    };
    // room: b runs while a is loaded
    const beside: string[] = [];
    const roomy = new ResourceManager({ ramBudgetMB: 1000 });
    const a = roomy.withModel(model('a', { device: 'cpu', ramMB: 100 }, beside), ctx, slow(beside, 'a'));
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([a, roomy.withModel(model('b', { device: 'cpu', ramMB: 100 }, beside), ctx, slow(beside, 'b'), { alongside: 'if-room' })]);
    expect(beside.indexOf('start b')).toBeLessThan(beside.indexOf('end a'));
    // no room: b waits for a to go, instead of failing as a plain alongside model would
    const after: string[] = [];
    const tight = new ResourceManager({ ramBudgetMB: 150 });
    const first = tight.withModel(model('a', { device: 'cpu', ramMB: 100 }, after), ctx, slow(after, 'a'));
    await new Promise((r) => setTimeout(r, 5));
    await Promise.all([first, tight.withModel(model('b', { device: 'cpu', ramMB: 100 }, after), ctx, slow(after, 'b'), { alongside: 'if-room' })]);
    expect(after).toEqual(['load a', 'start a', 'end a', 'unload a', 'load b', 'start b', 'end b', 'unload b']);
    await expect(tight.withModel(model('c', { device: 'cpu', ramMB: 100 }, after), ctx, async () => {
      await tight.withModel(model('d', { device: 'cpu', ramMB: 100 }, after), ctx, async () => undefined, { alongside: true });
    })).rejects.toMatchObject({ code: 'AVATAR_ERR_RESOURCE_BUDGET' });
    // a free slot: taken as a model of its own, so the next one waits for it
    const alone: string[] = [];
    const free = new ResourceManager({ ramBudgetMB: 1000 });
    await Promise.all([
      free.withModel(model('a', { device: 'cpu', ramMB: 100 }, alone), ctx, slow(alone, 'a'), { alongside: 'if-room' }),
      free.withModel(model('b', { device: 'cpu', ramMB: 100 }, alone), ctx, slow(alone, 'b')),
    ]);
    expect(alone).toEqual(['load a', 'start a', 'end a', 'unload a', 'load b', 'start b', 'end b', 'unload b']);
  });

  it('refuses a model larger than the budget, naming both figures', async () => {
    const rm = new ResourceManager({ ramBudgetMB: 100 });
    await expect(rm.withModel(model('big', { device: 'cpu', ramMB: 500 }, []), ctx, async () => 1))
      .rejects.toMatchObject({ code: 'AVATAR_ERR_RESOURCE_BUDGET', message: 'tts/big needs 500 MB of host memory but the budget is 100 MB' });
    await expect(rm.withModel(model('gpu', { device: 'gpu', vramMB: 2000 }, []), ctx, async () => 1))
      .rejects.toMatchObject({ code: 'AVATAR_ERR_RESOURCE_BUDGET', params: expect.objectContaining({ kind: 'GPU', budgetMB: 0 }) });
  });

  it('takes the GPU budget from the provider', async () => {
    const gpu: GpuMemoryProvider = {
      name: 'fixed',
      async query() { return { available: true, source: 'test', devices: [{ index: 0, name: 'Test GPU', totalMB: 8000, usedMB: 500, freeMB: 7500 }] }; },
    };
    const rm = new ResourceManager({ gpu });
    expect(await rm.withModel(model('g', { device: 'gpu', vramMB: 4000 }, []), ctx, async () => 'ran')).toBe('ran');
    expect(rm.budgets.vramMB).toBe(8000);
    expect(new NoGpuProvider('no GPU: test').name).toBe('none');
  });

  it('light plugins (no declared memory) do not wait for the model slot', async () => {
    const events: string[] = [];
    const rm = new ResourceManager();
    const inner = await rm.withModel(model('heavy', { device: 'cpu', ramMB: 50 }, events), ctx, () =>
      rm.withModel(model('tool', { device: 'cpu' }, events), ctx, async () => 'nested'));
    expect(inner).toBe('nested');
    expect(events).toEqual(['load heavy', 'load tool', 'unload tool', 'unload heavy']);
  });

  it('tracks wall time and peak memory of a piece of work', async () => {
    const rm = new ResourceManager();
    const tracked = await rm.track(async () => {
      const block = Buffer.alloc(64 * 1024 * 1024, 1);
      await new Promise((r) => setTimeout(r, 120));
      return block.length;
    }, 10);
    expect(tracked.value).toBe(64 * 1024 * 1024);
    expect(tracked.wallSeconds).toBeGreaterThan(0.1);
    expect(tracked.peakRssMB).toBeGreaterThanOrEqual(tracked.rssStartMB);
  });
});
