import { resolvePluginOptions } from './plugin-options.js';
import type { EngineChoice, EngineOptions } from './engines.js';
import type { AnyStagePlugin, EngineLicense, PluginCheck, PluginOptionsSchema, ResourceNeeds, StageKind } from './plugin.js';
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
