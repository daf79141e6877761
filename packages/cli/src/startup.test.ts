import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

// A fresh process: which native modules a process has loaded is a property of the whole process.
const script = `
import { createRequire } from 'node:module';
await import(${JSON.stringify(MAIN)});
const heavy = ['onnxruntime-node', '/sharp/', '/fastify/'];
console.log(JSON.stringify(heavy.filter((name) => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes(name)))));
`;

describe('the CLI at start-up', () => {
  it('loads no image library, inference runtime or HTTP server until a command needs it', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out.trim().split('\n').pop() ?? 'null')).toEqual([]);
  });
});

describe('the CLI whose reader goes away', () => {
  it('stops quietly when stdout is closed early (`avatar inspect --help | head -1`)', async () => {
    const BIN = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
    const child = spawn(process.execPath, [BIN, 'inspect', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    // (the reader takes nothing and goes)
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(code).toBe(0);
  });
});

