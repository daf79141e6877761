#!/usr/bin/env node
// Builds the ONNX face models from the TensorFlow.js weights that @vladmandic/face-api ships,
// writing models/cache/<name>.onnx and models/cache/<name>.manifest.json.
// Offline and deterministic (same bytes every run). A model is rebuilt only when its file is
// missing, its checksum does not match its manifest, or the converter or source package changed.
//
//   node models/build.mjs            build what is missing or stale
//   node models/build.mjs --force    rebuild everything
//   node models/build.mjs --check    only verify; exit 1 when something needs building
//   node models/build.mjs --only tiny_face_detector,face_landmark_68
//   AVATAR_MODELS_DIR=/somewhere node models/build.mjs   write elsewhere
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODELS } from './lib/nets.mjs';
import { readWeights } from './lib/weights.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const SOURCE_PACKAGE = '@vladmandic/face-api';

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

/** A fingerprint of the converter itself: any change to its code rebuilds every model. */
function converterFingerprint() {
  const files = ['build.mjs', ...readdirSync(join(here, 'lib')).filter((f) => f.endsWith('.mjs')).sort().map((f) => `lib/${f}`)];
  const h = createHash('sha256');
  for (const f of files) h.update(f).update(readFileSync(join(here, f)));
  return h.digest('hex').slice(0, 16);
}

function sourcePackage() {
  const pkgJson = require.resolve(`${SOURCE_PACKAGE}/package.json`);
  const pkg = JSON.parse(readFileSync(pkgJson, 'utf8'));
  return { name: pkg.name, version: pkg.version, license: pkg.license, modelDir: join(dirname(pkgJson), 'model') };
}

function writeAtomic(path, data) {
  const tmp = `${path}.partial-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function isFresh(outDir, model, converter, source) {
  const manifestPath = join(outDir, `${model.name}.manifest.json`);
  const onnxPath = join(outDir, `${model.name}.onnx`);
  if (!existsSync(manifestPath) || !existsSync(onnxPath)) return false;
  try {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8'));
    return m.converter === converter && m.source?.version === source.version && m.sha256 === sha256(readFileSync(onnxPath));
  } catch {
    return false;
  }
}

export function buildModel(model, { outDir, converter, source }) {
  const { tensors, files } = readWeights(source.modelDir, model.sourceManifest);
  const graph = model.build(tensors);
  const bytes = graph.toBytes({
    producerVersion: converter,
    docString: `${model.title}. Converted from ${source.name} ${source.version} (${source.license}) weights ${model.sourceManifest}.`,
  });
  const manifest = {
    name: model.name,
    title: model.title,
    file: `${model.name}.onnx`,
    sha256: sha256(bytes),
    bytes: bytes.length,
    converter,
    source: {
      package: source.name,
      version: source.version,
      files: files.map((f) => `model/${f}`),
      filesSha256: Object.fromEntries(files.map((f) => [`model/${f}`, sha256(readFileSync(join(source.modelDir, f)))])),
    },
    license: {
      spdx: 'MIT',
      text:
        'Weights shipped by @vladmandic/face-api (MIT, Copyright Vladimir Mandic), a maintained fork of face-api.js ' +
        `(MIT, Copyright Vincent Muehler); ${model.origin} The ONNX graph is rebuilt from those weights by models/build.mjs (MIT).`,
    },
    inputs: model.inputs,
    outputs: model.outputs,
    descriptor: { name: model.name, path: `${model.name}.onnx`, ...model.descriptor },
    decoding: model.decodingNote,
  };
  writeAtomic(join(outDir, manifest.file), bytes);
  writeAtomic(join(outDir, `${model.name}.manifest.json`), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

export function buildAll({ outDir = defaultOutDir(), force = false, check = false, only, log = console.log } = {}) {
  const converter = converterFingerprint();
  const source = sourcePackage();
  mkdirSync(outDir, { recursive: true });
  const selected = only ? MODELS.filter((m) => only.includes(m.name)) : MODELS;
  const results = [];
  for (const model of selected) {
    if (!force && isFresh(outDir, model, converter, source)) {
      results.push({ name: model.name, status: 'cached' });
      continue;
    }
    if (check) {
      results.push({ name: model.name, status: 'stale' });
      continue;
    }
    const started = performance.now();
    const m = buildModel(model, { outDir, converter, source });
    const ms = Math.round(performance.now() - started);
    log(`models: built ${m.file} (${(m.bytes / 1024).toFixed(0)} KiB, sha256 ${m.sha256.slice(0, 12)}…) in ${ms} ms`);
    results.push({ name: model.name, status: 'built', sha256: m.sha256 });
  }
  return results;
}

export function defaultOutDir() {
  return process.env.AVATAR_MODELS_DIR ? resolve(process.env.AVATAR_MODELS_DIR) : join(here, 'cache');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const onlyIdx = args.indexOf('--only');
  const only = onlyIdx >= 0 ? (args[onlyIdx + 1] ?? '').split(',').filter(Boolean) : undefined;
  const check = args.includes('--check');
  const results = buildAll({ force: args.includes('--force'), check, only });
  const cached = results.filter((r) => r.status === 'cached').length;
  if (cached === results.length) console.log(`models: ${cached} up to date in ${defaultOutDir()}`);
  if (check && results.some((r) => r.status === 'stale')) {
    console.error(`models: not built or stale: ${results.filter((r) => r.status === 'stale').map((r) => r.name).join(', ')}`);
    process.exit(1);
  }
}
