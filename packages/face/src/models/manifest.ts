import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AvatarError } from '@avatar/core';
import type { DetectorDescriptor, LandmarkDescriptor } from './descriptor.js';

/** What models/build.mjs writes beside each .onnx file. */
export interface ModelManifest {
  name: string;
  title: string;
  file: string;
  sha256: string;
  bytes: number;
  converter: string;
  source: { package: string; version: string; files: string[]; filesSha256: Record<string, string> };
  license: { spdx: string; text: string };
  inputs: Array<{ name: string; shape: Array<number | string> }>;
  outputs: Array<{ name: string; shape: Array<number | string> }>;
  descriptor: (DetectorDescriptor & { type: 'detector' }) | (LandmarkDescriptor & { type: 'landmarks' });
  decoding: string;
}

/** The built-in models by the short names the API takes. */
export const BUILTIN_DETECTORS = { tiny: 'tiny_face_detector', ssd: 'ssd_mobilenetv1' } as const;
export const BUILTIN_LANDMARKS = { full: 'face_landmark_68', tiny: 'face_landmark_68_tiny' } as const;

/**
 * The folder the ONNX models live in: $AVATAR_MODELS_DIR, else models/cache of the checkout this
 * package sits in (found by walking up to models/build.mjs), else models/cache inside the package.
 */
export function modelsDir(): string {
  const env = process.env.AVATAR_MODELS_DIR;
  if (env) return resolve(env);
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here, i = 0; i < 8; i += 1) {
    if (existsSync(join(dir, 'models', 'build.mjs'))) return join(dir, 'models', 'cache');
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // packages/face/{src,dist}/models -> packages/face
  return join(here, '..', '..', 'models', 'cache');
}

export function resolveModelPath(path: string, dir: string): string {
  return isAbsolute(path) ? path : join(dir, path);
}

export async function readManifest(name: string, dir: string): Promise<ModelManifest> {
  const path = join(dir, `${name}.manifest.json`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new AvatarError('AVATAR_ERR_MODEL_MISSING', { name, path });
  }
  try {
    return JSON.parse(text) as ModelManifest;
  } catch (err) {
    throw new AvatarError('AVATAR_ERR_MODEL_INVALID', { name, reason: `${path} is not valid JSON (${(err as Error).message})` });
  }
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface ModelStatus {
  name: string;
  title: string;
  path: string;
  /** ok: present and matches its checksum; missing: the .onnx file is not there; checksum: it differs */
  status: 'ok' | 'missing' | 'checksum';
  sha256: string;
  bytes: number;
  source: string;
  license: string;
  inputs: ModelManifest['inputs'];
  outputs: ModelManifest['outputs'];
  manifest: ModelManifest;
}

/** Every model manifest in the models folder, with the state of its file (for `avatar doctor`). */
export function listModelManifests(options: { modelsDir?: string; verify?: boolean } = {}): ModelStatus[] {
  const dir = options.modelsDir ?? modelsDir();
  if (!existsSync(dir)) return [];
  const out: ModelStatus[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.manifest.json')).sort()) {
    let m: ModelManifest;
    try {
      m = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ModelManifest;
    } catch {
      continue;
    }
    const path = join(dir, m.file);
    let status: ModelStatus['status'] = 'ok';
    if (!existsSync(path)) status = 'missing';
    else if (options.verify !== false && sha256Hex(readFileSync(path)) !== m.sha256) status = 'checksum';
    out.push({
      name: m.name,
      title: m.title,
      path,
      status,
      sha256: m.sha256,
      bytes: m.bytes,
      source: `${m.source.package}@${m.source.version}`,
      license: m.license.spdx,
      inputs: m.inputs,
      outputs: m.outputs,
      manifest: m,
    });
  }
  return out;
}
