import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { optionsSchemaProblem } from './plugin-options.js';
import { AvatarError, isAvatarError } from './errors.js';
import type { Logger } from './log.js';
import { silentLogger } from './log.js';
import type { AnyStagePlugin, StageKind, StagePlugin } from './plugin.js';
import type { JobStoreKind } from './store/open.js';
import { PLUGIN_API_VERSION, STAGE_KINDS } from './plugin.js';

export interface RegisteredPlugin {
  plugin: AnyStagePlugin;
  /** the package (name@version) or file it came from */
  source: string;
}

/** What a package says about itself in package.json under "avatar". */
export interface PluginPackageManifest {
  apiVersion: number;
}

const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

// When core itself runs from TypeScript sources (tests), load sibling packages from source too.
const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');
const DEFAULT_CONDITIONS = RUNNING_FROM_SOURCE ? ['source', 'import', 'default'] : ['import', 'default'];

function pickExport(target: unknown, conditions: readonly string[]): string | undefined {
  if (typeof target === 'string') return target;
  if (Array.isArray(target)) {
    for (const t of target) {
      const found = pickExport(t, conditions);
      if (found) return found;
    }
    return undefined;
  }
  if (target && typeof target === 'object') {
    const map = target as Record<string, unknown>;
    for (const [key, value] of Object.entries(map)) {
      if (conditions.includes(key)) {
        const found = pickExport(value, conditions);
        if (found) return found;
      }
    }
  }
  return undefined;
}

/** The main module of a package folder, following "exports" (the "." entry) or "main". */
export function packageEntry(pkg: Record<string, unknown>, conditions: readonly string[] = DEFAULT_CONDITIONS): string | undefined {
  const exp = pkg.exports;
  if (exp !== undefined) {
    const dot = typeof exp === 'object' && exp !== null && !Array.isArray(exp) && '.' in exp ? (exp as Record<string, unknown>)['.'] : exp;
    return pickExport(dot, conditions);
  }
  if (typeof pkg.main === 'string') return pkg.main;
  return 'index.js';
}

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function manifestOf(pkg: Record<string, unknown>): PluginPackageManifest | undefined {
  const field = pkg.avatar;
  if (!field || typeof field !== 'object') return undefined;
  const apiVersion = (field as Record<string, unknown>).apiVersion;
  return typeof apiVersion === 'number' ? { apiVersion } : undefined;
}

/**
 * Knows every stage engine by stage and name. Built-in engines and third-party packages register
 * through the same path: a package declares `"avatar": { "apiVersion": 1 }` in its package.json and
 * exports `plugins` from its main module.
 */
export class PluginRegistry {
  private readonly byKey = new Map<string, RegisteredPlugin>();
  /** job store kinds that packages export as `jobStores` (store/open.ts) */
  readonly jobStores: JobStoreKind[] = [];
  private readonly loadedPackages = new Set<string>();
  private readonly log: Logger;

  constructor(options: { log?: Logger } = {}) {
    this.log = options.log ?? silentLogger;
  }

  /** Validates a plugin object and adds it. Throws AVATAR_ERR_PLUGIN_* when it does not fit. */
  register(candidate: unknown, source = 'inline'): void {
    const key = this.validate(candidate, source);
    this.byKey.set(key, { plugin: candidate as AnyStagePlugin, source });
    this.log.debug(`registered ${key} from ${source}`);
  }

  /** Checks a plugin object; returns its stage/name key. */
  private validate(candidate: unknown, source: string, pending: ReadonlyMap<string, string> = new Map()): string {
    const p = candidate as Partial<Record<keyof StagePlugin, unknown>> | null;
    const name = typeof p?.name === 'string' ? p.name : '(unnamed)';
    const invalid = (reason: string): AvatarError => new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name, source, reason });
    if (!p || typeof p !== 'object') throw invalid('it is not an object');
    if (typeof p.name !== 'string' || !NAME_PATTERN.test(p.name)) throw invalid('name must be lower-case letters, digits, ".", "_" or "-"');
    if (typeof p.apiVersion !== 'number') throw invalid('apiVersion is missing');
    if (p.apiVersion !== PLUGIN_API_VERSION) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_API_VERSION', { name, source, got: p.apiVersion, supported: PLUGIN_API_VERSION });
    }
    if (typeof p.stage !== 'string' || !(STAGE_KINDS as readonly string[]).includes(p.stage)) {
      throw invalid(`stage must be one of ${STAGE_KINDS.join(', ')}`);
    }
    const resources = p.resources as { device?: unknown; ramMB?: unknown; vramMB?: unknown } | undefined;
    if (!resources || !['cpu', 'gpu', 'any'].includes(String(resources.device))) throw invalid('resources.device must be cpu, gpu or any');
    for (const key of ['ramMB', 'vramMB'] as const) {
      const v = resources[key];
      if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) throw invalid(`resources.${key} must be a number of MB`);
    }
    if (typeof p.load !== 'function') throw invalid('load must be a function');
    if (p.check !== undefined && typeof p.check !== 'function') throw invalid('check must be a function');
    if (p.voices !== undefined && typeof p.voices !== 'function') throw invalid('voices must be a function');
    if (p.license !== undefined && typeof p.license !== 'function') throw invalid('license must be a function of the options');
    for (const hook of ['prewarm', 'encodeAhead', 'checkInput'] as const) {
      if (p[hook] !== undefined && typeof p[hook] !== 'function') throw invalid(`${hook} must be a function`);
    }
    if (p.options !== undefined) {
      const problem = optionsSchemaProblem(p.options);
      if (problem) throw invalid(problem);
    }
    const voice = p.defaultVoice as { voice?: unknown; language?: unknown } | undefined;
    if (voice !== undefined && (typeof voice?.voice !== 'string' || typeof voice.language !== 'string')) throw invalid('defaultVoice must name a voice and a language');
    const key = `${p.stage}/${p.name}`;
    const existing = this.byKey.get(key)?.source ?? pending.get(key);
    if (existing !== undefined) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_DUPLICATE', { stage: p.stage, name: p.name, first: existing, second: source });
    }
    return key;
  }

  /** Registers every plugin a module exports as `plugins` (or `default.plugins`). */
  registerModule(mod: unknown, source: string): number {
    const m = mod as { plugins?: unknown; jobStores?: unknown; default?: { plugins?: unknown; jobStores?: unknown } } | null;
    const stores = m?.jobStores ?? m?.default?.jobStores;
    if (Array.isArray(stores)) {
      for (const kind of stores as unknown[]) {
        const k = kind as Partial<JobStoreKind> | null;
        if (!k || !Array.isArray(k.schemes) || typeof k.open !== 'function') {
          throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: source, source, reason: 'a jobStores entry needs schemes and open()' });
        }
        this.jobStores.push({ schemes: k.schemes, open: k.open.bind(k), source });
      }
      // a package may provide job stores only
      if ((m?.plugins ?? m?.default?.plugins) === undefined) return 0;
    }
    const list = m?.plugins ?? m?.default?.plugins;
    if (!Array.isArray(list)) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: source, source, reason: 'its main module does not export a "plugins" array' });
    }
    // all or nothing: a package with one bad plugin registers none of them
    const pending = new Map<string, string>();
    for (const plugin of list) pending.set(this.validate(plugin, source, pending), source);
    for (const plugin of list) this.register(plugin, source);
    return list.length;
  }

  /**
   * Loads a plugin package by folder path or by package name (looked up in node_modules folders
   * from each of `from`, default the current folder, upwards). Loading the same folder twice is a no-op.
   */
  async loadPackage(spec: string, options: { from?: readonly string[]; conditions?: readonly string[] } = {}): Promise<string> {
    const dir = await this.locatePackage(spec, options.from ?? [process.cwd()]);
    const real = await realpath(dir);
    if (this.loadedPackages.has(real)) return real;
    const pkg = await readJson(join(real, 'package.json'));
    const source = pkg && typeof pkg.name === 'string' ? `${pkg.name}@${String(pkg.version ?? '0.0.0')}` : real;
    if (!pkg) throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source: real, reason: 'package.json is missing or not JSON' });
    const manifest = manifestOf(pkg);
    if (!manifest) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source, reason: 'package.json has no "avatar": { "apiVersion": ... } field' });
    }
    if (manifest.apiVersion !== PLUGIN_API_VERSION) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_API_VERSION', { name: spec, source, got: manifest.apiVersion, supported: PLUGIN_API_VERSION });
    }
    const entry = packageEntry(pkg, options.conditions);
    if (!entry) throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source, reason: 'no importable entry in "exports" or "main"' });
    let mod: unknown;
    try {
      mod = await import(pathToFileURL(resolve(real, entry)).href);
    } catch (error) {
      throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source, reason: `importing ${entry} failed: ${(error as Error).message}` }, { cause: error });
    }
    this.registerModule(mod, source);
    this.loadedPackages.add(real);
    return real;
  }

  private async locatePackage(spec: string, from: readonly string[]): Promise<string> {
    if (isAbsolute(spec) || spec.startsWith('.')) {
      const dir = resolve(spec);
      if (await isDir(dir)) return dir;
      throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source: dir, reason: 'the folder does not exist' });
    }
    for (const start of from) {
      let dir = resolve(start);
      for (;;) {
        const candidate = join(dir, 'node_modules', spec);
        if (await isDir(candidate)) return candidate;
        const parent = dirname(dir);
        if (parent === dir) break;
        dir = parent;
      }
    }
    throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source: from.join(', '), reason: 'the package is not installed' });
  }

  /**
   * Finds installed plugin packages: every package in `<dir>/node_modules` (scoped ones too) whose
   * package.json has an "avatar" field. Returns their folders; load them with loadPackage.
   */
  async discover(dirs: readonly string[] = [process.cwd()]): Promise<string[]> {
    const found: string[] = [];
    for (const dir of dirs) {
      const nm = join(resolve(dir), 'node_modules');
      let names: string[];
      try {
        names = await readdir(nm);
      } catch {
        continue;
      }
      const folders: string[] = [];
      for (const name of names) {
        if (name.startsWith('.')) continue;
        if (name.startsWith('@')) {
          try {
            for (const sub of await readdir(join(nm, name))) folders.push(join(nm, name, sub));
          } catch {
            /* not a folder */
          }
        } else folders.push(join(nm, name));
      }
      // read 32 at a time, kept in folder order: one after another, the 316 packages of this repository's
      // node_modules took 77-94 ms of a run's start, 32 at a time 25-30 ms (scripts/bench-discover.mjs); all
      // at once, a large node_modules could run out of file descriptors, and a failed read finds nothing
      const manifests: (Record<string, unknown> | undefined)[] = new Array(folders.length);
      let next = 0;
      const reader = async (): Promise<void> => {
        for (let i = next++; i < folders.length; i = next++) manifests[i] = await readJson(join(folders[i] as string, 'package.json'));
      };
      await Promise.all(Array.from({ length: Math.min(32, folders.length) }, reader));
      folders.forEach((folder, i) => {
        if (manifests[i]?.avatar !== undefined) found.push(folder);
      });
    }
    return found;
  }

  /** Loads built-in package names, then every discovered package; a broken third-party package is logged, not fatal. */
  async loadAll(options: { builtins: readonly string[]; builtinFrom: readonly string[]; discoverIn?: readonly string[]; extra?: readonly string[] }): Promise<{ failures: AvatarError[] }> {
    // the search reads package.json files on libuv's threads while the built-in packages' modules are
    // compiled on this one: side by side, a run's start was some 25 ms shorter (316 packages searched)
    const discovering = this.discover(options.discoverIn ?? [process.cwd()]);
    discovering.catch(() => {});
    for (const name of options.builtins) await this.loadPackage(name, { from: options.builtinFrom });
    const failures: AvatarError[] = [];
    const candidates = [...(options.extra ?? []), ...(await discovering)];
    for (const spec of candidates) {
      try {
        await this.loadPackage(spec);
      } catch (error) {
        const err = isAvatarError(error) ? error : new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: spec, source: spec, reason: String(error) });
        failures.push(err);
        this.log.warn(err.message, { code: err.code });
      }
    }
    return { failures };
  }

  /**
   * The engine `name` of `stage`, or without a name the stage's default: the first registered for it
   * (the built-in packages load first, so their engines are the defaults).
   */
  find<K extends StageKind>(stage: K, name?: string): StagePlugin<K> | undefined {
    return this.entry(stage, name)?.plugin as StagePlugin<K> | undefined;
  }

  /** As find, with the package the engine came from. */
  entry(stage: StageKind, name?: string): RegisteredPlugin | undefined {
    if (name) return this.byKey.get(`${stage}/${name}`);
    for (const entry of this.byKey.values()) if (entry.plugin.stage === stage) return entry;
    return undefined;
  }

  /** The engine `name` of `stage`; AVATAR_ERR_PLUGIN_NOT_FOUND listing the known ones when absent. */
  get<K extends StageKind>(stage: K, name: string): StagePlugin<K> {
    const plugin = this.find(stage, name);
    if (plugin) return plugin;
    const known = this.list(stage).map((e) => e.plugin.name);
    throw new AvatarError('AVATAR_ERR_PLUGIN_NOT_FOUND', { stage, name, known: known.length ? known.join(', ') : 'none installed' });
  }

  list(stage?: StageKind): RegisteredPlugin[] {
    return [...this.byKey.values()].filter((e) => !stage || e.plugin.stage === stage);
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
