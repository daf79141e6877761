import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DIST = fileURLToPath(new URL('../dist/index.js', import.meta.url));

// Run in a fresh process: whether a native module is loaded is a property of the whole process.
const script = `
import { createRequire } from 'node:module';
const loaded = () => ['onnxruntime-node', '/sharp/'].filter((name) => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes(name)));
const { plugins } = await import(${JSON.stringify(DIST)});
const afterImport = loaded();
await plugins.find((p) => p.stage === 'face').prewarm();
console.log(JSON.stringify({ afterImport, afterPrewarm: loaded() }));
`;

describe('the face package at start-up', () => {
  it('loads onnxruntime and sharp only when asked (prewarm or the stage), not on import', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').pop() ?? '{}')).toEqual({ afterImport: [], afterPrewarm: ['onnxruntime-node', '/sharp/'] });
  });

  it('keeps the runtime from reporting usage: no database in the home folder, no log file in /tmp', () => {
    const home = mkdtempSync(join(tmpdir(), 'avatar-home-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
      delete env.ORT_DISABLE_TELEMETRY;
      delete env.XDG_CACHE_HOME;
      const loadModels = `
const { plugins } = await import(${JSON.stringify(DIST)});
const silent = { debug() {}, info() {}, warn() {}, error() {} };
const face = await plugins.find((p) => p.stage === 'face').load({ log: silent, storageDir: ${JSON.stringify(home)}, options: {}, device: { kind: 'cpu' } });
await face.unload();
console.log(process.pid);
`;
      const pid = execFileSync(process.execPath, ['--input-type=module', '-e', loadModels], { encoding: 'utf8', env }).trim().split('\n').pop();
      expect(Number(pid)).toBeGreaterThan(0);
      expect(existsSync(join(home, '.cache', 'Microsoft'))).toBe(false);
      expect(existsSync(`/tmp/mat-debug-${pid}.log`)).toBe(false);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
