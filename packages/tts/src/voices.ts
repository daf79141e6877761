import type { VoiceSettings } from '@avatar/core';

export type EngineName = 'flite' | 'festival' | 'espeak-ng';

export interface VoiceInfo {
  engine: EngineName;
  /** the engine's own voice name, as VoiceSettings.voice */
  voice: string;
  language: string;
  gender: 'female' | 'male';
  /** the engine's native output rate, measured */
  sampleRate: number;
  /** median pitch of the calibration sentence at pitch 0, measured (docs/voices.md) */
  medianPitchHz: number;
  description: string;
}

/**
 * The voices the Debian packages ship, with figures measured on this project's calibration sentence.
 * `avatar voices` lists these; `listInstalledVoices` in each engine says which are really present.
 */
export const KNOWN_VOICES: readonly VoiceInfo[] = [
  { engine: 'flite', voice: 'slt', language: 'en-US', gender: 'female', sampleRate: 16000, medianPitchHz: 166, description: 'CMU ARCTIC slt, US English female (clustergen)' },
  { engine: 'flite', voice: 'rms', language: 'en-US', gender: 'male', sampleRate: 16000, medianPitchHz: 102, description: 'CMU ARCTIC rms, US English male (clustergen)' },
  { engine: 'flite', voice: 'awb', language: 'en-US', gender: 'male', sampleRate: 16000, medianPitchHz: 128, description: 'CMU ARCTIC awb, Scottish English male (clustergen)' },
  { engine: 'flite', voice: 'kal16', language: 'en-US', gender: 'male', sampleRate: 16000, medianPitchHz: 89, description: 'kal, US English male (diphone, 16 kHz)' },
  { engine: 'flite', voice: 'kal', language: 'en-US', gender: 'male', sampleRate: 8000, medianPitchHz: 88, description: 'kal, US English male (diphone, 8 kHz)' },
  { engine: 'festival', voice: 'cmu_us_slt_arctic_hts', language: 'en-US', gender: 'female', sampleRate: 32000, medianPitchHz: 171, description: 'CMU ARCTIC slt, US English female (HTS statistical parametric)' },
  { engine: 'espeak-ng', voice: 'en-us', language: 'en-US', gender: 'male', sampleRate: 22050, medianPitchHz: 100, description: 'eSpeak NG American English (formant)' },
  { engine: 'espeak-ng', voice: 'en-us+f3', language: 'en-US', gender: 'female', sampleRate: 22050, medianPitchHz: 207, description: 'eSpeak NG American English, female variant f3' },
  { engine: 'espeak-ng', voice: 'en-us+m3', language: 'en-US', gender: 'male', sampleRate: 22050, medianPitchHz: 103, description: 'eSpeak NG American English, male variant m3' },
  { engine: 'espeak-ng', voice: 'en-gb', language: 'en-GB', gender: 'male', sampleRate: 22050, medianPitchHz: 100, description: 'eSpeak NG British English' },
  { engine: 'espeak-ng', voice: 'en-gb-x-rp', language: 'en-GB', gender: 'male', sampleRate: 22050, medianPitchHz: 100, description: 'eSpeak NG British English, received pronunciation' },
];

/** The known voices, all engines or one. */
export function listVoices(engine?: string): VoiceInfo[] {
  return KNOWN_VOICES.filter((v) => engine === undefined || v.engine === engine);
}

export function findVoice(engine: string, voice: string): VoiceInfo | undefined {
  return KNOWN_VOICES.find((v) => v.engine === engine && v.voice === voice);
}

/** The default English voice, picked by scripts/evaluate-voices.mjs (see docs/voices.md). */
export const DEFAULT_VOICE: Readonly<VoiceSettings> = Object.freeze({
  engine: 'flite',
  voice: 'rms',
  language: 'en-US',
  rate: 1,
  pitch: 0,
});

/**
 * espeak-ng's -p (0..99) against the median pitch it gives, in semitones from the default -p 50,
 * measured on en-us; pitch requests are mapped through this table.
 */
export const ESPEAK_PITCH_TABLE: ReadonlyArray<[p: number, semitones: number]> = [
  [0, -6.4],
  [25, -3.9],
  [50, 0],
  [75, 4.3],
  [99, 9.0],
];

/** The -p value closest to a shift in semitones (clamped to what -p can reach). */
export function espeakPitchParam(semitones: number): number {
  const table = ESPEAK_PITCH_TABLE;
  const first = table[0];
  const last = table[table.length - 1];
  if (!first || !last) return 50;
  if (semitones <= first[1]) return first[0];
  if (semitones >= last[1]) return last[0];
  for (let i = 1; i < table.length; i++) {
    const [p1, s1] = table[i - 1] ?? first;
    const [p2, s2] = table[i] ?? last;
    if (semitones <= s2) return Math.round(p1 + ((semitones - s1) / (s2 - s1)) * (p2 - p1));
  }
  return 50;
}
