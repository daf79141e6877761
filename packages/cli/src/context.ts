import { access, mkdir, rmdir } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AvatarError,
  FileJobStore,
  NoGpuProvider,
  PipelineCoordinator,
  PluginRegistry,
  ResourceManager,
  VoiceProfileStore,
  storageError,
} from '@avatar/core';
import type { GpuMemoryProvider, Logger } from '@avatar/core';
import { DEFAULT_VOICE } from '@avatar/tts';

/** The engines that ship with avatar; they load through the same path as any third-party package. */
export const BUILTIN_PACKAGES = ['@avatar/tts', '@avatar/encode', '@avatar/face', '@avatar/lipsync'] as const;

const here = dirname(fileURLToPath(import.meta.url));

export interface ContextOptions {
  storage: string;
  log: Logger;
}

export interface CliContext {
  storageDir: string;
  registry: PluginRegistry;
  resources: ResourceManager;
  voices: VoiceProfileStore;
  store: FileJobStore;
  coordinator: PipelineCoordinator;
  pluginFailures: AvatarError[];
  log: Logger;
  close(): Promise<void>;
}

export function storageFrom(option: string | undefined): string {
  return resolve(option ?? process.env.AVATAR_STORAGE ?? 'storage');
}

async function ensureWritableStorage(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, fsConstants.W_OK);
  } catch (error) {
    // a recursive mkdir on a read-only disk says ENOENT: the nearest folder that exists says why
    const cause = (await whyNotWritable(dir)) ?? error;
    throw storageError(cause) ?? new AvatarError('AVATAR_ERR_STORAGE_NOT_WRITABLE', { path: dir, reason: (cause as NodeJS.ErrnoException).code ?? String(cause) }, { cause });
  }
}

/** The error writing into the nearest existing folder at or above `dir` gives (EROFS, EACCES...), if any. */
async function whyNotWritable(dir: string): Promise<unknown> {
  for (let at = dir; ; at = dirname(at)) {
    try {
      await access(at, fsConstants.F_OK);
    } catch {
      if (dirname(at) === at) return undefined;
      continue;
    }
    try {
      await mkdir(join(at, `.avatar-probe-${process.pid}`));
      await rmdir(join(at, `.avatar-probe-${process.pid}`));
      return undefined;
    } catch (error) {
      // named for the storage folder it was trying to make, not the probe
      return Object.assign(error as NodeJS.ErrnoException, { path: dir });
    }
  }
}

interface NativeModule {
  createNvmlMemoryProvider(): GpuMemoryProvider;
}

/** The NVML provider from the native addon when it is installed; otherwise "no GPU", said plainly. */
export async function gpuProvider(): Promise<GpuMemoryProvider> {
  const spec = '@avatar/native';
  try {
    const native = (await import(spec)) as NativeModule;
    return native.createNvmlMemoryProvider();
  } catch (error) {
    return new NoGpuProvider(`no GPU: the native addon package is not available (${(error as Error).message.split('\n')[0]})`);
  }
}

function budgetFromEnv(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: name, problem: 'must be a number of MB', value: raw, expected: 'Give a whole number of megabytes.' });
  }
  return n;
}

export async function openContext(options: ContextOptions): Promise<CliContext> {
  const storageDir = options.storage;
  await ensureWritableStorage(storageDir);
  const registry = new PluginRegistry({ log: options.log });
  const extra = (process.env.AVATAR_PLUGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const { failures } = await registry.loadAll({ builtins: BUILTIN_PACKAGES, builtinFrom: [here], discoverIn: [process.cwd()], extra });
  const vramBudgetMB = budgetFromEnv('AVATAR_VRAM_BUDGET_MB');
  const ramBudgetMB = budgetFromEnv('AVATAR_RAM_BUDGET_MB');
  const resources = new ResourceManager({
    gpu: await gpuProvider(),
    log: options.log,
    ...(vramBudgetMB !== undefined && { vramBudgetMB }),
    ...(ramBudgetMB !== undefined && { ramBudgetMB }),
  });
  const voices = new VoiceProfileStore(storageDir);
  const store = new FileJobStore({ storageDir, log: options.log });
  const coordinator = new PipelineCoordinator({ registry, resources, voices, storageDir, defaultVoice: DEFAULT_VOICE, log: options.log });
  return {
    storageDir, registry, resources, voices, store, coordinator, pluginFailures: failures, log: options.log,
    close: () => store.close(),
  };
}
