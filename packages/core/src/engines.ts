import { AvatarError } from './errors.js';
import type { StageKind } from './stage-kinds.js';
import { STAGE_KINDS } from './stage-kinds.js';

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
