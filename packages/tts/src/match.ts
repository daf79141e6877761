import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AvatarError, FFMPEG_INSTALL, PLUGIN_API_VERSION, atomicWriteFile, checkReadableFile, decodeAudio, isAvatarError, silentLogger } from '@avatar/core';
import type { DecodedAudio, LoadContext, RunContext, SpeakerMeasurement, StagePlugin, VoiceMatch, VoiceMatchInput, VoiceSettings } from '@avatar/core';
import { analyzeSpeech } from './analysis.js';
import type { SpeechAnalysis } from './analysis.js';
import { createTtsPlugin } from './engines.js';
import type { EngineOptions } from './engines.js';
import { runTool, whichTool } from './spawn.js';
import type { EngineName } from './voices.js';
import { toFloat } from './wav.js';

export const MIN_VOICED_SECONDS = 3;
/** only this much of a long recording is analysed: enough for stable figures, quick to decode */
const MAX_ANALYSED_SECONDS = 60;
const CALIBRATION_VERSION = 1;
export const CALIBRATION_SENTENCE =
  'When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow. ' +
  'Many people have tried to explain it, but the rainbow is still a wonder to see.';

export interface MatchCandidate {
  engine: EngineName;
  voice: string;
  language: string;
}

/** Voices a recording may be matched to, best-sounding first (order breaks near ties; docs/voices.md). */
export const MATCH_CANDIDATES: readonly MatchCandidate[] = [
  { engine: 'flite', voice: 'rms', language: 'en-US' },
  { engine: 'festival', voice: 'cmu_us_slt_arctic_hts', language: 'en-US' },
  { engine: 'flite', voice: 'kal16', language: 'en-US' },
  { engine: 'flite', voice: 'awb', language: 'en-US' },
  { engine: 'flite', voice: 'slt', language: 'en-US' },
];

export interface VoiceCalibration {
  engine: string;
  voice: string;
  medianPitchHz: number;
  syllablesPerSecond: number;
}

interface CalibrationFile {
  version: number;
  sentence: string;
  voices: Record<string, VoiceCalibration>;
}

/** A reference recording (any audio ffmpeg reads), its first minute as 16 kHz mono float samples. */
async function decodeReference(path: string, signal?: AbortSignal): Promise<DecodedAudio<Float32Array>> {
  const input = 'reference recording';
  await checkReadableFile(path, input);
  return decodeAudio(path, { sampleRate: 16000, format: 'f32', maxSeconds: MAX_ANALYSED_SECONDS, input, ...(signal && { signal }) });
}

/** Measures a speaker from a recording; refuses recordings with less than 3 s of voiced speech. */
export async function measureSpeaker(path: string, signal?: AbortSignal): Promise<SpeakerMeasurement & { analysis: SpeechAnalysis }> {
  const audio = await decodeReference(path, signal);
  const analysis = analyzeSpeech(audio.samples, audio.sampleRate);
  if (analysis.voicedSeconds < MIN_VOICED_SECONDS) {
    throw new AvatarError('AVATAR_ERR_INPUT_AUDIO_TOO_SHORT', {
      input: 'reference recording',
      seconds: Math.round(analysis.voicedSeconds * 10) / 10,
      minimum: MIN_VOICED_SECONDS,
    });
  }
  return {
    durationSeconds: round(audio.durationSeconds, 2),
    voicedSeconds: round(analysis.voicedSeconds, 2),
    medianPitchHz: round(analysis.medianPitchHz, 1),
    pitchRangeHz: [round(analysis.p10PitchHz, 1), round(analysis.p90PitchHz, 1)],
    syllablesPerSecond: round(analysis.syllablesPerSecond, 2),
    analysis,
  };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/**
 * Each candidate voice's own median pitch and speaking rate, measured once by synthesising the
 * calibration sentence and kept in `<storage>/tts/voice-calibration.json`. Voices whose engine is
 * missing are left out.
 */
export async function calibrateVoices(storageDir: string, options: { signal?: AbortSignal; candidates?: readonly MatchCandidate[]; engineOptions?: Partial<Record<EngineName, EngineOptions>> } = {}): Promise<VoiceCalibration[]> {
  const dir = join(storageDir, 'tts');
  const file = join(dir, 'voice-calibration.json');
  let cache: CalibrationFile = { version: CALIBRATION_VERSION, sentence: CALIBRATION_SENTENCE, voices: {} };
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as CalibrationFile;
    if (parsed.version === CALIBRATION_VERSION && parsed.sentence === CALIBRATION_SENTENCE && parsed.voices) cache = parsed;
  } catch {
    // no cache yet, or a damaged one: measure again
  }
  const candidates = options.candidates ?? MATCH_CANDIDATES;
  const out: VoiceCalibration[] = [];
  let changed = false;
  const signal = options.signal ?? new AbortController().signal;
  await mkdir(dir, { recursive: true });
  const tmp = await mkdtemp(join(dir, '.calibrate-'));
  try {
    for (const c of candidates) {
      const key = `${c.engine}:${c.voice}`;
      const cached = cache.voices[key];
      if (cached) {
        out.push(cached);
        continue;
      }
      const loaded = await createTtsPlugin(c.engine, options.engineOptions?.[c.engine]).load({ log: silentLogger, storageDir, signal, options: {}, device: { kind: 'cpu' } });
      try {
        const speech = await loaded.run(
          { text: CALIBRATION_SENTENCE, voice: { engine: c.engine, voice: c.voice, language: c.language, rate: 1, pitch: 0 }, outputPath: join(tmp, `${c.engine}-${c.voice}.wav`), maxSeconds: 60 },
          { signal, progress: () => undefined, log: silentLogger, workDir: tmp },
        );
        const a = analyzeSpeech(toFloat(speech.pcm), speech.sampleRate);
        const entry = { engine: c.engine, voice: c.voice, medianPitchHz: round(a.medianPitchHz, 1), syllablesPerSecond: round(a.syllablesPerSecond, 2) };
        cache.voices[key] = entry;
        out.push(entry);
        changed = true;
      } catch (error) {
        // an engine that is not installed simply is not a candidate; anything else is a real failure
        if (!(isAvatarError(error) && (error.code === 'AVATAR_ERR_TOOL_MISSING' || error.code === 'AVATAR_ERR_CONFIG_INVALID'))) throw error;
      } finally {
        await loaded.unload();
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  if (changed) await atomicWriteFile(file, `${JSON.stringify(cache, null, 2)}\n`);
  return out;
}

/** Semitones from `from` Hz to `to` Hz. */
export function semitones(from: number, to: number): number {
  return 12 * Math.log2(to / from);
}

/**
 * Picks the voice whose own pitch is nearest the speaker's (so the shift, and its artefacts, stay small),
 * then sets pitch and rate so the result lands on the speaker's median pitch and syllable rate.
 */
export function chooseVoice(measured: SpeakerMeasurement, calibrations: readonly VoiceCalibration[], candidates: readonly MatchCandidate[] = MATCH_CANDIDATES): VoiceMatch {
  const usable = calibrations.filter((c) => c.medianPitchHz > 0);
  if (usable.length === 0) {
    throw new AvatarError('AVATAR_ERR_TOOL_MISSING', { tool: 'a speech engine (flite or festival)', install: 'sudo apt-get install -y flite festival festvox-us-slt-hts' });
  }
  // earlier candidates sound better: half a semitone of distance per place in the list breaks near ties
  const score = (c: VoiceCalibration): number => {
    const rank = candidates.findIndex((k) => k.engine === c.engine && k.voice === c.voice);
    return Math.abs(semitones(c.medianPitchHz, measured.medianPitchHz)) + 0.5 * (rank < 0 ? candidates.length : rank);
  };
  const best = [...usable].sort((a, b) => score(a) - score(b))[0] ?? usable[0];
  if (!best) throw new AvatarError('AVATAR_ERR_INTERNAL', { reason: 'no calibrated voice' });
  const pitch = round(Math.max(-12, Math.min(12, semitones(best.medianPitchHz, measured.medianPitchHz))), 1);
  const rawRate = best.syllablesPerSecond > 0 && measured.syllablesPerSecond > 0 ? measured.syllablesPerSecond / best.syllablesPerSecond : 1;
  const rate = round(Math.max(0.5, Math.min(2, rawRate)), 2);
  const language = candidates.find((k) => k.engine === best.engine && k.voice === best.voice)?.language ?? 'en-US';
  const settings: VoiceSettings = { engine: best.engine, voice: best.voice, language, rate, pitch };
  const [p10, p90] = measured.pitchRangeHz;
  const reason =
    `The recording's median pitch is ${Math.round(measured.medianPitchHz)} Hz (10th-90th percentile ${Math.round(p10)}-${Math.round(p90)} Hz) ` +
    `at ${measured.syllablesPerSecond.toFixed(1)} syllables per second. The nearest voice is ${best.engine} ${best.voice} ` +
    `(${Math.round(best.medianPitchHz)} Hz, ${best.syllablesPerSecond.toFixed(1)} syllables/s), so pitch is shifted ${pitch >= 0 ? '+' : ''}${pitch} semitones ` +
    `and the rate set to ${rate}.`;
  return { settings, measured, reason };
}

export interface PitchMatchOptions {
  candidates?: readonly MatchCandidate[];
  engineOptions?: Partial<Record<EngineName, EngineOptions>>;
}

export function createPitchMatchPlugin(options: PitchMatchOptions = {}): StagePlugin<'voice'> {
  return {
    name: 'pitch-match',
    stage: 'voice',
    apiVersion: PLUGIN_API_VERSION,
    description: 'Voice matching (not neural cloning): measures pitch and speaking rate and picks the nearest engine voice',
    resources: { device: 'cpu', ramMB: 100 },
    // measures with the project's own code; decodes with ffmpeg and speaks calibration sentences with the tts engines
    license: () => ({ code: 'MIT (runs ffmpeg and the speech engines)', commercialUse: true, models: [] }),
    async check() {
      const path = await whichTool('ffmpeg');
      return path ? { ok: true, detail: `ffmpeg at ${path}` } : { ok: false, detail: 'ffmpeg not found', install: FFMPEG_INSTALL };
    },
    async load(loadCtx: LoadContext) {
      return {
        async run(input: VoiceMatchInput, ctx: RunContext): Promise<VoiceMatch> {
          ctx.progress(0, 'measuring the recording');
          const { analysis: _analysis, ...measured } = await measureSpeaker(input.referencePath, ctx.signal);
          ctx.progress(0.4, 'measuring the voices');
          const calibrations = await calibrateVoices(loadCtx.storageDir, { signal: ctx.signal, ...options });
          const match = chooseVoice(measured, calibrations, options.candidates);
          ctx.log.info(`voice match: ${match.reason}`);
          ctx.progress(1, 'voice chosen');
          return match;
        },
        unload: async () => undefined,
      };
    },
  };
}

export const pitchMatchPlugin = createPitchMatchPlugin();
