import { createRequire } from 'node:module';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';
import { AvatarError } from './errors.js';
import type { AnyStagePlugin, PluginOptionsSchema } from './plugin.js';

// A plugin's options, checked against the JSON Schema it declares (StagePlugin.options).

const plainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

// ajv: the JSON Schema validator the HTTP server already uses through fastify; defaults are filled in,
// unknown options refused (additionalProperties is forced to false), nothing is coerced. Loaded and a
// schema compiled only when a user sets options: the two take about 100 ms of a command's start
// (50-70 ms each, measured with `node out/...` on this machine), which runs without options never pay.
let ajv: Ajv | undefined;
const compiled = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: PluginOptionsSchema): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    if (!ajv) {
      const { Ajv: AjvClass } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
      ajv = new AjvClass({ useDefaults: true, allErrors: false, strict: false });
    }
    validate = ajv.compile({ ...schema, type: 'object', additionalProperties: false });
    compiled.set(schema, validate);
  }
  return validate;
}

const JSON_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null']);

/** A property's schema as far as a registration checks it: an object whose `type`, if any, names JSON types. */
function propertyProblem(name: string, schema: unknown): string | undefined {
  if (!plainObject(schema)) return `options.${name} must be a JSON Schema object`;
  const { type } = schema;
  const types = Array.isArray(type) ? type : type === undefined ? [] : [type];
  const bad = types.find((t) => typeof t !== 'string' || !JSON_TYPES.has(t));
  return bad === undefined ? undefined : `options is not a valid JSON Schema: options.${name} has the unknown type ${JSON.stringify(bad)}`;
}

/** The options a plugin gets when none are set: each property's default. */
function defaultsOf(schema: PluginOptionsSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, property] of Object.entries(schema.properties)) {
    if (property.default !== undefined) out[name] = structuredClone(property.default);
  }
  return out;
}

/** Why a plugin's declared options schema cannot be used, or undefined when it can; the registry refuses such plugins. */
export function optionsSchemaProblem(schema: unknown): string | undefined {
  if (!plainObject(schema)) return 'options must be a JSON Schema object';
  if (schema.type !== 'object') return 'options must be a JSON Schema of type "object"';
  if (!plainObject(schema.properties)) return 'options must list its properties';
  // a cheap look here (the full schema is compiled when options are first set for the plugin)
  for (const [name, property] of Object.entries(schema.properties)) {
    const problem = propertyProblem(name, property);
    if (problem) return problem;
  }
  return undefined;
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
  if (Object.keys(options).length === 0 && !schema.required?.length) return defaultsOf(schema);
  let validate: ValidateFunction;
  try {
    validate = validatorFor(schema);
  } catch (error) {
    throw new AvatarError('AVATAR_ERR_PLUGIN_INVALID', { name: plugin.name, source, reason: `its options are not a valid JSON Schema: ${(error as Error).message}` }, { cause: error });
  }
  if (!validate(options)) {
    const first = validate.errors?.[0];
    const { option, problem, expected } = first ? describeProblem(first, schema) : { option: '(options)', problem: 'are invalid', expected: '' };
    throw new AvatarError('AVATAR_ERR_ENGINE_OPTION_INVALID', { option, stage: plugin.stage, engine: plugin.name, source, problem, expected });
  }
  return options;
}
