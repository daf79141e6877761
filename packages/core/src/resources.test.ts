import { describe, expect, it } from 'vitest';
import type { GpuMemoryProvider } from './gpu.js';
import { NoGpuProvider } from './gpu.js';
import { MemoryLogger, silentLogger } from './log.js';
import type { LoadContext, StagePlugin } from './plugin.js';
import { ResourceManager } from './resources.js';

const ctx: Omit<LoadContext, 'device'> = { log: silentLogger, storageDir: '/tmp', options: {} };

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
  });

  describe('GPU placement (from what NVML reports free)', () => {
    /** a provider whose GPUs lose what the fake models load, as real ones would */
    function gpus(devices: { name: string; totalMB: number; freeMB: number }[]): GpuMemoryProvider & { take(index: number, mb: number): void } {
      const state = devices.map((d, index) => ({ index, uuid: `GPU-${index}`, usedMB: d.totalMB - d.freeMB, ...d }));
      return {
        name: 'fake',
        async query() { return { available: true, source: 'fake', devices: state.map((d) => ({ ...d })) }; },
        take(index, mbs) { const d = state[index]!; d.freeMB -= mbs; d.usedMB += mbs; },
      };
    }
    function gpuModel(name: string, resources: StagePlugin<'tts'>['resources'], provider: ReturnType<typeof gpus>, seen: LoadContext['device'][], events: string[] = []): StagePlugin<'tts'> {
      return {
        name, stage: 'tts', apiVersion: 1, resources,
        async load(loadCtx) {
          seen.push(loadCtx.device);
          events.push(`load ${name}`);
          const on = loadCtx.device;
          // memory shows in NVML a moment after load() starts, as a real allocation would
          await new Promise((r) => setTimeout(r, 10));
          if (on.kind === 'gpu') provider.take(on.index, resources.vramMB ?? 0);
          return {
            async run() { throw new Error('not run'); },
            async unload() { events.push(`unload ${name}`); if (on.kind === 'gpu') provider.take(on.index, -(resources.vramMB ?? 0)); },
          };
        },
      };
    }

    it('gives load() the GPU with the most free memory, not the largest', async () => {
      const provider = gpus([{ name: 'Big but busy', totalMB: 80000, freeMB: 3000 }, { name: 'Small and idle', totalMB: 16000, freeMB: 15000 }]);
      const seen: LoadContext['device'][] = [];
      const rm = new ResourceManager({ gpu: provider });
      await rm.withModel(gpuModel('g', { device: 'gpu', vramMB: 4000 }, provider, seen), ctx, async () => undefined);
      expect(seen).toEqual([{ kind: 'gpu', index: 1, name: 'Small and idle', uuid: 'GPU-1', freeMB: 15000 }]);
      expect(rm.budgets.vramMB).toBeUndefined();
    });

    it('refuses a model no GPU has room for before loading it, naming the GPU, its free memory and the need', async () => {
      const provider = gpus([{ name: 'H100', totalMB: 80000, freeMB: 1200 }, { name: 'H100', totalMB: 80000, freeMB: 900 }]);
      const seen: LoadContext['device'][] = [];
      const rm = new ResourceManager({ gpu: provider });
      await expect(rm.withModel(gpuModel('big', { device: 'gpu', vramMB: 4000 }, provider, seen), ctx, async () => 1)).rejects.toMatchObject({
        code: 'AVATAR_ERR_GPU_MEMORY',
        message: 'tts/big needs 4000 MB of GPU memory, but the GPU with the most room, GPU 0 (H100), has 1200 MB free',
      });
      expect(seen).toEqual([]);
      expect(rm.loadedModels).toEqual([]);
    });

    it('runs a model that may use either on the CPU when no GPU has room or there is none, saying why', async () => {
      const provider = gpus([{ name: 'H100', totalMB: 80000, freeMB: 1200 }]);
      const seen: LoadContext['device'][] = [];
      const log = new MemoryLogger();
      await new ResourceManager({ gpu: provider, log }).withModel(gpuModel('either', { device: 'any', vramMB: 4000, ramMB: 10 }, provider, seen), ctx, async () => 1);
      await new ResourceManager().withModel(gpuModel('either', { device: 'any', vramMB: 4000, ramMB: 10 }, provider, seen), ctx, async () => 1);
      await new ResourceManager({ gpu: provider, vramBudgetMB: 1000 }).withModel(gpuModel('either', { device: 'any', vramMB: 4000, ramMB: 10 }, provider, seen), ctx, async () => 1);
      expect(seen).toEqual([
        { kind: 'cpu', reason: 'GPU 0 (H100) has 1200 MB free, 4000 MB needed' },
        { kind: 'cpu', reason: 'no GPU: no GPU memory provider is installed' },
        { kind: 'cpu', reason: 'it needs 4000 MB of GPU memory, over the budget of 1000 MB' },
      ]);
      expect(log.entries.map((e) => e.message)).toContain('tts/either runs on the CPU: GPU 0 (H100) has 1200 MB free, 4000 MB needed');
    });

    it('refuses a GPU-only model where there is no GPU, or over the GPU budget', async () => {
      const provider = gpus([{ name: 'H100', totalMB: 80000, freeMB: 70000 }]);
      await expect(new ResourceManager().withModel(gpuModel('cuda', { device: 'gpu', vramMB: 100 }, provider, []), ctx, async () => 1)).rejects.toMatchObject({
        code: 'AVATAR_ERR_GPU_UNAVAILABLE', message: 'tts/cuda runs only on a GPU, and none can be used here (no GPU: no GPU memory provider is installed)',
      });
      // one that declares no memory is still placed on a GPU
      await expect(new ResourceManager().withModel(gpuModel('light', { device: 'gpu' }, provider, []), ctx, async () => 1)).rejects.toMatchObject({ code: 'AVATAR_ERR_GPU_UNAVAILABLE' });
      await expect(new ResourceManager({ gpu: provider, vramBudgetMB: 50 }).withModel(gpuModel('cuda', { device: 'gpu', vramMB: 100 }, provider, []), ctx, async () => 1)).rejects.toMatchObject({
        code: 'AVATAR_ERR_RESOURCE_BUDGET', params: expect.objectContaining({ kind: 'GPU', budgetMB: 50 }),
      });
    });

    it('counts what a model still loading declared, so two admitted at once go to different GPUs', async () => {
      const provider = gpus([{ name: 'A', totalMB: 8000, freeMB: 6000 }, { name: 'B', totalMB: 8000, freeMB: 6000 }]);
      const seen: LoadContext['device'][] = [];
      const rm = new ResourceManager({ gpu: provider, maxLoadedModels: 2 });
      await Promise.all([
        rm.withModel(gpuModel('one', { device: 'gpu', vramMB: 4000 }, provider, seen), ctx, async () => undefined),
        rm.withModel(gpuModel('two', { device: 'gpu', vramMB: 4000 }, provider, seen), ctx, async () => undefined),
      ]);
      expect(seen.map((d) => (d.kind === 'gpu' ? d.index : 'cpu')).sort()).toEqual([0, 1]);
    });

    it('waits for its own models to leave a GPU rather than failing, then loads', async () => {
      const provider = gpus([{ name: 'A', totalMB: 8000, freeMB: 6000 }]);
      const seen: LoadContext['device'][] = [];
      const events: string[] = [];
      const rm = new ResourceManager({ gpu: provider, maxLoadedModels: 2 });
      const first = rm.withModel(gpuModel('one', { device: 'gpu', vramMB: 4000 }, provider, seen, events), ctx, async () => {
        await new Promise((r) => setTimeout(r, 40));
        events.push('one ran');
      });
      await new Promise((r) => setTimeout(r, 20));
      await Promise.all([first, rm.withModel(gpuModel('two', { device: 'gpu', vramMB: 4000 }, provider, seen, events), ctx, async () => { events.push('two ran'); })]);
      expect(events).toEqual(['load one', 'one ran', 'unload one', 'load two', 'two ran', 'unload two']);
      expect(seen).toEqual([expect.objectContaining({ index: 0, freeMB: 6000 }), expect.objectContaining({ index: 0, freeMB: 6000 })]);
      expect(new NoGpuProvider('no GPU: test').name).toBe('none');
    });
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
