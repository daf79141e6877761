import { access, mkdir, readFile, rmdir } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  AvatarError,
  NoGpuProvider,
  PipelineCoordinator,
  PluginRegistry,
  ResourceManager,
  VoiceProfileStore,
  mergeEngineOptions,
  parseEngineAssignments,
  parseEngineChoice,
  parseEngineOptions,
  isAvatarError,
  openJobStore,
  storageError,
  unavailableStore,
} from '@avatar/core';
import type { EngineChoice, EngineOptions, GpuMemoryProvider, JobStore, Logger } from '@avatar/core';

/** The engines that ship with avatar; they load through the same path as any third-party package. */
export const BUILTIN_PACKAGES = ['@avatar/tts', '@avatar/encode', '@avatar/face', '@avatar/lipsync', '@avatar/queue-redis'] as const;

const here = dirname(fileURLToPath(import.meta.url));

export interface ContextOptions {
  storage: string;
  /** the job store's URL (--store, AVATAR_STORE); none: the file store in the storage folder */
  store?: string;
  log: Logger;
  /** a long-running service (serve, worker): its live runs leave an encoder started for the next (closed with it) */
  service?: boolean;
}

export interface CliContext {
  storageDir: string;
  registry: PluginRegistry;
  resources: ResourceManager;
  voices: VoiceProfileStore;
  store: JobStore;
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

/** The settings file: $AVATAR_CONFIG, else `<storage>/config.json` when there is one. */
export function configPathFor(storageDir: string, env: NodeJS.ProcessEnv = process.env): { path: string; required: boolean } {
  const named = env.AVATAR_CONFIG?.trim();
  return named ? { path: resolve(named), required: true } : { path: join(storageDir, 'config.json'), required: false };
}

/**
 * Engine defaults for every run of this process (CLI, worker, server): the settings file's
 * `engines` and `engineOptions`, then AVATAR_ENGINES (`stage=name,...`) over them. A run's own
 * choices (flags, a job's params.config) go over these.
 */
export async function engineDefaults(storageDir: string, env: NodeJS.ProcessEnv = process.env): Promise<{ engines: EngineChoice; engineOptions: EngineOptions; commercialSafe: boolean }> {
  const { path, required } = configPathFor(storageDir, env);
  let engines: EngineChoice = {};
  let engineOptions: EngineOptions = {};
  let commercialSafe = false;
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (required || (error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `settings file ${path}`, problem: 'cannot be read', value: (error as NodeJS.ErrnoException).code ?? String(error), expected: 'Give a readable JSON file (AVATAR_CONFIG), or unset AVATAR_CONFIG.' });
    }
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `settings file ${path}`, problem: 'is not JSON', value: (error as Error).message, expected: 'Write it as a JSON object, e.g. {"engines": {"lipsync": "warp"}}.' });
    }
    const known = ['engines', 'engineOptions', 'commercialSafe'];
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `settings file ${path}`, problem: 'is not a JSON object', value: typeof parsed, expected: `Give an object with ${known.join(' and ')}.` });
    }
    const raw = parsed as Record<string, unknown>;
    const unknown = Object.keys(raw).find((k) => !known.includes(k));
    if (unknown !== undefined) {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `${unknown} in ${path}`, problem: 'is not a setting of the settings file', value: unknown, expected: `Known settings: ${known.join(', ')}.` });
    }
    engines = parseEngineChoice(raw.engines, `engines in ${path}`);
    engineOptions = parseEngineOptions(raw.engineOptions, `engineOptions in ${path}`);
    if (raw.commercialSafe !== undefined && typeof raw.commercialSafe !== 'boolean') {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: `commercialSafe in ${path}`, problem: 'must be true or false', value: JSON.stringify(raw.commercialSafe), expected: 'Give true or false.' });
    }
    commercialSafe = raw.commercialSafe === true;
  }
  const safe = env.AVATAR_COMMERCIAL_SAFE?.trim();
  if (safe) {
    if (!['0', '1', 'true', 'false'].includes(safe)) {
      throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'AVATAR_COMMERCIAL_SAFE', problem: 'must be 1 or 0', value: safe, expected: 'Set AVATAR_COMMERCIAL_SAFE=1 to refuse engines not cleared for commercial use.' });
    }
    // it can require commercial safety, never lift what the settings file requires
    commercialSafe ||= safe === '1' || safe === 'true';
  }
  const fromEnv = (env.AVATAR_ENGINES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (fromEnv.length) engines = { ...engines, ...parseEngineAssignments(fromEnv, 'AVATAR_ENGINES') };
  return { engines, engineOptions: mergeEngineOptions({}, engineOptions), commercialSafe };
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
  const defaults = await engineDefaults(storageDir);
  // opened for every command, but a store that cannot be opened only stops those that use it
  let store: JobStore;
  try {
    store = await openJobStore(options.store ?? process.env.AVATAR_STORE, { storageDir, log: options.log, kinds: registry.jobStores });
  } catch (error) {
    if (!isAvatarError(error, 'AVATAR_ERR_STORE_UNSUPPORTED') && !isAvatarError(error, 'AVATAR_ERR_CONFIG_INVALID')) throw error;
    store = unavailableStore(error);
  }
  const standby = options.service ? new AbortController() : undefined;
  const coordinator = new PipelineCoordinator({ registry, resources, voices, storageDir, ...defaults, log: options.log, ...(standby && { encoderStandby: standby.signal }) });
  return {
    storageDir, registry, resources, voices, store, coordinator, pluginFailures: failures, log: options.log,
    close: () => {
      standby?.abort();
      return store.close();
    },
  };
}
