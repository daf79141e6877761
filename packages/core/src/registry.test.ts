import { mkdtemp, mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AvatarError } from './errors.js';
import { PLUGIN_API_VERSION } from './plugin.js';
import type { StagePlugin } from './plugin.js';
import { PluginRegistry, packageEntry } from './registry.js';
import { installedVoices } from './plugin-info.js';

const tone: StagePlugin<'tts'> = {
  name: 'tone',
  stage: 'tts',
  apiVersion: PLUGIN_API_VERSION,
  resources: { device: 'cpu' },
  async load() {
    return { async run() { throw new Error('not used here'); }, async unload() {} };
  },
};

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return (error as AvatarError).code;
  }
  return 'no error';
}

async function writePackage(root: string, name: string, pkg: Record<string, unknown>, main: string): Promise<string> {
  const dir = join(root, 'node_modules', ...name.split('/'));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name, version: '1.2.3', type: 'module', ...pkg }));
  await writeFile(join(dir, 'index.js'), main);
  return dir;
}

const pluginSource = (name: string, apiVersion = 1): string => `
export const plugins = [{
  name: ${JSON.stringify(name)}, stage: 'encode', apiVersion: ${apiVersion}, resources: { device: 'cpu' },
  async load() { return { async run() { return null; }, async unload() {} }; },
}];`;

describe('PluginRegistry', () => {
  it('registers and finds plugins by stage and name', () => {
    const registry = new PluginRegistry();
    registry.register(tone, 'test');
    expect(registry.get('tts', 'tone')).toBe(tone);
    expect(registry.find('tts')).toBe(tone);
    expect(registry.find('encode')).toBeUndefined();
    expect(registry.list('tts')).toHaveLength(1);
  });

  it('names the known engines when one is missing', () => {
    const registry = new PluginRegistry();
    registry.register(tone, 'test');
    let error: AvatarError | undefined;
    try {
      registry.get('tts', 'nope');
    } catch (e) {
      error = e as AvatarError;
    }
    expect(error?.code).toBe('AVATAR_ERR_PLUGIN_NOT_FOUND');
    expect(error?.message).toContain('installed: tone');
  });

  it('refuses malformed plugins, other API versions and duplicates', () => {
    const registry = new PluginRegistry();
    expect(codeOf(() => registry.register({ ...tone, apiVersion: 2 }))).toBe('AVATAR_ERR_PLUGIN_API_VERSION');
    expect(codeOf(() => registry.register({ ...tone, stage: 'dance' }))).toBe('AVATAR_ERR_PLUGIN_INVALID');
    expect(codeOf(() => registry.register({ ...tone, name: 'Bad Name' }))).toBe('AVATAR_ERR_PLUGIN_INVALID');
    expect(codeOf(() => registry.register({ ...tone, load: 'x' }))).toBe('AVATAR_ERR_PLUGIN_INVALID');
    for (const hook of ['prewarm', 'encodeAhead', 'checkInput']) expect(codeOf(() => registry.register({ ...tone, [hook]: 'soon' })), hook).toBe('AVATAR_ERR_PLUGIN_INVALID');
    expect(codeOf(() => registry.register({ ...tone, resources: { device: 'tpu' } }))).toBe('AVATAR_ERR_PLUGIN_INVALID');
    expect(codeOf(() => registry.register(null))).toBe('AVATAR_ERR_PLUGIN_INVALID');
    registry.register(tone, 'a');
    expect(codeOf(() => registry.register(tone, 'b'))).toBe('AVATAR_ERR_PLUGIN_DUPLICATE');
  });

  it('loads packages by name from node_modules and discovers installed ones', async () => {
    const root = await mkdtemp(join(tmpdir(), 'avatar-registry-'));
    await writePackage(root, '@acme/avatar-encoder', { avatar: { apiVersion: 1 }, exports: { '.': { import: './index.js' } } }, pluginSource('acme'));
    await writePackage(root, 'unrelated', {}, 'export const x = 1;');
    const registry = new PluginRegistry();
    const found = await registry.discover([root]);
    expect(found).toEqual([join(root, 'node_modules', '@acme', 'avatar-encoder')]);
    await registry.loadPackage('@acme/avatar-encoder', { from: [join(root, 'sub', 'dir')] });
    expect(registry.list('encode').map((e) => e.source)).toEqual(['@acme/avatar-encoder@1.2.3']);
    // loading the same folder again is a no-op, not a duplicate
    await registry.loadPackage(found[0] as string);
    expect(registry.list()).toHaveLength(1);
  });

  it('reports broken third-party packages without failing the built-ins', async () => {
    const root = await mkdtemp(join(tmpdir(), 'avatar-registry-'));
    await writePackage(root, 'good', { avatar: { apiVersion: 1 } }, pluginSource('good'));
    await writePackage(root, 'old', { avatar: { apiVersion: 0 } }, pluginSource('old', 0));
    await writePackage(root, 'noexport', { avatar: { apiVersion: 1 } }, 'export const nothing = 1;');
    await writePackage(root, 'throws', { avatar: { apiVersion: 1 } }, 'throw new Error("boom");');
    const registry = new PluginRegistry();
    const { failures } = await registry.loadAll({ builtins: ['good'], builtinFrom: [root], discoverIn: [root] });
    expect(registry.list().map((e) => e.plugin.name)).toEqual(['good']);
    expect(failures.map((f) => f.code).sort()).toEqual(['AVATAR_ERR_PLUGIN_API_VERSION', 'AVATAR_ERR_PLUGIN_INVALID', 'AVATAR_ERR_PLUGIN_INVALID']);
    expect(failures.map((f) => f.message).join('\n')).toContain('boom');
  });

  it('a package with one bad plugin registers none of them', () => {
    const registry = new PluginRegistry();
    const good = { ...tone, name: 'good' };
    expect(() => registry.registerModule({ plugins: [good, { ...tone, name: 'bad', apiVersion: 9 }] }, 'pkg@1')).toThrow(/plugin API 9/);
    expect(() => registry.registerModule({ plugins: [good, good] }, 'pkg@2')).toThrow(/two plugins register/);
    expect(registry.list()).toEqual([]);
  });

  it('a package without the "avatar" field is not a plugin package', async () => {
    const root = await mkdtemp(join(tmpdir(), 'avatar-registry-'));
    await writePackage(root, 'plain', {}, pluginSource('plain'));
    const registry = new PluginRegistry();
    await expect(registry.loadPackage('plain', { from: [root] })).rejects.toMatchObject({ code: 'AVATAR_ERR_PLUGIN_INVALID' });
    await expect(registry.loadPackage('absent', { from: [root] })).rejects.toThrow(/not installed/);
  });

  it('follows the exports map with conditions', () => {
    expect(packageEntry({ exports: { '.': { source: './src/i.ts', default: './dist/i.js' } } }, ['import', 'default'])).toBe('./dist/i.js');
    expect(packageEntry({ exports: { '.': { source: './src/i.ts', default: './dist/i.js' } } }, ['source', 'default'])).toBe('./src/i.ts');
    expect(packageEntry({ exports: './x.js' })).toBe('./x.js');
    expect(packageEntry({ main: 'lib/m.js' })).toBe('lib/m.js');
  });
});

describe('installedVoices', () => {
  const speaker = (name: string, voices: StagePlugin<'tts'>['voices']): StagePlugin<'tts'> => ({ ...tone, name, ...(voices && { voices }) });

  it('lists each speech engine\'s voices by language, filters by engine and language, and names an engine not installed', async () => {
    const registry = new PluginRegistry();
    registry.register(speaker('many', async () => [
      { voice: 'pt-br', language: 'pt-BR', gender: 'male', description: 'Portuguese (Brazil)' },
      { voice: 'af', language: 'af' },
      { voice: 'pt', language: 'pt' },
    ]), 'test');
    registry.register(speaker('silent', undefined), 'test');
    registry.register(speaker('broken', async () => { throw new Error('the program crashed'); }), 'test');
    expect((await installedVoices(registry)).map((v) => `${v.engine}:${v.voice}`)).toEqual(['many:af', 'many:pt', 'many:pt-br']);
    expect((await installedVoices(registry, { language: 'PT' })).map((v) => v.voice)).toEqual(['pt', 'pt-br']);
    expect((await installedVoices(registry, { language: 'pt-br' })).map((v) => v.voice)).toEqual(['pt-br']);
    // "p" is not a prefix of "pt" in the tag's sense
    expect(await installedVoices(registry, { language: 'p' })).toEqual([]);
    expect(await installedVoices(registry, { engine: 'silent' })).toEqual([]);
    await expect(installedVoices(registry, { engine: 'nope' })).rejects.toMatchObject({ code: 'AVATAR_ERR_PLUGIN_NOT_FOUND' });
    expect(codeOf(() => registry.register({ ...tone, name: 'odd', voices: 'many' as never }, 'test'))).toBe('AVATAR_ERR_PLUGIN_INVALID');
  });
});
