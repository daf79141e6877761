import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

// Run in a fresh process: whether a native module is loaded is a property of the whole process.
const script = `
import { createRequire } from 'node:module';
const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('onnxruntime-node'));
const { plugins } = await import(${JSON.stringify(DIST)});
const afterImport = loaded();
await plugins.find((p) => p.stage === 'face').prewarm();
console.log(JSON.stringify({ afterImport, afterPrewarm: loaded() }));
`;

describe('the face package at start-up', () => {
  it('loads onnxruntime only when asked (prewarm or the stage), not on import', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').pop() ?? '{}')).toEqual({ afterImport: false, afterPrewarm: true });
  });
});
