import { mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AvatarError, PLUGIN_API_VERSION, diskFullAt, isAvatarError, partialPathFor, writeWholeFile } from '@avatar/core';
import type { EngineLicense, EngineVoice, InputToCheck, PhonemeTiming, PluginCheck, RunContext, Speech, StagePlugin, TtsInput, VoiceSettings, WordTiming } from '@avatar/core';
import { CpuShare } from './cpu-share.js';
import { alignWords, estimateWords, parseFestivalWords, parseFliteWordGroups, spokenWords } from './words.js';
import { runTool, toolVersion, whichTool } from './spawn.js';
import { prepareText, stripAccents } from './text.js';
import { DEFAULT_VOICE, espeakPitchParam, ESPEAK_PITCH_TABLE, findVoice, listVoices } from './voices.js';
import type { EngineName } from './voices.js';
import { encodeWav, readWav } from './wav.js';

export const INSTALL = {
  flite: 'sudo apt-get install -y flite',
  festival: 'sudo apt-get install -y festival festvox-us-slt-hts',
  'espeak-ng': 'sudo apt-get install -y espeak-ng',
  sox: 'sudo apt-get install -y sox',
} as const;

export interface EngineOptions {
  /** the engine's executable: a name looked up on PATH or an absolute path */
  binary?: string;
  /** sox, used for pitch shifts the engine cannot make itself */
  soxBinary?: string;
  /** told each child's pid (tests use it) */
  onSpawn?: (pid: number) => void;
}

interface RenderJob {
  text: string;
  voice: VoiceSettings;
  /** where the engine writes its WAV */
  wavPath: string;
  tmpDir: string;
  binary: string;
  signal: AbortSignal;
  onSpawn?: (pid: number) => void;
  /** told each process it starts (the synthesis and any helper), for the run's CPU sharing */
  started?: (pid: number) => void;
}

/** Words to be said one by one for their phonemes (EngineSpec.wordPhones). */
interface WordPhonesJob {
  words: readonly string[];
  voice: VoiceSettings;
  /** where the engine may write the list of words (a file of its own) */
  listPath: string;
  binary: string;
  signal: AbortSignal;
  started?: (pid: number) => void;
}

interface RenderResult {
  phonemes?: PhonemeTiming[];
  /** each spoken word's times, where the engine can say */
  words?: WordTiming[];
  /** semitones still to shift after synthesis, because the engine could not */
  pitchLeft: number;
}

interface EngineSpec {
  name: EngineName;
  binary: string;
  description: string;
  /** voice names are spliced into engine arguments or Scheme code, so they must look like names */
  voicePattern: RegExp;
  render(job: RenderJob): Promise<RenderResult>;
  /**
   * Each word said alone, its phonemes (one list per word; undefined when that cannot be had): for an
   * engine that times no words itself (flite), whose render then gives its phonemes only, so that the
   * words of all the parts of a run are said in one process, not in one beside each part.
   */
  wordPhones?(job: WordPhonesJob): Promise<string[][] | undefined>;
  /** speaks a text sentence by sentence (one process each: an engine that starts quickly) */
  inParts?: boolean;
  version(binary: string): Promise<string | undefined>;
  installedVoices(binary: string): Promise<string[]>;
  /** the installed voices with their languages; default: installedVoices, described from KNOWN_VOICES */
  describedVoices?(binary: string): Promise<EngineVoice[]>;
}

/** An installed voice as KNOWN_VOICES describes it; one it does not know is taken to speak American English. */
function described(engine: EngineName, voice: string): EngineVoice {
  const known = findVoice(engine, voice);
  return known
    ? { voice, language: known.language, gender: known.gender, description: known.description }
    : { voice, language: 'en-US' };
}

function invalidVoice(field: string, problem: string, value: unknown, expected: string): AvatarError {
  return new AvatarError('AVATAR_ERR_CONFIG_INVALID', { field, problem, value: JSON.stringify(value), expected });
}

function checkVoiceSettings(spec: EngineSpec, voice: VoiceSettings): void {
  if (voice.engine !== spec.name) throw invalidVoice('voice.engine', `is not ${spec.name}`, voice.engine, `Give engine "${spec.name}" to this engine.`);
  if (!spec.voicePattern.test(voice.voice)) {
    const known = listVoices(spec.name).map((v) => v.voice).join(', ');
    throw invalidVoice('voice.voice', `is not a ${spec.name} voice name`, voice.voice, `Known voices: ${known}.`);
  }
  if (!(Number.isFinite(voice.rate) && voice.rate >= 0.25 && voice.rate <= 4)) throw invalidVoice('voice.rate', 'must be from 0.25 to 4', voice.rate, 'Give a rate from 0.25 to 4 (1 = normal).');
  if (!(Number.isFinite(voice.pitch) && voice.pitch >= -24 && voice.pitch <= 24)) throw invalidVoice('voice.pitch', 'must be from -24 to 24 semitones', voice.pitch, 'Give a pitch shift in semitones from -24 to 24 (0 = the voice\'s own).');
}

/** Phoneme timings made safe for later stages: sorted, non-overlapping, inside the audio. */
function tidyPhonemes(list: PhonemeTiming[], duration: number): PhonemeTiming[] {
  const out: PhonemeTiming[] = [];
  let t = 0;
  for (const p of list) {
    const start = Math.min(Math.max(p.start, t), duration);
    const end = Math.min(Math.max(p.end, start), duration);
    if (end > start) out.push({ phoneme: p.phoneme, start, end });
    t = end;
  }
  // engines round their times; stretch the last segment so the list covers the audio exactly
  const last = out[out.length - 1];
  if (last && duration - last.end < 0.25) last.end = duration;
  return out;
}

function cents(semitones: number): string {
  return String(Math.round(semitones * 100));
}

/**
 * The text's sentences, as the speech is made in parts, broken where flite breaks its utterances (so a
 * sentence said alone takes as long as within the whole text): after ? or ! (and a closing quote or
 * bracket) and a space; after a full stop only when the next word starts with a capital and the word
 * before is no initial or abbreviation ("U.S.", "A.", "ch.", "Dr."). Elsewhere a part would add a pause
 * (measured: "I live in the U.S. and so do you." 2.62 s whole, 2.87 s cut after "U.S.").
 */
export function sentencesOf(text: string): string[] {
  const words = text.split(/\s+/).filter(Boolean);
  const sentences: string[] = [];
  let current: string[] = [];
  for (const [k, word] of words.entries()) {
    current.push(word);
    const next = words[k + 1];
    if (next === undefined) break;
    const bare = word.replace(/["')\]]+$/, '');
    const ends = /[?!]$/.test(bare)
      || (/\.$/.test(bare) && /^["'(\[]?[A-Z]/.test(next) && !/^["'(\[]?([A-Za-z]|[A-Z][a-z]?|[a-z]{1,3}|[A-Za-z.]*\.[A-Za-z]+)\.$/.test(bare));
    if (ends) {
      sentences.push(current.join(' '));
      current = [];
    }
  }
  if (current.length > 0) sentences.push(current.join(' '));
  return sentences;
}

/** Parts made at once: flite is one thread per process, and its word-timing pass runs beside the first ones. */
const PARTS_AT_ONCE = 2;

/**
 * Sentences into parts: the first two alone (the sooner they are out, the sooner a video can start:
 * its mouth track needs about 0.7 s of speech), then runs of at least PART_CHARS characters: each part
 * is a process start (and, when this was measured, one more for its word timings), which one process per
 * sentence would pay fifteen times for a two-minute text (measured: 15 sentences one by one 1.9 s, at
 * once 1.3 s).
 */
const PART_CHARS = 150;
/**
 * Speech made so far, in seconds, past which parts taken as they come are made one at a time: the
 * first second of video needs the speech to about 3.3 s (its frames, the encoder's lookahead and the
 * mouth track's); after that the speech, some 80 times faster than real time, stays well ahead.
 * Measured on two cores, the 110 s text's first fragment on stdout: 1.28 s two at a time, 0.99 s with
 * this switch (one at a time from the start made the 10 s text's first segment later).
 */
const LEAD_SECONDS = 4;

/**
 * Speech made, in seconds, past which a run taking the parts as they come makes the rest at a lower CPU
 * priority (CpuShare): its first fragment of video (half a second, x264's lookahead and frame threads) and
 * the mouth track's 0.7 s past its last frame need about this much.
 */
const FIRST_VIDEO_SECONDS = 1.5;

/**
 * Letters and digits a second, faster than any voice here speaks them at rate 1 (flite's say 11-12): a
 * part whose earlier parts' text holds more than FIRST_VIDEO_SECONDS' worth is not needed for the first
 * second of video, and starts at the lower priority at once. (Punctuation is left out of the count: a
 * run of it takes no time to say.)
 */
const LETTERS_PER_SECOND_AT_MOST = 20;

export function partsOf(sentences: readonly string[]): string[] {
  const parts: string[] = [];
  for (const [k, sentence] of sentences.entries()) {
    const last = parts.length - 1;
    if (k <= 2 || (parts[last] as string).length >= PART_CHARS) parts.push(sentence);
    else parts[last] = `${parts[last] as string} ${sentence}`;
  }
  return parts;
}

/** A part of a speech as its engine made it (exported for tests). */
export interface MadePart {
  pcm: Int16Array;
  sampleRate: number;
  phonemes: PhonemeTiming[] | undefined;
  /** the engine's own word times; or, for an engine timing them from its words said alone, undefined */
  words: WordTiming[] | undefined;
  /** the phonemes as the engine gave them, which its words said alone are aligned to */
  enginePhonemes: PhonemeTiming[] | undefined;
}

/**
 * Each part's words timed, from the start of the whole: the engine's own times; or its words said alone
 * (`all`: every part's, in one list) aligned to its phonemes; where the list does not pair word for word
 * with the words, each part's said again on its own (`again`), so one odd word costs only its part; and
 * where that fails too, estimated from the audio.
 */
export async function timeWords(
  parts: readonly { part: MadePart; startSeconds: number }[], words: readonly (readonly string[])[], all: string[][] | undefined,
  again: (k: number) => Promise<string[][] | undefined>, estimated: (k: number) => string[],
): Promise<{ words: WordTiming[]; fromEngine: boolean }> {
  const out: WordTiming[] = [];
  let fromEngine = true;
  let at = 0;
  const paired = all?.length === words.reduce((n, list) => n + list.length, 0);
  for (const [k, { part, startSeconds }] of parts.entries()) {
    const spoken = words[k] as readonly string[];
    let timed = part.words;
    if (!timed && part.enginePhonemes) {
      const groups = paired ? all?.slice(at, at + spoken.length) : await again(k);
      if (groups?.length === spoken.length) timed = alignWords(part.enginePhonemes, spoken.map((word, j) => ({ word, phones: groups[j] as string[] })));
    }
    at += spoken.length;
    fromEngine &&= timed !== undefined;
    for (const w of timed ?? estimateWords(estimated(k), part.pcm, part.sampleRate)) out.push({ ...w, start: w.start + startSeconds, end: w.end + startSeconds });
  }
  return { words: out, fromEngine };
}

/**
 * The shared run: checks, then synthesis into a temp folder, in parts for an engine that starts quickly
 * (the first sentences, then runs of sentences; two at a time, each handed on in order as soon as it
 * and those before it are made), an optional sox pitch shift per part, then the whole written and moved
 * into place at once.
 */
async function synthesize(spec: EngineSpec, options: EngineOptions, input: TtsInput, ctx: RunContext): Promise<Speech> {
  const { voice } = input;
  checkVoiceSettings(spec, voice);
  ctx.progress(0, 'checking text');
  const { spokenText } = prepareText(input.text, voice, input.maxSeconds);
  if (ctx.signal.aborted) throw new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' });
  await mkdir(ctx.workDir, { recursive: true });
  const tmpDir = await mkdtemp(join(ctx.workDir, `.tts-${spec.name}-`));
  const partial = partialPathFor(input.outputPath);
  const binary = options.binary ?? spec.binary;
  // in parts where someone takes them as they come, or where the text is long enough for two at a time
  // to pay for the extra process starts (a 10 s text: 0.15 s whole, 0.18 s in three parts; a 100 s
  // text: 1.26 s whole, 1.01 s in parts)
  const inParts = spec.inParts === true && (input.onPart !== undefined || spokenText.length >= 3 * PART_CHARS);
  const texts = inParts ? partsOf(sentencesOf(spokenText)) : [spokenText];
  // a caller taking the parts as they come draws and encodes beside them: once the parts made are
  // LEAD_SECONDS long, one part at a time leaves it a core; before that the video waits on the speech
  const atOnce = (madeSeconds: number): number => (input.onPart && madeSeconds >= LEAD_SECONDS ? 1 : PARTS_AT_ONCE);

  // the parts stop together: a failed or too long part, or the run's cancel, stops the others
  const stop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  let spawned = false;
  // a caller taking the parts as they come draws its first second of video from the first parts: once
  // they are made, the rest runs at a lower CPU priority (on a busy machine the video goes first)
  const share = input.onPart ? new CpuShare() : undefined;
  // (the letters and digits of the parts before each part: a long first sentence is then made first,
  // the next part beside it at the lower priority; the 110 s text's first fragment 1.43 -> 1.20 s. Only
  // for the voices listed here: a voice file of one's own may speak at any speed.)
  const before: number[] = [];
  for (let k = 0, letters = 0; k < texts.length; letters += (texts[k] as string).match(/[\p{L}\p{N}]/gu)?.length ?? 0, k++) before.push(letters);
  const listed = findVoice(spec.name, voice.voice) !== undefined;
  const surelyBehind = (k: number): boolean => listed && (before[k] as number) / (LETTERS_PER_SECOND_AT_MOST * voice.rate) >= FIRST_VIDEO_SECONDS;
  // what the engine is given: flite and festival say no accents
  const said = texts.map((text) => (spec.name === 'espeak-ng' ? text : stripAccents(text)));
  const makePart = async (k: number): Promise<MadePart> => {
    const partDir = join(tmpDir, `part-${k}`);
    await mkdir(partDir);
    const raw = join(partDir, 'engine.wav');
    const shifted = join(partDir, 'shifted.wav');
    // (its processes: all of them have exited once it settles)
    const pids: number[] = [];
    try {
      const rendered = await spec.render({
        text: said[k] as string,
        voice,
        wavPath: raw,
        tmpDir: partDir,
        binary,
        signal,
        started: (pid) => {
          pids.push(pid);
          share?.add(pid, { behind: surelyBehind(k) });
        },
        // reported once the engine's first process runs: a run prepares its next stage from then on (the
        // coordinator's prewarm), using this process while the engine works in its own
        onSpawn: (pid) => {
          if (!spawned) ctx.progress(0.1, `synthesising with ${spec.name} ${voice.voice}`);
          spawned = true;
          if (++partsSpawned >= Math.min(texts.length, PARTS_AT_ONCE)) startWords();
          options.onSpawn?.(pid);
        },
      });
      const pitched = Math.abs(rendered.pitchLeft) >= 0.05;
      if (pitched) {
        await runTool(options.soxBinary ?? 'sox', [raw, '-b', '16', shifted, 'pitch', cents(rendered.pitchLeft)], {
          tool: 'sox', install: INSTALL.sox, engine: `${spec.name} (sox pitch shift)`, signal,
          onSpawn: (pid) => {
            pids.push(pid);
            share?.add(pid, { behind: surelyBehind(k) });
            options.onSpawn?.(pid);
          },
        });
      }
      let wav;
      try {
        wav = await readWav(pitched ? shifted : raw);
      } catch (error) {
        throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: spec.name, reason: `it wrote no usable WAV (${(error as Error).message})` }, { cause: error });
      }
      if (wav.channels !== 1) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: spec.name, reason: `it wrote ${wav.channels} channels, expected mono` });
      if (wav.samples.length === 0) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: spec.name, reason: 'it wrote no audio' });
      return {
        pcm: wav.samples,
        sampleRate: wav.sampleRate,
        phonemes: rendered.phonemes && tidyPhonemes(rendered.phonemes, wav.durationSeconds),
        words: rendered.words,
        enginePhonemes: rendered.phonemes,
      };
    } catch (error) {
      // an engine on a full disk writes a short file or fails with its own words: the disk is the cause
      if (isAvatarError(error, 'AVATAR_ERR_TTS_FAILED')) throw (await diskFullAt(raw, error)) ?? error;
      throw error;
    } finally {
      share?.forget(pids);
    }
  };
  const made: Promise<MadePart>[] = [];
  const start = (k: number): void => {
    if (k >= texts.length || made[k]) return;
    made[k] = makePart(k);
    // awaited in order below; a part after a failed one must not count as unhandled meanwhile
    made[k].catch(() => {});
  };
  // An engine that times words from each word said alone (flite) says the words of all the parts in one
  // process, started beside the first parts, behind them in CPU priority for a caller taking the parts
  // as they come (the words are for captions, made once the speech is whole): one process start instead
  // of one per part (each blocks this process for 10-30 ms in a server), and the parts are handed on
  // without waiting for their words.
  const partWords = said.map((text) => spokenWords(text));
  const sayWords = (words: readonly string[], name: string): Promise<string[][] | undefined> => {
    const pids: number[] = [];
    return (spec.wordPhones?.({
      words, voice, listPath: join(tmpDir, name), binary, signal,
      started: (pid) => {
        pids.push(pid);
        share?.add(pid, { behind: true });
        options.onSpawn?.(pid);
      },
    }) ?? Promise.resolve(undefined)).finally(() => share?.forget(pids));
  };
  let allWords: Promise<string[][] | undefined> | undefined;
  // (once the first parts' processes run: started before them, its own start held theirs back)
  let partsSpawned = 0;
  const startWords = (): void => {
    if (!spec.wordPhones || allWords) return;
    allWords = sayWords(partWords.flat(), 'words.txt');
    allWords.catch(() => {});
  };
  try {
    const pcm: Int16Array[] = [];
    const phonemes: PhonemeTiming[] = [];
    let samples = 0;
    let sampleRate = 0;
    let timed = true;
    const madeParts: { part: MadePart; startSeconds: number }[] = [];
    for (let k = 0; k < texts.length; k++) {
      for (let j = k; j < k + atOnce(sampleRate === 0 ? 0 : samples / sampleRate); j++) start(j);
      const part = await made[k] as MadePart;
      if (sampleRate === 0) sampleRate = part.sampleRate;
      if (part.sampleRate !== sampleRate) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: spec.name, reason: `its parts came at ${sampleRate} and ${part.sampleRate} Hz` });
      const startSeconds = samples / sampleRate;
      samples += part.pcm.length;
      // refused as soon as the parts made so far are too long
      if (samples / sampleRate > input.maxSeconds) {
        throw new AvatarError('AVATAR_ERR_INPUT_TEXT_TOO_LONG', { input: 'text', seconds: Math.round(samples / sampleRate), limit: input.maxSeconds });
      }
      const partPhonemes = part.phonemes?.map((p) => ({ ...p, start: p.start + startSeconds, end: p.end + startSeconds }));
      const shift = (list: readonly WordTiming[]): WordTiming[] => list.map((w) => ({ ...w, start: w.start + startSeconds, end: w.end + startSeconds }));
      pcm.push(part.pcm);
      if (partPhonemes) phonemes.push(...partPhonemes);
      else timed = false;
      madeParts.push({ part, startSeconds });
      if (samples / sampleRate >= FIRST_VIDEO_SECONDS) share?.yieldCpu();
      ctx.progress(0.1 + (0.8 * (k + 1)) / texts.length, `sentence ${k + 1} of ${texts.length}`);
      // (an engine's own word times go with the part; words said alone come with the whole speech)
      input.onPart?.({ index: k, pcm: part.pcm, sampleRate, startSeconds, ...(partPhonemes && { phonemes: partPhonemes }), ...(part.words && { words: shift(part.words) }) });
    }
    startWords();
    const saidAlone = await allWords;
    if (ctx.signal.aborted) throw new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' });
    const { words, fromEngine } = await timeWords(madeParts, partWords, saidAlone, (k) => sayWords(partWords[k] as string[], `words-${k}.txt`), (k) => spokenWords(texts[k] as string));
    if (ctx.signal.aborted) throw new AvatarError('AVATAR_ERR_CANCELLED', { stage: 'tts' });
    const whole = new Int16Array(samples);
    let at = 0;
    for (const chunk of pcm) {
      whole.set(chunk, at);
      at += chunk.length;
    }
    await writeWholeFile(partial, encodeWav(whole, sampleRate));
    await rename(partial, input.outputPath);
    ctx.progress(1, 'speech ready');
    const speech: Speech = {
      wavPath: input.outputPath,
      sampleRate,
      pcm: whole,
      durationSeconds: samples / sampleRate,
      spokenText,
    };
    if (timed) speech.phonemes = phonemes;
    speech.words = words;
    speech.wordTimingSource = fromEngine ? 'engine' : 'estimated';
    return speech;
  } catch (error) {
    stop.abort();
    // no engine process is left running behind the failure
    await Promise.allSettled([...made, allWords]);
    await rm(partial, { force: true });
    throw error;
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

/** The engine programs and their voices, as Debian ships them: all allow commercial use. */
const ENGINE_LICENSES: Readonly<Record<EngineName, EngineLicense>> = {
  flite: {
    code: 'MIT (runs flite: BSD-style CMU licence)', commercialUse: true,
    models: [{ name: 'flite voices (cmu_us_slt, rms, awb, kal)', license: 'BSD-style CMU licence', commercialUse: true, source: 'Debian flite' }],
  },
  festival: {
    code: 'MIT (runs festival: X11-style licence)', commercialUse: true,
    models: [{ name: 'cmu_us_slt_arctic_hts', license: 'BSD-style CMU ARCTIC / HTS licence', commercialUse: true, source: 'Debian festvox-us-slt-hts' }],
  },
  'espeak-ng': {
    code: 'MIT (runs espeak-ng: GPL-3.0-or-later)', commercialUse: true,
    models: [{ name: 'espeak-ng voices', license: 'GPL-3.0-or-later', commercialUse: true, source: 'Debian espeak-ng-data' }],
  },
};

/** What a run without a voice profile speaks with on this engine: the project's default voice, or the engine's first known one. */
function defaultVoiceOf(engine: EngineName): { voice: string; language: string } {
  const voice = engine === DEFAULT_VOICE.engine ? DEFAULT_VOICE : listVoices(engine)[0];
  if (!voice) throw new Error(`no known voice for ${engine}`);
  return { voice: voice.voice, language: voice.language };
}

function makePlugin(spec: EngineSpec, options: EngineOptions = {}): StagePlugin<'tts'> {
  const binary = options.binary ?? spec.binary;
  let listed: Promise<EngineVoice[]> | undefined;
  return {
    name: spec.name,
    stage: 'tts',
    apiVersion: PLUGIN_API_VERSION,
    description: spec.description,
    resources: { device: 'cpu', ramMB: spec.name === 'festival' ? 200 : 50 },
    defaultVoice: defaultVoiceOf(spec.name),
    license: () => ENGINE_LICENSES[spec.name],
    async check(): Promise<PluginCheck> {
      const path = await whichTool(binary);
      if (!path) return { ok: false, detail: `${spec.name} not found (${binary})`, install: INSTALL[spec.name] };
      const version = (await spec.version(binary)) ?? 'unknown version';
      const voices = await spec.installedVoices(binary).catch(() => []);
      if (voices.length === 0) return { ok: false, detail: `${spec.name} ${version} at ${path} has no voices installed`, install: INSTALL[spec.name] };
      return { ok: true, detail: `${spec.name} ${version} at ${path}; voices: ${voices.join(', ')}` };
    },
    voices(): Promise<readonly EngineVoice[]> {
      // the installed voices do not change while this runs: asked once (each ask starts the program),
      // again only after an answer of none
      listed ??= (async () => {
        if (!(await whichTool(binary))) return [];
        if (spec.describedVoices) return spec.describedVoices(binary).catch(() => []);
        return (await spec.installedVoices(binary).catch(() => [])).map((voice) => described(spec.name, voice));
      })().then((voices) => {
        if (voices.length === 0) listed = undefined;
        return voices;
      });
      return listed;
    },
    // the checks a run starts with, without the engine: the voice's settings, the text sayable and short enough
    async checkInput(input: InputToCheck<'tts'>): Promise<void> {
      checkVoiceSettings(spec, input.voice);
      prepareText(input.text, input.voice, input.maxSeconds);
    },
    async load() {
      return {
        run: (input: TtsInput, ctx: RunContext) => synthesize(spec, options, input, ctx),
        unload: async () => undefined,
      };
    },
  };
}

// ---- flite ----

/** flite voices whose pitch follows int_f0_target_mean; the rest are shifted with sox afterwards. */
const FLITE_F0_VOICES = new Set(['slt', 'awb', 'kal', 'kal16']);

/** -psdur prints one line per utterance, each timed from its own start: chain them. */
export function parseFlitePhonemes(stdout: string): PhonemeTiming[] {
  const out: PhonemeTiming[] = [];
  let offset = 0;
  for (const line of stdout.split('\n')) {
    let previous = offset;
    let lastEnd = 0;
    for (const token of line.trim().split(/\s+/)) {
      const match = /^(.+):(\d+(?:\.\d+)?)$/.exec(token);
      if (!match?.[1] || !match[2]) continue;
      const end = offset + Number(match[2]);
      out.push({ phoneme: match[1], start: previous, end });
      previous = end;
      lastEnd = end;
    }
    if (lastEnd > 0) offset = lastEnd;
  }
  return out;
}

const fliteVoiceCache = new Map<string, Promise<string[]>>();
function fliteVoices(binary: string): Promise<string[]> {
  let voices = fliteVoiceCache.get(binary);
  if (!voices) {
    voices = fliteSpec.installedVoices(binary);
    fliteVoiceCache.set(binary, voices);
    voices.catch(() => fliteVoiceCache.delete(binary));
  }
  return voices;
}

const fliteSpec: EngineSpec = {
  name: 'flite',
  binary: 'flite',
  // a process starts in a few milliseconds, and its utterances are its sentences anyway
  inParts: true,
  description: 'CMU Flite: small, fast, English voices (slt, rms, awb, kal); phoneme timings',
  voicePattern: /^[A-Za-z0-9_-]+$|^\/[\w./-]+\.flitevox$/,
  async render(job) {
    // flite falls back to its default voice for an unknown name without a word, so the installed voices
    // are asked for; beside the synthesis rather than before it (a process start, some 15 ms, less
    // before the first sound), which stops as soon as the voice proves not to be among them
    const own = new AbortController();
    const signal = AbortSignal.any([job.signal, own.signal]);
    const voiceChecked = job.voice.voice.startsWith('/') ? Promise.resolve() : fliteVoices(job.binary).then((voices) => {
      if (!voices.includes(job.voice.voice)) {
        throw invalidVoice('voice.voice', 'is not an installed flite voice', job.voice.voice, `Installed flite voices: ${voices.join(', ')}.`);
      }
    });
    voiceChecked.catch(() => own.abort());
    const textFile = join(job.tmpDir, 'text.txt');
    await writeWholeFile(textFile, `${job.text}\n`);
    const args = ['-voice', job.voice.voice];
    let pitchLeft = job.voice.pitch;
    const info = findVoice('flite', job.voice.voice);
    if (job.voice.pitch !== 0 && info && FLITE_F0_VOICES.has(info.voice)) {
      args.push('--setf', `int_f0_target_mean=${(info.medianPitchHz * 2 ** (job.voice.pitch / 12)).toFixed(1)}`);
      pitchLeft = 0;
    }
    if (job.voice.rate !== 1) args.push('--setf', `duration_stretch=${(1 / job.voice.rate).toFixed(4)}`);
    args.push('-psdur', '-f', textFile, '-o', job.wavPath);
    let stdout: string;
    try {
      const ran = await runTool(job.binary, args, {
        tool: 'flite', install: INSTALL.flite, engine: 'flite', signal,
        onSpawn: (pid) => {
          job.started?.(pid);
          job.onSpawn?.(pid);
        },
      });
      if (/error/i.test(ran.stderr)) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'flite', reason: ran.stderr.trim() });
      stdout = ran.stdout;
    } catch (error) {
      // a voice that is not installed is the cause when it stopped the synthesis (a cancel stays a cancel)
      if (!job.signal.aborted) await voiceChecked;
      throw error;
    }
    await voiceChecked;
    return { phonemes: parseFlitePhonemes(stdout), pitchLeft };
  },
  // each word said alone as a sentence of its own, for its phonemes: aligned to an utterance's timed
  // phonemes, they say when each word is spoken (flite prints no word times); twenty times faster, the
  // same phonemes for a fifth of the work (measured 0.04 s against 0.20 s)
  async wordPhones(job) {
    const wordsFile = job.listPath;
    await writeWholeFile(wordsFile, `${job.words.join('. ')}.\n`);
    return runTool(job.binary, ['-voice', job.voice.voice, '--setf', 'duration_stretch=0.05', '-ps', '-f', wordsFile, '-o', 'none'], {
      tool: 'flite', install: INSTALL.flite, engine: 'flite', signal: job.signal, ...(job.started && { onSpawn: job.started }),
    }).then(({ stdout }) => parseFliteWordGroups(stdout), () => undefined);
  },
  version: (binary) => toolVersion(binary, ['--version'], /version:\s*flite-([\w.-]+)/),
  async installedVoices(binary) {
    const { stdout } = await runTool(binary, ['-lv'], { tool: 'flite', install: INSTALL.flite, engine: 'flite' });
    return (stdout.split(':')[1] ?? '').trim().split(/\s+/).filter((v) => v && v !== 'awb_time');
  },
};

// ---- festival ----

function schemeString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** utt.save.segs writes xlabel: a '#' line, then "end-time colour phone" per segment. */
export function parseFestivalSegments(text: string): PhonemeTiming[] {
  const out: PhonemeTiming[] = [];
  let inBody = false;
  let start = 0;
  for (const line of text.split('\n')) {
    if (!inBody) {
      if (line.trim() === '#') inBody = true;
      continue;
    }
    const match = /^\s*(\d+(?:\.\d+)?)\s+\S+\s+(\S+)/.exec(line);
    if (!match?.[1] || !match[2]) continue;
    const end = Number(match[1]);
    out.push({ phoneme: match[2], start, end });
    start = end;
  }
  return out;
}

const festivalSpec: EngineSpec = {
  name: 'festival',
  binary: 'festival',
  description: 'Festival with the HTS slt voice: slower, smoother English; phoneme timings',
  voicePattern: /^[a-z0-9_]+$/,
  async render(job) {
    const segs = join(job.tmpDir, 'segments.lab');
    const wordsFile = join(job.tmpDir, 'words.tsv');
    const script = join(job.tmpDir, 'synth.scm');
    const rate = job.voice.rate;
    // HTS voices take the speed as an engine parameter; other festival voices use Duration_Stretch
    const lines = [
      `(voice_${job.voice.voice})`,
      `(if (boundp 'hts_engine_params) (set! hts_engine_params (append hts_engine_params (list (list "-r" ${rate.toFixed(4)})))))`,
      `(if (not (boundp 'hts_engine_params)) (Parameter.set 'Duration_Stretch ${(1 / rate).toFixed(4)}))`,
      `(set! utt (Utterance Text ${schemeString(job.text)}))`,
      '(utt.synth utt)',
      `(utt.save.wave utt ${schemeString(job.wavPath)} 'riff)`,
      `(utt.save.segs utt ${schemeString(segs)})`,
      // each word with its first segment's start and its last one's end (word_end reads 0 at a phrase's end)
      `(set! wordsOut (fopen ${schemeString(wordsFile)} "w"))`,
      '(mapcar (lambda (w) (format wordsOut "%s\\t%s\\t%s\\n" (item.name w) (item.feat w "R:SylStructure.daughter1.daughter1.segment_start") (item.feat w "R:SylStructure.daughtern.daughtern.segment_end"))) (utt.relation.items utt \'Word))',
      '(fclose wordsOut)',
    ];
    await writeWholeFile(script, `${lines.join('\n')}\n`);
    await runTool(job.binary, ['--batch', script], {
      tool: 'festival', install: INSTALL.festival, engine: 'festival', signal: job.signal, onSpawn: (pid) => {
        job.started?.(pid);
        job.onSpawn?.(pid);
      },
    });
    const phonemes = parseFestivalSegments(await readFile(segs, 'utf8').catch(() => ''));
    const words = parseFestivalWords(await readFile(wordsFile, 'utf8').catch(() => ''));
    // the HTS engine in festival 2.5 ignores its half-tone parameter, so pitch is shifted with sox
    return { phonemes, pitchLeft: job.voice.pitch, ...(words.length > 0 && { words }) };
  },
  version: (binary) => toolVersion(binary, ['--version'], /System:\s*([\d.]+)/),
  async installedVoices(binary) {
    const { stdout } = await runTool(binary, ['--batch', '(print (voice.list))'], { tool: 'festival', install: INSTALL.festival, engine: 'festival' });
    return (/\(([^()]*)\)/.exec(stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  },
};

// ---- espeak-ng ----

const ESPEAK_DEFAULT_WPM = 175;

const espeakSpec: EngineSpec = {
  name: 'espeak-ng',
  binary: 'espeak-ng',
  description: 'eSpeak NG: formant synthesis, very fast, over 100 languages; no phoneme timings from the command line',
  voicePattern: /^[A-Za-z0-9_-]+(\+[A-Za-z0-9_-]+)?$/,
  async render(job) {
    const textFile = join(job.tmpDir, 'text.txt');
    await writeWholeFile(textFile, `${job.text}\n`);
    const p = espeakPitchParam(job.voice.pitch);
    const reached = ESPEAK_PITCH_TABLE.find(([value]) => value === p)?.[1] ?? pitchForParam(p);
    const wpm = Math.round(ESPEAK_DEFAULT_WPM * job.voice.rate);
    const args = ['-v', job.voice.voice, '-b', '1', '-s', String(Math.max(80, Math.min(450, wpm))), '-p', String(p), '-w', job.wavPath, '-f', textFile];
    const { stderr } = await runTool(job.binary, args, {
      tool: 'espeak-ng', install: INSTALL['espeak-ng'], engine: 'espeak-ng', signal: job.signal, onSpawn: (pid) => {
        job.started?.(pid);
        job.onSpawn?.(pid);
      },
    });
    if (/voice does not exist|Failed to read voice/i.test(stderr)) throw new AvatarError('AVATAR_ERR_TTS_FAILED', { engine: 'espeak-ng', reason: stderr.trim() });
    // espeak-ng only reports phoneme events through its C library's callback, not on the command line
    return { pitchLeft: job.voice.pitch - reached };
  },
  version: (binary) => toolVersion(binary, ['--version'], /text-to-speech:\s*([\w.-]+)/),
  async installedVoices(binary) {
    return (await this.describedVoices!(binary)).map((v) => v.voice);
  },
  async describedVoices(binary) {
    const { stdout } = await runTool(binary, ['--voices'], { tool: 'espeak-ng', install: INSTALL['espeak-ng'], engine: 'espeak-ng' });
    return parseEspeakVoices(stdout);
  },
};

/** espeak-ng's language code in BCP 47's case: a region upper-case, a script title-case, private use as it is. */
function bcp47(code: string): string {
  const [language, ...rest] = code.split('-');
  let privateUse = false;
  const subtags = rest.map((part) => {
    if (privateUse || part.toLowerCase() === 'x') {
      privateUse = true;
      return part;
    }
    if (/^[a-z]{2}$/i.test(part)) return part.toUpperCase();
    if (/^[a-z]{4}$/i.test(part)) return part[0]!.toUpperCase() + part.slice(1).toLowerCase();
    return part;
  });
  return [language!.toLowerCase(), ...subtags].join('-');
}

/**
 * `espeak-ng --voices`: a header, then "Pty Language Age/Gender VoiceName File Other" per voice. The
 * language code is what -v takes; it is also the language, as a BCP 47 tag (en-us -> en-US).
 */
export function parseEspeakVoices(text: string): EngineVoice[] {
  const seen = new Map<string, EngineVoice>();
  for (const line of text.split('\n').slice(1)) {
    const [, code, ageGender, name] = line.trim().split(/\s+/);
    if (!code || seen.has(code) || !/^[A-Za-z0-9-]+$/.test(code)) continue;
    const language = bcp47(code);
    const gender = ageGender?.endsWith('/F') ? 'female' : ageGender?.endsWith('/M') ? 'male' : undefined;
    seen.set(code, { voice: code, language, ...(gender && { gender }), ...(name && { description: name.replace(/_/g, ' ') }) });
  }
  return [...seen.values()];
}

/** The semitone shift an espeak-ng -p value gives, interpolated from the measured table. */
function pitchForParam(p: number): number {
  for (let i = 1; i < ESPEAK_PITCH_TABLE.length; i++) {
    const [p1, s1] = ESPEAK_PITCH_TABLE[i - 1] ?? [0, 0];
    const [p2, s2] = ESPEAK_PITCH_TABLE[i] ?? [99, 0];
    if (p <= p2) return s1 + ((p - p1) / (p2 - p1)) * (s2 - s1);
  }
  return 0;
}

export function createFlitePlugin(options?: EngineOptions): StagePlugin<'tts'> {
  return makePlugin(fliteSpec, options);
}
export function createFestivalPlugin(options?: EngineOptions): StagePlugin<'tts'> {
  return makePlugin(festivalSpec, options);
}
export function createEspeakPlugin(options?: EngineOptions): StagePlugin<'tts'> {
  return makePlugin(espeakSpec, options);
}

export const flitePlugin = createFlitePlugin();
export const festivalPlugin = createFestivalPlugin();
export const espeakPlugin = createEspeakPlugin();

/** The tts plugin for an engine name, with options (a binary path, for instance). */
export function createTtsPlugin(engine: EngineName, options?: EngineOptions): StagePlugin<'tts'> {
  if (engine === 'flite') return createFlitePlugin(options);
  if (engine === 'festival') return createFestivalPlugin(options);
  return createEspeakPlugin(options);
}

/** Installed voice names per engine, asked of the engines themselves; an absent engine gives []. */
export async function listInstalledVoices(engine: EngineName, binary?: string): Promise<string[]> {
  const spec = engine === 'flite' ? fliteSpec : engine === 'festival' ? festivalSpec : espeakSpec;
  try {
    return await spec.installedVoices(binary ?? spec.binary);
  } catch {
    return [];
  }
}
