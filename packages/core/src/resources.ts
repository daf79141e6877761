import { totalmem } from 'node:os';
import { AvatarError } from './errors.js';
import type { GpuMemoryProvider, GpuSnapshot } from './gpu.js';
import { NoGpuProvider } from './gpu.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';
import type { LoadContext, LoadedStageOf, StageKind, StagePlugin } from './plugin.js';

export interface MemorySnapshot {
  label: string;
  at: string;
  rssMB: number;
  heapUsedMB: number;
  gpu: GpuSnapshot;
}

export interface ResourceManagerOptions {
  gpu?: GpuMemoryProvider;
  /** GPU memory the loaded models may use together; default: the GPU's total, or 0 without a GPU */
  vramBudgetMB?: number;
  /** host memory the loaded models may use together; default: half of this machine's memory */
  ramBudgetMB?: number;
  /** how many models may be loaded at once; the pipeline's rule is one */
  maxLoadedModels?: number;
  log?: Logger;
}

export interface TrackedRun<T> {
  value: T;
  wallSeconds: number;
  rssStartMB: number;
  rssEndMB: number;
  peakRssMB: number;
}

const mb = (bytes: number): number => Math.round((bytes / 1048576) * 10) / 10;

interface Waiter {
  ramMB: number;
  vramMB: number;
  wake: () => void;
}

/** How a model is admitted beside others: see ResourceManager.withModel. */
export type Alongside = boolean | 'if-room';

/**
 * Loads models one at a time within a memory budget and always unloads them, also on failure.
 * Logs host and GPU memory at every load and unload. Budgets are checked against what each
 * plugin declares, since a model's real footprint is only known once it is loaded.
 */
export class ResourceManager {
  readonly gpu: GpuMemoryProvider;
  readonly history: MemorySnapshot[] = [];
  private readonly log: Logger;
  private readonly maxLoaded: number;
  private ramBudget: number;
  private vramBudget: number | undefined;
  private loaded: { name: string; ramMB: number; vramMB: number; alongside: boolean }[] = [];
  private readonly waiters: Waiter[] = [];

  constructor(options: ResourceManagerOptions = {}) {
    this.gpu = options.gpu ?? new NoGpuProvider();
    this.log = options.log ?? silentLogger;
    this.maxLoaded = options.maxLoadedModels ?? 1;
    this.ramBudget = options.ramBudgetMB ?? Math.floor(totalmem() / 1048576 / 2);
    this.vramBudget = options.vramBudgetMB;
  }

  get budgets(): { ramMB: number; vramMB: number | undefined } {
    return { ramMB: this.ramBudget, vramMB: this.vramBudget };
  }

  get loadedModels(): readonly string[] {
    return this.loaded.map((m) => m.name);
  }

  async snapshot(label: string): Promise<MemorySnapshot> {
    const usage = process.memoryUsage();
    let gpu: GpuSnapshot;
    try {
      gpu = await this.gpu.query();
    } catch (error) {
      gpu = { available: false, reason: `GPU query failed: ${(error as Error).message}` };
    }
    const snap: MemorySnapshot = { label, at: new Date().toISOString(), rssMB: mb(usage.rss), heapUsedMB: mb(usage.heapUsed), gpu };
    this.history.push(snap);
    if (this.history.length > 500) this.history.splice(0, this.history.length - 500);
    this.log.debug(`memory ${label}: ${describeSnapshot(snap)}`, { memory: snap });
    return snap;
  }

  private async vramBudgetMB(): Promise<number> {
    if (this.vramBudget !== undefined) return this.vramBudget;
    const gpu = await this.gpu.query();
    this.vramBudget = gpu.available ? gpu.devices.reduce((sum, d) => Math.max(sum, d.totalMB), 0) : 0;
    return this.vramBudget;
  }

  private fits(ramMB: number, vramMB: number, alongside: boolean): boolean {
    if (!alongside && this.loaded.filter((m) => !m.alongside).length >= this.maxLoaded) return false;
    const ram = this.loaded.reduce((s, m) => s + m.ramMB, 0) + ramMB;
    const vram = this.loaded.reduce((s, m) => s + m.vramMB, 0) + vramMB;
    return ram <= this.ramBudget && vram <= (this.vramBudget ?? 0);
  }

  private async admit(name: string, ramMB: number, vramMB: number, wanted: Alongside, signal?: AbortSignal): Promise<void> {
    if (ramMB > this.ramBudget) {
      throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: ramMB, kind: 'host', kindUpper: 'RAM', budgetMB: this.ramBudget });
    }
    const vramBudget = await this.vramBudgetMB();
    if (vramMB > vramBudget) {
      throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: vramMB, kind: 'GPU', kindUpper: 'VRAM', budgetMB: vramBudget });
    }
    // 'if-room': a free model slot if there is one, else beside what is loaded when the budget allows it,
    // else a slot waited for (decided again each time it wakes: what is loaded changes meanwhile)
    const decide = (): boolean => (wanted === 'if-room' ? !this.fits(ramMB, vramMB, false) && this.fits(ramMB, vramMB, true) : wanted);
    let alongside = decide();
    while (!this.fits(ramMB, vramMB, alongside)) {
      signal?.throwIfAborted();
      if (wanted === true) {
        // a model loaded alongside another (an encoder consuming a renderer's frames) cannot wait for
        // that one to go: say so instead of waiting forever
        throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: vramMB || ramMB, kind: vramMB ? 'GPU' : 'host', kindUpper: vramMB ? 'VRAM' : 'RAM', budgetMB: vramMB ? (this.vramBudget ?? 0) : this.ramBudget });
      }
      await new Promise<void>((resolve) => {
        const onAbort = (): void => {
          const i = this.waiters.indexOf(waiter);
          if (i >= 0) this.waiters.splice(i, 1);
          resolve();
        };
        const waiter: Waiter = { ramMB, vramMB, wake: () => { signal?.removeEventListener('abort', onAbort); resolve(); } };
        this.waiters.push(waiter);
        signal?.addEventListener('abort', onAbort, { once: true });
      });
      alongside = decide();
    }
    this.loaded.push({ name, ramMB, vramMB, alongside });
  }

  private releaseSlot(name: string): void {
    const i = this.loaded.findIndex((m) => m.name === name);
    if (i >= 0) this.loaded.splice(i, 1);
    // wake everyone: each re-checks whether it fits now, in arrival order
    for (const waiter of this.waiters.splice(0)) waiter.wake();
  }

  /**
   * Loads the plugin's model, runs `fn` with it, unloads it: also when `fn` or the load fails.
   * `alongside`: the model runs next to one already loaded by the caller (within the memory budget, but
   * without waiting for a model slot, which the caller holds); 'if-room': next to what is loaded when
   * the budget has room for it now, otherwise it waits for a slot as any other (a stage that may run
   * beside another, such as the face stage beside the speech, but need not).
   */
  async withModel<K extends StageKind, T>(
    plugin: StagePlugin<K>,
    ctx: LoadContext,
    fn: (stage: LoadedStageOf<K>) => Promise<T>,
    options: { alongside?: Alongside } = {},
  ): Promise<T> {
    const ramMB = plugin.resources.ramMB ?? 0;
    // 'any' runs on the CPU when there is no GPU, so its GPU figure only counts where there is one
    const gpuBudget = plugin.resources.device === 'any' ? await this.vramBudgetMB() : 1;
    const vramMB = plugin.resources.device === 'cpu' || gpuBudget === 0 ? 0 : (plugin.resources.vramMB ?? 0);
    const label = `${plugin.stage}/${plugin.name}`;
    // a plugin that declares no memory (a tool run as a child process, say) takes no model slot
    const heavy = ramMB > 0 || vramMB > 0;
    if (heavy) await this.admit(label, ramMB, vramMB, options.alongside ?? false, ctx.signal);
    let loaded: LoadedStageOf<K> | undefined;
    try {
      await this.snapshot(`before load ${label}`);
      loaded = await plugin.load(ctx);
      await this.snapshot(`loaded ${label}`);
      return await fn(loaded);
    } finally {
      try {
        if (loaded) await loaded.unload();
      } catch (error) {
        this.log.warn(`unloading ${label} failed: ${(error as Error).message}`);
      }
      if (heavy) this.releaseSlot(label);
      await this.snapshot(`unloaded ${label}`);
    }
  }

  /** Runs `fn`, measuring wall time and process memory (sampled) around it. */
  async track<T>(fn: () => Promise<T>, sampleMs = 50): Promise<TrackedRun<T>> {
    const start = performance.now();
    const rssStart = process.memoryUsage.rss();
    let peak = rssStart;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, sampleMs);
    timer.unref();
    try {
      const value = await fn();
      const rssEnd = process.memoryUsage.rss();
      peak = Math.max(peak, rssEnd);
      return { value, wallSeconds: (performance.now() - start) / 1000, rssStartMB: mb(rssStart), rssEndMB: mb(rssEnd), peakRssMB: mb(peak) };
    } finally {
      clearInterval(timer);
    }
  }
}

export function describeSnapshot(snap: MemorySnapshot): string {
  const gpu = snap.gpu.available
    ? snap.gpu.devices.map((d) => `GPU${d.index} ${d.usedMB}/${d.totalMB} MB`).join(', ')
    : snap.gpu.reason;
  return `rss ${snap.rssMB} MB, heap ${snap.heapUsedMB} MB; ${gpu}`;
}
