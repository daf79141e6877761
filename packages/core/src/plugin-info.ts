import { resolvePluginOptions } from './plugin-options.js';
import type { EngineChoice, EngineOptions } from './engines.js';
import type { AnyStagePlugin, EngineLicense, EngineVoice, PluginCheck, PluginOptionsSchema, ResourceNeeds, StageKind } from './plugin.js';
import type { PluginRegistry, RegisteredPlugin } from './registry.js';

/** What `avatar plugins` and GET /v1/plugins say about one installed engine. */
export interface PluginDescription {
  stage: StageKind;
  name: string;
  /** package name@version, or where it was registered from */
  package: string;
  apiVersion: number;
  description: string;
  /** the engine a run of this stage gets when it names none (the defaults', else the first registered) */
  default: boolean;
  resources: ResourceNeeds;
  /** the options it takes (JSON Schema), or null */
  options: PluginOptionsSchema | null;
  /** its licences with its default options, or null when it declares none */
  license: EngineLicense | null;
  defaultVoice?: { voice: string; language: string };
  /** its check() outcome, when asked for */
  check?: PluginCheck;
}

const CHECK_TIMEOUT_MS = 10_000;

/**
 * A plugin's check() outcome, never throwing: a check that throws, or takes longer than `timeoutMs`
 * (when given), is a failed one; a plugin without a check passes. `avatar doctor`, `avatar plugins`,
 * GET /v1/plugins and /readyz all ask this way.
 */
export async function checkPlugin(plugin: AnyStagePlugin, options: { timeoutMs?: number } = {}): Promise<PluginCheck> {
  if (!plugin.check) return { ok: true, detail: 'no check offered' };
  const { timeoutMs } = options;
  let timer: NodeJS.Timeout | undefined;
  try {
    if (timeoutMs === undefined) return await plugin.check();
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`took over ${timeoutMs / 1000} s`)), timeoutMs);
    });
    return await Promise.race([plugin.check(), late]);
  } catch (error) {
    return { ok: false, detail: `check failed: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    clearTimeout(timer);
  }
}

function licenseOf(entry: RegisteredPlugin, options: Readonly<Record<string, unknown>> | undefined): EngineLicense | null {
  try {
    return entry.plugin.license?.(resolvePluginOptions(entry.plugin, options, entry.source)) ?? null;
  } catch {
    return null; // a licence that needs options set: said per run
  }
}

/**
 * Every installed engine (or one stage's), described; with `check`, each engine's check() outcome too.
 * `defaults` (a coordinator's engineDefaults) say which engine runs take, and the options its licence is
 * described with.
 */
export async function describePlugins(registry: PluginRegistry, options: { stage?: StageKind; check?: boolean; defaults?: { engines: EngineChoice; engineOptions: EngineOptions } } = {}): Promise<PluginDescription[]> {
  const entries = registry.list(options.stage);
  return Promise.all(entries.map(async (entry) => {
    const { plugin } = entry;
    const named = options.defaults?.engines[plugin.stage];
    const isDefault = named !== undefined ? plugin.name === named : registry.entry(plugin.stage) === entry;
    const description: PluginDescription = {
      stage: plugin.stage,
      name: plugin.name,
      package: entry.source,
      apiVersion: plugin.apiVersion,
      description: plugin.description ?? '',
      default: isDefault,
      resources: plugin.resources,
      options: plugin.options ?? null,
      license: licenseOf(entry, isDefault ? options.defaults?.engineOptions[plugin.stage] : undefined),
      ...(plugin.defaultVoice && { defaultVoice: { voice: plugin.defaultVoice.voice, language: plugin.defaultVoice.language } }),
    };
    if (options.check) description.check = await checkPlugin(plugin, { timeoutMs: CHECK_TIMEOUT_MS });
    return description;
  }));
}

/** A voice of an installed speech engine, named as a voice setting names it. */
export interface InstalledVoice extends EngineVoice {
  /** the tts engine: a voice setting's `engine` */
  readonly engine: string;
}

/**
 * The voices every installed speech engine (or the one named) can speak with here, engine by engine in
 * the registry's order, each engine's by language; `language`: only those whose tag is it or starts with
 * it ("pt" takes pt-BR). AVATAR_ERR_PLUGIN_NOT_FOUND for an engine not installed.
 */
export async function installedVoices(registry: PluginRegistry, options: { engine?: string; language?: string } = {}): Promise<InstalledVoice[]> {
  const prefix = options.language?.toLowerCase();
  const speaks = (tag: string): boolean => !prefix || tag.toLowerCase() === prefix || tag.toLowerCase().startsWith(`${prefix}-`);
  const plugins = options.engine ? [registry.get('tts', options.engine)] : registry.list('tts').map((e) => e.plugin);
  const lists = await Promise.all(plugins.map(async (plugin) => {
    const voices = plugin.voices ? await plugin.voices().catch(() => []) : [];
    return voices.filter((v) => speaks(v.language))
      .sort((a, b) => a.language.localeCompare(b.language) || a.voice.localeCompare(b.voice))
      .map((v): InstalledVoice => ({ engine: plugin.name, ...v }));
  }));
  return lists.flat();
}
