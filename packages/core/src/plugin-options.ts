import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { AvatarError } from './errors.js';
import type { AnyStagePlugin, PluginOptionsSchema } from './plugin.js';

// A plugin's options, checked against the JSON Schema it declares (StagePlugin.options).

const plainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

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
