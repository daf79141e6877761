import type { AnyStagePlugin } from '@avatar/core';
import { espeakPlugin, festivalPlugin, flitePlugin } from './engines.js';
import { pitchMatchPlugin } from './match.js';

export {
  createEspeakPlugin,
  createFestivalPlugin,
  createFlitePlugin,
  createTtsPlugin,
  espeakPlugin,
  festivalPlugin,
  flitePlugin,
  INSTALL,
  listInstalledVoices,
  parseFestivalSegments,
  parseFlitePhonemes,
} from './engines.js';
export type { EngineOptions } from './engines.js';
export {
  calibrateVoices,
  CALIBRATION_SENTENCE,
  chooseVoice,
  createPitchMatchPlugin,
  MATCH_CANDIDATES,
  measureSpeaker,
  MIN_VOICED_SECONDS,
  pitchMatchPlugin,
  semitones,
} from './match.js';
export type { MatchCandidate, PitchMatchOptions, VoiceCalibration } from './match.js';
export {
  checkSayable,
  checkTextLength,
  checkTextNotEmpty,
  estimateSpeechSeconds,
  findUnsayable,
  normalizeText,
  prepareText,
  stripAccents,
} from './text.js';
export { cardinal, decimal, digits, ordinal, year } from './numbers.js';
// (where the captions' estimate needs it too)
export { countSyllables } from '@avatar/core';
export { DEFAULT_VOICE, ESPEAK_PITCH_TABLE, espeakPitchParam, findVoice, KNOWN_VOICES, listVoices } from './voices.js';
export type { EngineName, VoiceInfo } from './voices.js';
export { analyzeSpeech, pitchSpreadSemitones, resample, trackPitch } from './analysis.js';
export type { PitchTrack, SpeechAnalysis } from './analysis.js';
export { encodeWav, parseWav, readWav, toFloat } from './wav.js';
export type { WavData } from './wav.js';
export { runTool, toolVersion, whichTool } from './spawn.js';
export type { ToolResult, TtsToolOptions } from './spawn.js';

/** What the plugin registry loads from this package. */
export const plugins: readonly AnyStagePlugin[] = [flitePlugin, festivalPlugin, espeakPlugin, pitchMatchPlugin];
