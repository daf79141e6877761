/** GPU memory as a provider reports it. The native addon (NVML) supplies one; without it there is no GPU. */
export interface GpuDeviceMemory {
  index: number;
  name: string;
  /** NVML's UUID ("GPU-..."), where the driver gives one */
  uuid?: string;
  totalMB: number;
  usedMB: number;
  freeMB: number;
}

export type GpuSnapshot =
  | { available: true; source: string; devices: GpuDeviceMemory[] }
  | { available: false; reason: string };

export interface GpuMemoryProvider {
  readonly name: string;
  query(): Promise<GpuSnapshot>;
}

/** The provider used when nothing better is installed: it says so plainly. */
export class NoGpuProvider implements GpuMemoryProvider {
  readonly name = 'none';
  constructor(private readonly reason = 'no GPU: no GPU memory provider is installed') {}
  async query(): Promise<GpuSnapshot> {
    return { available: false, reason: this.reason };
  }
}
