import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AvatarError, isAvatarError } from './errors.js';
import { atomicWriteFile, ensureDir } from './fsutil.js';
import type { SpeakerMeasurement, VoiceSettings } from './plugin.js';

export interface VoiceProfile extends VoiceSettings {
  id: string;
  name: string;
  createdAt: string;
  /** 'manual' when made from settings, 'matched' when measured from a reference recording */
  origin: 'manual' | 'matched';
  /** the reference recording's figures, for matched profiles */
  measured?: SpeakerMeasurement;
  reason?: string;
}

export const VOICE_ID_PATTERN = /^vp-[0-9a-f]{8}$/;

function checkSettings(s: Partial<VoiceSettings>, id: string): VoiceSettings {
  const bad = (reason: string): AvatarError => new AvatarError('AVATAR_ERR_VOICE_INVALID', { id, reason });
  if (typeof s.engine !== 'string' || !s.engine) throw bad('engine is missing');
  if (typeof s.voice !== 'string' || !s.voice) throw bad('voice is missing');
  if (typeof s.language !== 'string' || !s.language) throw bad('language is missing');
  if (typeof s.rate !== 'number' || !(s.rate >= 0.25 && s.rate <= 4)) throw bad('rate must be between 0.25 and 4');
  if (typeof s.pitch !== 'number' || !(s.pitch >= -24 && s.pitch <= 24)) throw bad('pitch must be between -24 and 24 semitones');
  return { engine: s.engine, voice: s.voice, language: s.language, rate: s.rate, pitch: s.pitch };
}

/** Voice profiles as `<storage>/voices/vp-<8 hex>.json`. */
export class VoiceProfileStore {
  readonly dir: string;

  constructor(storageDir: string) {
    this.dir = join(storageDir, 'voices');
  }

  async create(settings: VoiceSettings, extra: { name?: string; measured?: SpeakerMeasurement; reason?: string } = {}): Promise<VoiceProfile> {
    const id = `vp-${randomBytes(4).toString('hex')}`;
    const clean = (() => {
      try {
        return checkSettings(settings, id);
      } catch (error) {
        const reason = (error as AvatarError).params?.reason;
        throw new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field: 'voice settings', problem: String(reason), value: JSON.stringify(settings), expected: 'Give an engine, a voice, a language, a rate from 0.25 to 4 and a pitch from -24 to 24.' });
      }
    })();
    const profile: VoiceProfile = {
      id,
      name: extra.name ?? `${clean.engine} ${clean.voice}`,
      createdAt: new Date().toISOString(),
      ...clean,
      origin: extra.measured ? 'matched' : 'manual',
      ...(extra.measured && { measured: extra.measured }),
      ...(extra.reason && { reason: extra.reason }),
    };
    await ensureDir(this.dir);
    await atomicWriteFile(join(this.dir, `${id}.json`), `${JSON.stringify(profile, null, 2)}\n`);
    return profile;
  }

  async get(id: string): Promise<VoiceProfile> {
    if (!VOICE_ID_PATTERN.test(id)) throw new AvatarError('AVATAR_ERR_VOICE_NOT_FOUND', { id });
    let text: string;
    try {
      text = await readFile(join(this.dir, `${id}.json`), 'utf8');
    } catch {
      throw new AvatarError('AVATAR_ERR_VOICE_NOT_FOUND', { id });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new AvatarError('AVATAR_ERR_VOICE_INVALID', { id, reason: `not JSON (${(error as Error).message})` });
    }
    if (!parsed || typeof parsed !== 'object') throw new AvatarError('AVATAR_ERR_VOICE_INVALID', { id, reason: 'not a JSON object' });
    const profile = parsed as VoiceProfile;
    checkSettings(profile, id);
    return { ...profile, id };
  }

  /** Every readable profile, newest first; damaged files are reported in `damaged`. */
  async list(): Promise<{ profiles: VoiceProfile[]; damaged: AvatarError[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return { profiles: [], damaged: [] };
    }
    const profiles: VoiceProfile[] = [];
    const damaged: AvatarError[] = [];
    for (const name of names) {
      const id = name.replace(/\.json$/, '');
      if (!VOICE_ID_PATTERN.test(id) || !name.endsWith('.json')) continue;
      try {
        profiles.push(await this.get(id));
      } catch (error) {
        if (isAvatarError(error)) damaged.push(error);
      }
    }
    profiles.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
    return { profiles, damaged };
  }

  async delete(id: string): Promise<void> {
    if (!VOICE_ID_PATTERN.test(id)) throw new AvatarError('AVATAR_ERR_VOICE_NOT_FOUND', { id });
    try {
      await rm(join(this.dir, `${id}.json`));
    } catch {
      throw new AvatarError('AVATAR_ERR_VOICE_NOT_FOUND', { id });
    }
  }
}
