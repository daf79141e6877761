import { totalmem } from 'node:os';
import { AvatarError } from './errors.js';
import type { GpuMemoryProvider, GpuSnapshot } from './gpu.js';
import { NoGpuProvider } from './gpu.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';
import type { LoadContext, LoadedStageOf, ModelDevice, StageKind, StagePlugin } from './plugin.js';

export interface MemorySnapshot {
  label: string;
  at: string;
  rssMB: number;
  heapUsedMB: number;
  gpu: GpuSnapshot;
}

export interface ResourceManagerOptions {
  gpu?: GpuMemoryProvider;
  /**
   * GPU memory the loaded models may declare together (a cap, for sharing a GPU with other work);
   * default: no cap, a model goes to the GPU with the most free memory as NVML reports it
   */
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
  wake: () => void;
}

/** How a model is admitted beside others: see ResourceManager.withModel. */
export type Alongside = boolean | 'if-room';

interface Admitted {
  name: string;
  ramMB: number;
  vramMB: number;
  alongside: boolean;
  /** the NVML index of its GPU; undefined on the CPU */
  gpu: number | undefined;
}

/** What one admission attempt decided. */
type Placement = { device: ModelDevice; slot: Admitted } | { wait: Promise<void> };

const CPU: ModelDevice = { kind: 'cpu' };

/**
 * Loads models one at a time within a memory budget and always unloads them, also on failure.
 * Logs host and GPU memory at every load and unload. Host memory is budgeted from what each plugin
 * declares (a model's real footprint is only known once it is loaded); GPU memory from what NVML
 * reports free on each GPU when the model is admitted, less what this process's models on it have
 * declared, so other processes' use of a GPU counts too. (A model's memory counts twice once it is
 * allocated: a model may allocate late, at its first run, and room counted twice is only waited for,
 * never overcommitted.)
 */
export class ResourceManager {
  readonly gpu: GpuMemoryProvider;
  readonly history: MemorySnapshot[] = [];
  private readonly log: Logger;
  private readonly maxLoaded: number;
  private ramBudget: number;
  private readonly vramBudget: number | undefined;
  private loaded: Admitted[] = [];
  private readonly waiters: Waiter[] = [];
  /** admissions one at a time: each reads NVML and records its model before the next reads it */
  private admissions: Promise<void> = Promise.resolve();

  constructor(options: ResourceManagerOptions = {}) {
    this.gpu = options.gpu ?? new NoGpuProvider();
    this.log = options.log ?? silentLogger;
    this.maxLoaded = options.maxLoadedModels ?? 1;
    this.ramBudget = options.ramBudgetMB ?? Math.floor(totalmem() / 1048576 / 2);
    this.vramBudget = options.vramBudgetMB;
  }

  /** host: what loaded models may use together; GPU: the cap on what they declare together on the GPUs, undefined without one (what NVML reports free) */
  get budgets(): { ramMB: number; vramMB: number | undefined } {
    return { ramMB: this.ramBudget, vramMB: this.vramBudget };
  }

  get loadedModels(): readonly string[] {
    return this.loaded.map((m) => m.name);
  }

  private async queryGpu(): Promise<GpuSnapshot> {
    try {
      return await this.gpu.query();
    } catch (error) {
      return { available: false, reason: `GPU query failed: ${(error as Error).message}` };
    }
  }

  async snapshot(label: string): Promise<MemorySnapshot> {
    const usage = process.memoryUsage();
    const gpu = await this.queryGpu();
    const snap: MemorySnapshot = { label, at: new Date().toISOString(), rssMB: mb(usage.rss), heapUsedMB: mb(usage.heapUsed), gpu };
    this.history.push(snap);
    if (this.history.length > 500) this.history.splice(0, this.history.length - 500);
    this.log.debug(`memory ${label}: ${describeSnapshot(snap)}`, { memory: snap });
    return snap;
  }

  /** a model slot and host memory (and the GPU cap, when one is set and the model is on a GPU) */
  private fits(ramMB: number, vramMB: number, alongside: boolean): boolean {
    if (!alongside && this.loaded.filter((m) => !m.alongside).length >= this.maxLoaded) return false;
    const ram = this.loaded.reduce((s, m) => s + m.ramMB, 0) + ramMB;
    return ram <= this.ramBudget && (vramMB === 0 || this.vramBudget === undefined || this.vramMB() + vramMB <= this.vramBudget);
  }

  private vramMB(gpu?: number): number {
    return this.loaded.reduce((s, m) => s + (m.gpu !== undefined && (gpu === undefined || m.gpu === gpu) ? m.vramMB : 0), 0);
  }

  private waiter(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      const waiter: Waiter = { wake: () => { signal?.removeEventListener('abort', onAbort); resolve(); } };
      this.waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const turn = this.admissions.then(fn);
    this.admissions = turn.then(() => undefined, () => undefined);
    return turn;
  }

  /**
   * The GPU for a model of `vramMB`: the one with the most room that can hold it, room being NVML's
   * free memory less what this process's models there have declared. Undefined with the reason when
   * none can (and the roomiest GPU, for the error).
   */
  private pickGpu(snapshot: GpuSnapshot, vramMB: number): { device: Extract<ModelDevice, { kind: 'gpu' }> } | { why: string; roomiest?: { device: string; freeMB: number } } {
    if (!snapshot.available) return { why: snapshot.reason };
    const rooms = snapshot.devices
      .map((d) => ({ d, room: d.freeMB - this.vramMB(d.index) }))
      .sort((a, b) => b.room - a.room || a.d.index - b.d.index);
    const best = rooms[0];
    if (!best) return { why: 'no GPU: NVML lists no devices' };
    const device = `GPU ${best.d.index} (${best.d.name})`;
    if (best.room < vramMB) return { why: `${device} has ${best.room} MB free, ${vramMB} MB needed`, roomiest: { device, freeMB: best.room } };
    return { device: { kind: 'gpu', index: best.d.index, name: best.d.name, ...(best.d.uuid && { uuid: best.d.uuid }), freeMB: best.room } };
  }

  /** One admission attempt, atomic with respect to the others. */
  private async place(name: string, ramMB: number, needs: { on: 'cpu' | 'gpu' | 'any'; vramMB: number }, wanted: Alongside, signal?: AbortSignal): Promise<Placement> {
    signal?.throwIfAborted();
    // 'if-room': a free model slot if there is one, else beside what is loaded when the budget allows it,
    // else a slot waited for (decided again each time it wakes: what is loaded changes meanwhile)
    const vramCap = needs.on === 'cpu' ? 0 : needs.vramMB;
    const alongside = wanted === 'if-room' ? !this.fits(ramMB, vramCap, false) && this.fits(ramMB, vramCap, true) : wanted;
    const waitOrFail = (): Placement => {
      // a model loaded alongside another (an encoder consuming a renderer's frames) cannot wait for
      // that one to go: say so instead of waiting forever
      if (wanted === true) {
        // (beside another model no slot is needed: host memory or the GPU cap is what is short)
        const ramShort = this.loaded.reduce((s, m) => s + m.ramMB, 0) + ramMB > this.ramBudget;
        if (ramShort || this.vramBudget === undefined) throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: ramMB, kind: 'host', kindUpper: 'RAM', budgetMB: this.ramBudget });
        throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: vramCap, kind: 'GPU', kindUpper: 'VRAM', budgetMB: this.vramBudget });
      }
      return { wait: this.waiter(signal) };
    };
    const admit = (device: ModelDevice): Placement => {
      const slot: Admitted = { name, ramMB, vramMB: device.kind === 'gpu' ? needs.vramMB : 0, alongside, gpu: device.kind === 'gpu' ? device.index : undefined };
      this.loaded.push(slot);
      return { device, slot };
    };
    if (needs.on === 'cpu') return this.fits(ramMB, 0, alongside) ? admit(CPU) : waitOrFail();
    if (!this.fits(ramMB, needs.on === 'any' ? 0 : needs.vramMB, alongside)) return waitOrFail();
    const capped = this.vramBudget !== undefined && this.vramMB() + needs.vramMB > this.vramBudget;
    const chosen = capped ? { why: `the GPU budget of ${this.vramBudget} MB is taken` } : this.pickGpu(await this.queryGpu(), needs.vramMB);
    if ('device' in chosen) return admit(chosen.device);
    // our own models on a GPU are released in time: wait for them (a model beside them cannot)
    if (this.vramMB() > 0 && wanted !== true) return waitOrFail();
    if (needs.on === 'any') {
      this.log.info(`${name} runs on the CPU: ${chosen.why}`);
      return admit({ kind: 'cpu', reason: chosen.why });
    }
    if (chosen.roomiest) throw new AvatarError('AVATAR_ERR_GPU_MEMORY', { name, needMB: needs.vramMB, ...chosen.roomiest });
    throw new AvatarError('AVATAR_ERR_GPU_UNAVAILABLE', { name, reason: chosen.why });
  }

  private async admit(name: string, ramMB: number, needs: { on: 'cpu' | 'gpu' | 'any'; vramMB: number }, wanted: Alongside, signal?: AbortSignal): Promise<{ device: ModelDevice; slot: Admitted }> {
    if (ramMB > this.ramBudget) {
      throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: ramMB, kind: 'host', kindUpper: 'RAM', budgetMB: this.ramBudget });
    }
    // above the cap a GPU-only model can never run; one that may use the CPU goes there
    if (needs.on !== 'cpu' && this.vramBudget !== undefined && needs.vramMB > this.vramBudget) {
      if (needs.on === 'gpu') throw new AvatarError('AVATAR_ERR_RESOURCE_BUDGET', { name, needMB: needs.vramMB, kind: 'GPU', kindUpper: 'VRAM', budgetMB: this.vramBudget });
      const reason = `it needs ${needs.vramMB} MB of GPU memory, over the budget of ${this.vramBudget} MB`;
      this.log.info(`${name} runs on the CPU: ${reason}`);
      needs = { on: 'cpu', vramMB: 0 };
      const placed = await this.admit(name, ramMB, needs, wanted, signal);
      return { ...placed, device: { kind: 'cpu', reason } };
    }
    for (;;) {
      const placed = await this.exclusive(() => this.place(name, ramMB, needs, wanted, signal));
      if (!('wait' in placed)) return placed;
      await placed.wait;
    }
  }

  private releaseSlot(slot: Admitted): void {
    const i = this.loaded.indexOf(slot);
    if (i >= 0) this.loaded.splice(i, 1);
    // wake everyone: each re-checks whether it fits now, in arrival order
    for (const waiter of this.waiters.splice(0)) waiter.wake();
  }

  /**
   * Loads the plugin's model, runs `fn` with it, unloads it: also when `fn` or the load fails.
   * The model's device is chosen first and handed to load() in the context (`ctx.device`).
   * `alongside`: the model runs next to one already loaded by the caller (within the memory budget, but
   * without waiting for a model slot, which the caller holds); 'if-room': next to what is loaded when
   * the budget has room for it now, otherwise it waits for a slot as any other (a stage that may run
   * beside another, such as the face stage beside the speech, but need not).
   */
  async withModel<K extends StageKind, T>(
    plugin: StagePlugin<K>,
    ctx: Omit<LoadContext, 'device'>,
    fn: (stage: LoadedStageOf<K>) => Promise<T>,
    options: { alongside?: Alongside } = {},
  ): Promise<T> {
    const ramMB = plugin.resources.ramMB ?? 0;
    const vramMB = plugin.resources.device === 'cpu' ? 0 : (plugin.resources.vramMB ?? 0);
    const label = `${plugin.stage}/${plugin.name}`;
    // a plugin that declares no memory (a tool run as a child process, say) takes no model slot;
    // one that runs on a GPU is placed on one all the same
    const heavy = ramMB > 0 || vramMB > 0;
    let admitted: { device: ModelDevice; slot?: Admitted };
    if (heavy) admitted = await this.admit(label, ramMB, { on: plugin.resources.device, vramMB }, options.alongside ?? false, ctx.signal);
    else admitted = { device: plugin.resources.device === 'cpu' ? CPU : await this.lightDevice(label, plugin.resources.device) };
    let loaded: LoadedStageOf<K> | undefined;
    try {
      await this.snapshot(`before load ${label}`);
      loaded = await plugin.load({ ...ctx, device: admitted.device });
      await this.snapshot(`loaded ${label}`);
      return await fn(loaded);
    } finally {
      try {
        if (loaded) await loaded.unload();
      } catch (error) {
        this.log.warn(`unloading ${label} failed: ${(error as Error).message}`);
      }
      if (admitted.slot) this.releaseSlot(admitted.slot);
      await this.snapshot(`unloaded ${label}`);
    }
  }

  /** The device of a model that declares no memory: the roomiest GPU, or the CPU when it may use one. */
  private async lightDevice(name: string, on: 'gpu' | 'any'): Promise<ModelDevice> {
    const chosen = this.pickGpu(await this.queryGpu(), 0);
    if ('device' in chosen) return chosen.device;
    if (on === 'gpu') throw new AvatarError('AVATAR_ERR_GPU_UNAVAILABLE', { name, reason: chosen.why });
    return { kind: 'cpu', reason: chosen.why };
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
