import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { AvatarError } from './errors.js';
import type { AnyStagePlugin, PluginOptionsSchema, StageKind } from './plugin.js';
import { STAGE_KINDS } from './plugin.js';

/** The engine picked for each stage by name, e.g. `{ lipsync: 'warp', encode: 'ffmpeg' }`; unset stages take the default. */
export type EngineChoice = Partial<Record<StageKind, string>>;

/** Options for the engine that runs each stage, e.g. `{ face: { minFaceSize: 48 } }`; checked against that engine's schema. */
export type EngineOptions = Partial<Record<StageKind, Readonly<Record<string, unknown>>>>;

/** The same rule the registry applies to engine names. */
export const ENGINE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

function configInvalid(field: string, problem: string, value: unknown, expected: string): AvatarError {
  return new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field, problem, value: JSON.stringify(value) ?? String(value), expected });
}

function isStage(value: string): value is StageKind {
  return (STAGE_KINDS as readonly string[]).includes(value);
}

function plainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks `{ stage: engineName }` from a config, a job or the environment. Which engines exist is checked when they are resolved. */
export function parseEngineChoice(value: unknown, field = 'engines'): EngineChoice {
  if (value === undefined || value === null) return {};
  if (!plainObject(value)) throw configInvalid(field, 'must be an object of stage: engine name', value, `Give e.g. {"lipsync": "warp"}; stages: ${STAGE_KINDS.join(', ')}.`);
  const out: EngineChoice = {};
  for (const [stage, name] of Object.entries(value)) {
    if (!isStage(stage)) throw configInvalid(`${field}.${stage}`, 'is not a stage', stage, `Stages: ${STAGE_KINDS.join(', ')}.`);
    if (typeof name !== 'string' || !ENGINE_NAME_PATTERN.test(name)) {
      throw configInvalid(`${field}.${stage}`, 'is not an engine name', name, 'Give the engine\'s name (lower-case letters, digits, ".", "_" or "-"); "avatar doctor" lists the installed engines.');
    }
    out[stage] = name;
  }
  return out;
}

/** Checks `{ stage: { option: value } }`; the options themselves are checked against the chosen engine's schema when it is resolved. */
export function parseEngineOptions(value: unknown, field = 'engineOptions'): EngineOptions {
  if (value === undefined || value === null) return {};
  if (!plainObject(value)) throw configInvalid(field, 'must be an object of stage: options', value, 'Give e.g. {"face": {"minFaceSize": 48}}.');
  const out: EngineOptions = {};
  for (const [stage, options] of Object.entries(value)) {
    if (!isStage(stage)) throw configInvalid(`${field}.${stage}`, 'is not a stage', stage, `Stages: ${STAGE_KINDS.join(', ')}.`);
    if (!plainObject(options)) throw configInvalid(`${field}.${stage}`, 'must be an object of option: value', options, `Give e.g. {"${stage}": {"option": 1}}.`);
    out[stage] = { ...options };
  }
  return out;
}

/** `STAGE=NAME` items (the CLI's repeatable --engine, the comma-separated AVATAR_ENGINES). */
export function parseEngineAssignments(items: readonly string[], field = '--engine'): EngineChoice {
  const raw: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw configInvalid(field, 'must be STAGE=NAME', item, `Give e.g. ${field} lipsync=warp; stages: ${STAGE_KINDS.join(', ')}.`);
    raw[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return parseEngineChoice(raw, field);
}

/**
 * `STAGE.OPTION=VALUE` items (the CLI's repeatable --engine-option). A value that reads as JSON
 * (a number, true, false, null, an array or object) is taken as that, anything else as text.
 */
export function parseEngineOptionAssignments(items: readonly string[], field = '--engine-option'): EngineOptions {
  const raw: Record<string, Record<string, unknown>> = {};
  for (const item of items) {
    const match = /^([a-z]+)\.([A-Za-z0-9_-]+)=(.*)$/s.exec(item);
    if (!match) throw configInvalid(field, 'must be STAGE.OPTION=VALUE', item, `Give e.g. ${field} face.minFaceSize=48.`);
    const [, stage = '', option = '', text = ''] = match;
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      /* plain text */
    }
    (raw[stage] ??= {})[option] = value;
  }
  return parseEngineOptions(raw, field);
}

/** Engine choices and options from a base (a config file, AVATAR_ENGINES) overlaid by a run's own, stage by stage. */
export function mergeEngineOptions(base: EngineOptions, over: EngineOptions): EngineOptions {
  const out: EngineOptions = { ...base };
  for (const stage of Object.keys(over) as StageKind[]) out[stage] = { ...base[stage], ...over[stage] };
  return out;
}

// ---- plugin options, checked against the plugin's own JSON Schema ----

// ajv: the JSON Schema validator the HTTP server already uses through fastify; defaults are filled in,
// unknown options refused (additionalProperties is forced to false), nothing is coerced.
const ajv = new Ajv({ useDefaults: true, allErrors: false, strict: false });
const compiled = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: PluginOptionsSchema): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile({ ...schema, type: 'object', additionalProperties: false });
    compiled.set(schema, validate);
  }
  return validate;
}

/** Why a plugin's declared options schema cannot be used, or undefined when it can; the registry refuses such plugins. */
export function optionsSchemaProblem(schema: unknown): string | undefined {
  if (!plainObject(schema)) return 'options must be a JSON Schema object';
  if (schema.type !== 'object') return 'options must be a JSON Schema of type "object"';
  if (!plainObject(schema.properties)) return 'options must list its properties';
  try {
    validatorFor(schema as unknown as PluginOptionsSchema);
    return undefined;
  } catch (error) {
    return `options is not a valid JSON Schema: ${(error as Error).message}`;
  }
}

function describeProblem(error: ErrorObject, schema: PluginOptionsSchema): { option: string; problem: string; expected: string } {
  const known = Object.keys(schema.properties);
  if (error.keyword === 'additionalProperties') {
    const option = String((error.params as { additionalProperty?: string }).additionalProperty);
    return { option, problem: 'is not an option of this engine', expected: known.length ? `Its options: ${known.join(', ')}.` : 'This engine takes no options.' };
  }
  if (error.keyword === 'required') {
    const option = String((error.params as { missingProperty?: string }).missingProperty);
    return { option, problem: 'is required', expected: `Give ${option}.` };
  }
  const option = error.instancePath.replace(/^\//, '').replace(/\//g, '.') || '(options)';
  const top = option.split('.')[0] ?? option;
  const description = (schema.properties[top] as { description?: unknown } | undefined)?.description;
  return { option, problem: error.message ?? 'is invalid', expected: typeof description === 'string' ? `${top}: ${description}.` : `See the engine's options ("avatar doctor").` };
}

/**
 * A plugin's options from what a user set, checked against the schema it declares and completed with
 * its defaults; AVATAR_ERR_ENGINE_OPTION_INVALID naming the engine, its package and the option.
 */
export function resolvePluginOptions(plugin: AnyStagePlugin, given: Readonly<Record<string, unknown>> | undefined, source: string): Readonly<Record<string, unknown>> {
  const schema = plugin.options;
  const options = structuredClone({ ...given });
  if (!schema) {
    const option = Object.keys(options)[0];
    if (option !== undefined) {
      throw new AvatarError('AVATAR_ERR_ENGINE_OPTION_INVALID', { option, stage: plugin.stage, engine: plugin.name, source, problem: 'is not an option of this engine', expected: 'This engine takes no options.' });
    }
    return options;
  }
  const validate = validatorFor(schema);
  if (!validate(options)) {
    const first = validate.errors?.[0];
    const { option, problem, expected } = first ? describeProblem(first, schema) : { option: '(options)', problem: 'are invalid', expected: '' };
    throw new AvatarError('AVATAR_ERR_ENGINE_OPTION_INVALID', { option, stage: plugin.stage, engine: plugin.name, source, problem, expected });
  }
  return options;
}
