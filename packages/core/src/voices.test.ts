import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VoiceProfileStore } from './voices.js';

const settings = { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 };

describe('VoiceProfileStore', () => {
  it('creates, reads, lists and deletes profiles as vp-<8 hex>.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-voices-'));
    const store = new VoiceProfileStore(dir);
    const a = await store.create(settings, { name: 'Narrator' });
    expect(a.id).toMatch(/^vp-[0-9a-f]{8}$/);
    expect(await readdir(join(dir, 'voices'))).toEqual([`${a.id}.json`]);
    expect(await store.get(a.id)).toEqual(a);
    const b = await store.create({ ...settings, rate: 1.2 });
    expect((await store.list()).profiles.map((p) => p.id).sort()).toEqual([a.id, b.id].sort());
    await store.delete(a.id);
    await expect(store.get(a.id)).rejects.toMatchObject({ code: 'AVATAR_ERR_VOICE_NOT_FOUND' });
  });

  it('refuses unknown ids, path tricks and damaged files with clear codes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'avatar-voices-'));
    const store = new VoiceProfileStore(dir);
    await expect(store.get('vp-00000000')).rejects.toMatchObject({ code: 'AVATAR_ERR_VOICE_NOT_FOUND', message: 'voice profile vp-00000000 does not exist' });
    await expect(store.get('../../etc/passwd')).rejects.toMatchObject({ code: 'AVATAR_ERR_VOICE_NOT_FOUND' });
    await expect(store.delete('vp-00000000')).rejects.toMatchObject({ code: 'AVATAR_ERR_VOICE_NOT_FOUND' });
    const good = await store.create(settings);
    await writeFile(join(dir, 'voices', 'vp-deadbeef.json'), '{ torn');
    await expect(store.get('vp-deadbeef')).rejects.toMatchObject({ code: 'AVATAR_ERR_VOICE_INVALID' });
    const { profiles, damaged } = await store.list();
    expect(profiles.map((p) => p.id)).toEqual([good.id]);
    expect(damaged.map((d) => d.code)).toEqual(['AVATAR_ERR_VOICE_INVALID']);
  });

  it('refuses settings out of range', async () => {
    const store = new VoiceProfileStore(await mkdtemp(join(tmpdir(), 'avatar-voices-')));
    await expect(store.create({ ...settings, rate: 9 })).rejects.toMatchObject({ code: 'AVATAR_ERR_CONFIG_INVALID' });
    await expect(store.create({ ...settings, pitch: 40 })).rejects.toMatchObject({ code: 'AVATAR_ERR_CONFIG_INVALID' });
  });
});
