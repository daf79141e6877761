import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAvatarError, silentLogger } from '@avatar/core';
import type { RunContext, Speech, SpeechPart, StagePlugin, VoiceSettings } from '@avatar/core';
import { analyzeSpeech } from './analysis.js';
import { createTtsPlugin, parseEspeakVoices, parseFlitePhonemes, partsOf, sentencesOf, timeWords } from './engines.js';
import type { MadePart } from './engines.js';
import { spokenWords } from './words.js';
import { plugins } from './index.js';
import { runTool } from './spawn.js';
import { estimateSpeechSeconds } from './text.js';
import { DEFAULT_VOICE, listVoices } from './voices.js';
import type { EngineName } from './voices.js';
import { toFloat } from './wav.js';

let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-tts-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function ctx(signal = new AbortController().signal): RunContext {
  return { signal, progress: () => undefined, log: silentLogger, workDir: join(dir, 'work') };
}

async function speak(plugin: StagePlugin<'tts'>, voice: VoiceSettings, text: string, name: string, signal?: AbortSignal): Promise<Speech> {
  const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
  try {
    return await loaded.run({ text, voice, outputPath: join(dir, name), maxSeconds: 60 }, ctx(signal));
  } finally {
    await loaded.unload();
  }
}

const SENTENCE = 'The quick brown fox jumps over the lazy dog, and then it runs away.';

const ENGINES: Array<{ engine: EngineName; voice: string; rate: number }> = [
  { engine: 'flite', voice: 'slt', rate: 16000 },
  { engine: 'festival', voice: 'cmu_us_slt_arctic_hts', rate: 32000 },
  { engine: 'espeak-ng', voice: 'en-us', rate: 22050 },
];

describe.each(ENGINES)('$engine', ({ engine, voice, rate }) => {
  const plugin = createTtsPlugin(engine);
  const settings: VoiceSettings = { engine, voice, language: 'en-US', rate: 1, pitch: 0 };
  let normal: Speech;

  beforeAll(async () => {
    normal = await speak(plugin, settings, SENTENCE, `${engine}-normal.wav`);
  });

  it('says when each word is spoken: every word once, in order, inside the audio', () => {
    const words = normal.words ?? [];
    expect(words.map((w) => w.word.toLowerCase())).toEqual(SENTENCE.toLowerCase().replace(/[.,]/g, '').split(' '));
    expect(normal.wordTimingSource).toBe(engine === 'espeak-ng' ? 'estimated' : 'engine');
    for (let k = 0; k < words.length; k++) {
      expect(words[k]!.end).toBeGreaterThanOrEqual(words[k]!.start);
      expect(words[k]!.end).toBeLessThanOrEqual(normal.durationSeconds + 0.01);
      if (k > 0) expect(words[k]!.start).toBeGreaterThanOrEqual(words[k - 1]!.end - 1e-9);
    }
    // the comma's pause falls between "dog" and "and", not inside a word (the engines that time words)
    const dog = words.findIndex((w) => w.word === 'dog');
    if (engine !== 'espeak-ng') expect(words[dog + 1]!.start - words[dog]!.end).toBeGreaterThan(0.05);
  });

  it('is exported as a tts plugin and finds its binary', async () => {
    expect(plugins.some((p) => p.name === engine && p.stage === 'tts')).toBe(true);
    const check = await plugin.check?.();
    expect(check?.ok).toBe(true);
    expect(check?.detail).toMatch(new RegExp(`${engine} .*at /`));
  });

  it('writes a mono 16-bit WAV at the native rate, plausible in length and not silent', async () => {
    const bytes = await readFile(normal.wavPath);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('RIFF');
    expect(bytes.subarray(8, 12).toString('latin1')).toBe('WAVE');
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getUint16(22, true)).toBe(1); // channels
    expect(view.getUint32(24, true)).toBe(rate);
    expect(view.getUint16(34, true)).toBe(16);
    expect(normal.sampleRate).toBe(rate);
    // 17 syllables with one pause: between 2.5 and 7 seconds for any sane voice
    expect(normal.durationSeconds).toBeGreaterThan(2.5);
    expect(normal.durationSeconds).toBeLessThan(7);
    expect(normal.pcm.length).toBe(Math.round(normal.durationSeconds * rate));
    let peak = 0;
    for (const s of normal.pcm) peak = Math.max(peak, Math.abs(s));
    expect(peak).toBeGreaterThan(3000);
    expect(normal.spokenText).toBe(SENTENCE);
    // nothing left behind but the output
    expect((await readdir(dir)).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('speaks faster at rate 2', async () => {
    const fast = await speak(plugin, { ...settings, rate: 2 }, SENTENCE, `${engine}-fast.wav`);
    expect(fast.durationSeconds).toBeLessThan(normal.durationSeconds * 0.75);
  });

  it('raises the measured pitch when pitch goes up', async () => {
    const up = await speak(plugin, { ...settings, pitch: 4 }, SENTENCE, `${engine}-up.wav`);
    const before = analyzeSpeech(toFloat(normal.pcm), normal.sampleRate).medianPitchHz;
    const after = analyzeSpeech(toFloat(up.pcm), up.sampleRate).medianPitchHz;
    // +4 semitones is x1.26; allow for the engines' own intonation changes
    expect(after / before).toBeGreaterThan(1.15);
    expect(after / before).toBeLessThan(1.4);
  });

  it(engine === 'espeak-ng' ? 'reports no phoneme timings (the CLI cannot)' : 'reports monotonic phoneme timings covering the audio', () => {
    if (engine === 'espeak-ng') {
      expect(normal.phonemes).toBeUndefined();
      return;
    }
    const phonemes = normal.phonemes ?? [];
    expect(phonemes.length).toBeGreaterThan(30);
    expect(phonemes[0]?.start).toBe(0);
    expect(phonemes[phonemes.length - 1]?.end).toBeCloseTo(normal.durationSeconds, 2);
    for (let i = 0; i < phonemes.length; i++) {
      const p = phonemes[i];
      expect(p && p.end > p.start).toBe(true);
      if (i > 0) expect(p?.start).toBeCloseTo(phonemes[i - 1]?.end ?? -1, 6);
    }
    expect(phonemes.map((p) => p.phoneme)).toEqual(expect.arrayContaining(['pau', 'k', 'w', 'ih', 'f', 'aa', 'd', 'ao', 'g']));
  });

  it('maps a missing binary to AVATAR_ERR_TOOL_MISSING with the install command', async () => {
    const missing = createTtsPlugin(engine, { binary: '/nonexistent/bin/engine' });
    const error = await speak(missing, settings, 'Hello there.', `${engine}-missing.wav`).catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_TOOL_MISSING')).toBe(true);
    expect((error as Error & { hint: string }).hint).toContain('apt-get install');
    const check = await missing.check?.();
    expect(check?.ok).toBe(false);
    expect(check?.install).toContain('apt-get install');
  });
});

describe('engine failures and cancellation', () => {
  it('kills the engine on abort and leaves no output file', async () => {
    let pid = 0;
    const plugin = createTtsPlugin('festival', { onSpawn: (p) => (pid = p) });
    const controller = new AbortController();
    const started = Date.now();
    const pending = speak(plugin, { engine: 'festival', voice: 'cmu_us_slt_arctic_hts', language: 'en-US', rate: 1, pitch: 0 }, SENTENCE.repeat(6), 'aborted.wav', controller.signal);
    while (pid === 0 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 10));
    expect(pid).toBeGreaterThan(0);
    controller.abort();
    const error = await pending.catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_CANCELLED')).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    expect(() => process.kill(pid, 0)).toThrow();
    const files = await readdir(dir);
    expect(files.filter((f) => f.includes('aborted'))).toEqual([]);
  });

  it('reports an engine failure with its stderr', async () => {
    const error = await speak(createTtsPlugin('festival'), { engine: 'festival', voice: 'no_such_voice', language: 'en-US', rate: 1, pitch: 0 }, 'Hello.', 'fail.wav').catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_TTS_FAILED')).toBe(true);
    expect((error as Error).message).toMatch(/voice_no_such_voice/);
    expect((await readdir(dir)).filter((f) => f.includes('fail'))).toEqual([]);
  });

  it('refuses an unknown flite voice instead of speaking with the default, and stops what it started', async () => {
    const error = await speak(createTtsPlugin('flite'), { engine: 'flite', voice: 'nobody', language: 'en-US', rate: 1, pitch: 0 }, 'Hello.', 'nobody.wav').catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_CONFIG_INVALID')).toBe(true);
    // the voices are asked for beside the synthesis, here by a flite whose list comes late: a synthesis
    // still running is stopped, one done already has its word timings waited for; nothing is left either way
    for (const synthesis of ['slow', 'quick'] as const) {
      const fake = join(dir, `flite-late-list-${synthesis}`);
      await writeFile(fake, `#!/bin/sh\nif [ "$1" = "-lv" ]; then sleep 0.5; echo "Voices available: slt"; exit 0; fi\n${synthesis === 'slow' ? 'exec sleep 20' : 'exec flite "$@"'}\n`);
      await chmod(fake, 0o755);
      const pids: number[] = [];
      const started = performance.now();
      const refused = await speak(createTtsPlugin('flite', { binary: fake, onSpawn: (pid) => pids.push(pid) }), { engine: 'flite', voice: 'nobody', language: 'en-US', rate: 1, pitch: 0 }, 'Hello.', `nobody-${synthesis}.wav`).catch((e: unknown) => e);
      expect(isAvatarError(refused, 'AVATAR_ERR_CONFIG_INVALID'), String(refused)).toBe(true);
      expect((refused as Error).message).toMatch(/nobody/);
      expect(pids.length).toBeGreaterThan(0);
      if (synthesis === 'slow') expect(performance.now() - started).toBeLessThan(5000);
      for (const pid of pids) expect(() => process.kill(pid, 0), `${synthesis}: pid ${pid}`).toThrow();
      expect((await readdir(dir)).filter((f) => f.includes('nobody'))).toEqual([]);
    }
  });

  it('checks the real duration against the limit after synthesis', async () => {
    const voice: VoiceSettings = { engine: 'flite', voice: 'slt', language: 'en-US', rate: 0.7, pitch: 0 };
    const real = (await speak(createTtsPlugin('flite'), voice, SENTENCE, 'free-length.wav')).durationSeconds;
    const estimate = estimateSpeechSeconds(SENTENCE, voice);
    // the estimate errs short by design, so a limit between the two passes the early check only
    expect(real).toBeGreaterThan(estimate);
    const loaded = await createTtsPlugin('flite').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const error = await loaded
      .run({ text: SENTENCE, voice, outputPath: join(dir, 'limit.wav'), maxSeconds: (estimate + real) / 2 }, ctx())
      .catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_INPUT_TEXT_TOO_LONG')).toBe(true);
    expect((error as { params: { seconds: number } }).params.seconds).toBe(Math.round(real));
    expect((await readdir(dir)).filter((f) => f.startsWith('limit'))).toEqual([]);
  });

  it('passes text as data, never through a shell', async () => {
    const speech = await speak(createTtsPlugin('flite'), { engine: 'flite', voice: 'kal', language: 'en-US', rate: 1, pitch: 0 }, 'Say "$(touch /tmp/pwned)" and `id`; ok.', 'quoted.wav');
    expect(speech.durationSeconds).toBeGreaterThan(1);
    const tool = await runTool('sh', ['-c', 'test -e /tmp/pwned && echo yes || echo no'], { tool: 'sh', install: '', engine: 'sh' });
    expect(tool.stdout.trim()).toBe('no');
  });

  it('speaks with the default voice, which is a listed voice', async () => {
    expect(listVoices(DEFAULT_VOICE.engine).map((v) => v.voice)).toContain(DEFAULT_VOICE.voice);
    const speech = await speak(createTtsPlugin(DEFAULT_VOICE.engine as EngineName), { ...DEFAULT_VOICE }, 'Hello, 2 worlds.', 'default.wav');
    expect(speech.spokenText).toBe('Hello, two worlds.');
    expect(speech.durationSeconds).toBeGreaterThan(0.6);
    expect(speech.phonemes?.length).toBeGreaterThan(5);
  });

  it('chains flite per-utterance phoneme times', () => {
    expect(parseFlitePhonemes('pau:0.2 hh:0.3 pau:0.5 \npau:0.1 ay:0.4 \n')).toEqual([
      { phoneme: 'pau', start: 0, end: 0.2 },
      { phoneme: 'hh', start: 0.2, end: 0.3 },
      { phoneme: 'pau', start: 0.3, end: 0.5 },
      { phoneme: 'pau', start: 0.5, end: 0.6 },
      { phoneme: 'ay', start: 0.6, end: 0.9 },
    ]);
  });
});

/** A child's command line once it runs its program (one just forked still shows ours until then). */
function commandOf(pid: number): string {
  for (let i = 0; i < 500; i++) {
    const line = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (line.includes('flite')) return line;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
  }
  return '';
}

describe('speech in parts', () => {
  const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card. '
    + 'It was spoken by a program that reads text aloud. Then every frame was drawn on the processor. And that is all there is to it.';
  const slt: VoiceSettings = { engine: 'flite', voice: 'slt', language: 'en-US', rate: 1, pitch: 0 };

  it('splits the text at sentence ends, the first two sentences alone and then runs of at least 150 characters', () => {
    expect(sentencesOf('One more. Two! "Three?" Four (five.) Six')).toEqual(['One more.', 'Two!', '"Three?"', 'Four (five.)', 'Six']);
    expect(sentencesOf('3.5 and e.g.this stay whole.')).toEqual(['3.5 and e.g.this stay whole.']);
    // where flite itself goes on: a lower-case word next, an initial, an abbreviation
    for (const whole of ['I live in the U.S. and so do you.', 'A. B. C.', 'He said "Hi." then left.', 'Read ch. 3 first.', 'Ask Dr. Smith today.']) {
      expect(sentencesOf(whole), whole).toEqual([whole]);
    }
    const parts = partsOf(sentencesOf(TEXT.repeat(3)));
    expect(parts.slice(0, 2)).toEqual(['Hello!', 'I am Grace.']);
    expect(parts.join(' ')).toBe(sentencesOf(TEXT.repeat(3)).join(' '));
    expect(parts.length).toBeGreaterThan(3);
    for (const part of parts.slice(2, -1)) expect(part.length).toBeGreaterThanOrEqual(150);
  });

  it('hands each part on in order as it is made: together they are the speech, timed from its start', async () => {
    const parts: SpeechPart[] = [];
    const loaded = await createTtsPlugin('flite').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const speech = await loaded.run({ text: TEXT, voice: slt, outputPath: join(dir, 'parts.wav'), maxSeconds: 60, onPart: (part) => parts.push(part) }, ctx());
    expect(parts.map((p) => p.index)).toEqual(parts.map((_, k) => k));
    expect(parts.length).toBe(partsOf(sentencesOf(TEXT)).length);
    const joined = new Int16Array(parts.reduce((n, p) => n + p.pcm.length, 0));
    let at = 0;
    for (const part of parts) {
      expect(part.sampleRate).toBe(speech.sampleRate);
      expect(part.startSeconds).toBeCloseTo(at / speech.sampleRate, 9);
      joined.set(part.pcm, at);
      at += part.pcm.length;
    }
    expect(Buffer.from(joined.buffer).equals(Buffer.from(speech.pcm.buffer, speech.pcm.byteOffset, speech.pcm.byteLength))).toBe(true);
    expect(parts.flatMap((p) => p.phonemes ?? [])).toEqual(speech.phonemes);
    // flite's words are timed from all of them said once, after the parts: they come with the whole speech
    expect(parts.every((p) => p.words === undefined)).toBe(true);
    expect(speech.wordTimingSource).toBe('engine');
    expect(speech.words?.map((w) => w.word)).toEqual(spokenWords(TEXT));
    // the first part is the first sentence, said as it is in the whole
    expect(parts[0]?.phonemes?.filter((p) => p.phoneme !== 'pau').map((p) => p.phoneme).join(' ')).toBe('hh ax l ow');
    // the WAV on disk holds the same samples
    const wav = await readFile(join(dir, 'parts.wav'));
    expect(wav.subarray(44).equals(Buffer.from(speech.pcm.buffer, speech.pcm.byteOffset, speech.pcm.byteLength))).toBe(true);
  });

  it('times the words of every part from one list said once, as each part said on its own would time them', async () => {
    const loaded = await createTtsPlugin('flite').load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const text = `${TEXT} It's 2:30pm, and Dr. Smith isn't late.`;
    const parts: SpeechPart[] = [];
    const speech = await loaded.run({ text, voice: slt, outputPath: join(dir, 'words-once.wav'), maxSeconds: 60, onPart: (part) => parts.push(part) }, ctx());
    expect(parts.length).toBeGreaterThan(2);
    let at = 0;
    for (const [k, part] of parts.entries()) {
      // each part's text, said alone (whole: one process for the speech, one for its words)
      const partText = partsOf(sentencesOf(speech.spokenText))[k] as string;
      const spoken = spokenWords(partText);
      const alone = await loaded.run({ text: partText, voice: slt, outputPath: join(dir, `words-alone-${k}.wav`), maxSeconds: 60 }, ctx());
      expect(alone.wordTimingSource).toBe('engine');
      const shifted = alone.words?.map((w) => ({ word: w.word, start: w.start + part.startSeconds, end: w.end + part.startSeconds }));
      const mine = speech.words?.slice(at, at + spoken.length);
      expect(mine?.map((w) => w.word)).toEqual(shifted?.map((w) => w.word));
      for (const [j, w] of (mine ?? []).entries()) {
        expect(w.start, `${k}:${w.word}`).toBeCloseTo(shifted?.[j]?.start ?? NaN, 6);
        expect(w.end, `${k}:${w.word}`).toBeCloseTo(shifted?.[j]?.end ?? NaN, 6);
      }
      at += spoken.length;
    }
    expect(at).toBe(speech.words?.length);
  });

  it('says the words alone in one process, started once the first two parts\' processes run', async () => {
    const spawned: string[] = [];
    const plugin = createTtsPlugin('flite', {
      onSpawn: (pid) => {
        const line = commandOf(pid);
        spawned.push(/part-(\d+)/.exec(line)?.[0] ?? (line.includes('words.txt') ? 'words' : line));
      },
    });
    const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
    const speech = await loaded.run({ text: TEXT, voice: slt, outputPath: join(dir, 'words-order.wav'), maxSeconds: 60, onPart: () => {} }, ctx());
    expect(speech.wordTimingSource).toBe('engine');
    const parts = partsOf(sentencesOf(TEXT)).length;
    expect(spawned.filter((s) => s === 'words')).toEqual(['words']);
    expect(spawned.filter((s) => s.startsWith('part-')).sort()).toEqual(Array.from({ length: parts }, (_, k) => `part-${k}`).sort());
    expect(spawned.length).toBe(parts + 1);
    expect(spawned.indexOf('words')).toBeGreaterThanOrEqual(2);
    expect(spawned.slice(0, 2).sort()).toEqual(['part-0', 'part-1']);
  });

  it('words said alone that do not pair with the words are said again part by part; a part that still does not pair is estimated', async () => {
    const part = (phones: string[][], seconds: number): { part: MadePart; startSeconds: number } => {
      const enginePhonemes = phones.flat().map((phoneme, i) => ({ phoneme, start: i * 0.1, end: (i + 1) * 0.1 }));
      return { part: { pcm: new Int16Array(16000), sampleRate: 16000, phonemes: enginePhonemes, words: undefined, enginePhonemes }, startSeconds: seconds };
    };
    const parts = [part([['hh', 'ay'], ['y', 'uw']], 0), part([['ow', 'k']], 1)];
    const words = [['hi', 'you'], ['ok']];
    const asked: number[] = [];
    const again = async (k: number): Promise<string[][] | undefined> => {
      asked.push(k);
      return k === 0 ? [['hh', 'ay'], ['y', 'uw']] : [['ow'], ['k']];
    };
    const paired = await timeWords(parts, words, [['hh', 'ay'], ['y', 'uw'], ['ow', 'k']], again, (k) => [...(words[k] as string[])]);
    expect(asked).toEqual([]);
    expect(paired.fromEngine).toBe(true);
    expect(paired.words.map((w) => [w.word, w.start, w.end])).toEqual([['hi', 0, 0.2], ['you', 0.2, expect.closeTo(0.4, 9)], ['ok', 1, expect.closeTo(1.2, 9)]]);
    // one word too many in the list: each part said again; the second pairs no better, and is estimated
    const unpaired = await timeWords(parts, words, [['hh', 'ay'], ['y', 'uw'], ['ow'], ['k']], again, (k) => [...(words[k] as string[])]);
    expect(asked).toEqual([0, 1]);
    expect(unpaired.fromEngine).toBe(false);
    expect(unpaired.words.slice(0, 2)).toEqual(paired.words.slice(0, 2));
    expect(unpaired.words[2]?.word).toBe('ok');
    expect(unpaired.words[2]?.start).toBeGreaterThanOrEqual(1);
  });

  it('taken part by part, the parts started once 1.5 s of speech is made (or surely past it) run at a lower CPU priority; spoken whole, none does', async () => {
    // each part's synthesis, in the order of the parts (two start at once: their spawns may come in either
    // order), by the part folder on its command line
    const priorities = async (onPart: ((part: SpeechPart) => void) | undefined, text = TEXT.repeat(3)): Promise<number[]> => {
      const seen: { part: number; priority: number }[] = [];
      const plugin = createTtsPlugin('flite', {
        onSpawn: (pid) => {
          const part = /part-(\d+)/.exec(commandOf(pid))?.[1];
          // (the word-timing pass, which is not a part, is left out)
          if (part !== undefined) seen.push({ part: Number(part), priority: getPriority(pid) });
        },
      });
      const loaded = await plugin.load({ log: silentLogger, storageDir: dir, options: {}, device: { kind: 'cpu' } });
      await loaded.run({ text, voice: slt, outputPath: join(dir, 'priorities.wav'), maxSeconds: 60, ...(onPart && { onPart }) }, ctx());
      return seen.sort((a, b) => a.part - b.part).map((s) => s.priority);
    };
    const ours = getPriority();
    const lowered = Math.min(19, ours + 10);
    const taken = await priorities(() => {});
    // the first two parts at ours, and once lowered every part after
    expect(taken.slice(0, 2)).toEqual([ours, ours]);
    const first = taken.indexOf(lowered);
    expect(first).toBeGreaterThanOrEqual(2);
    expect(taken.slice(first).every((p) => p === lowered)).toBe(true);
    expect((await priorities(undefined)).every((p) => p === ours)).toBe(true);
    // a first sentence long enough for the first second of video on its own: every later part starts lowered
    const long = await priorities(() => {}, 'This video was made from one photo and a few sentences, on an ordinary computer. It ends here. Or here.');
    expect(long).toEqual([ours, lowered, lowered]);
  });

  it('a cancel stops every part\'s process and leaves no output file', async () => {
    const pids: number[] = [];
    const plugin = createTtsPlugin('flite', { onSpawn: (pid) => pids.push(pid) });
    const controller = new AbortController();
    const pending = speak(plugin, slt, TEXT.repeat(3), 'parts-aborted.wav', controller.signal);
    while (pids.length < 2) await new Promise((r) => setTimeout(r, 2));
    controller.abort();
    const error = await pending.catch((e: unknown) => e);
    expect(isAvatarError(error, 'AVATAR_ERR_CANCELLED')).toBe(true);
    for (const pid of pids) expect(() => process.kill(pid, 0), `pid ${pid}`).toThrow();
    expect((await readdir(dir)).filter((f) => f.includes('parts-aborted'))).toEqual([]);
  });
});

describe('the voices each engine lists', () => {
  it('reads espeak-ng\'s voice table: the code as the voice, a BCP 47 language, gender and name', () => {
    const table = [
      'Pty Language       Age/Gender VoiceName          File                 Other Languages',
      ' 5  af              --/M      Afrikaans          gmw/af               ',
      ' 5  pt-br           --/M      Portuguese_(Brazil) roa/pt-BR           (pt 5)',
      ' 5  en-gb-x-rp      --/F      English_(Received_Pronunciation) gmw/en-GB-x-rp (en 4)',
      ' 5  cmn-latn-pinyin --/M      Chinese_Mandarin_latin_as_Pinyin sit/cmn-Latn-pinyin',
      ' 5  af              --/M      Afrikaans          gmw/af               ',
    ].join('\n');
    expect(parseEspeakVoices(table)).toEqual([
      { voice: 'af', language: 'af', gender: 'male', description: 'Afrikaans' },
      { voice: 'pt-br', language: 'pt-BR', gender: 'male', description: 'Portuguese (Brazil)' },
      { voice: 'en-gb-x-rp', language: 'en-GB-x-rp', gender: 'female', description: 'English (Received Pronunciation)' },
      { voice: 'cmn-latn-pinyin', language: 'cmn-Latn-pinyin', gender: 'male', description: 'Chinese Mandarin latin as Pinyin' },
    ]);
  });

  it('lists what is installed here: espeak-ng over a hundred languages, flite its English voices, each one it can speak with', async () => {
    const espeak = await createTtsPlugin('espeak-ng').voices!();
    expect(espeak.length).toBeGreaterThan(100);
    expect(espeak).toContainEqual(expect.objectContaining({ voice: 'pt-br', language: 'pt-BR' }));
    const flite = await createTtsPlugin('flite').voices!();
    expect(flite).toContainEqual(expect.objectContaining({ voice: 'rms', language: 'en-US', gender: 'male' }));
    // a listed voice speaks: Brazilian Portuguese through espeak-ng
    const speech = await speak(createTtsPlugin('espeak-ng'), { engine: 'espeak-ng', voice: 'pt-br', language: 'pt-BR', rate: 1, pitch: 0 }, 'Olá! Este vídeo foi feito a partir de uma foto.', 'pt-br.wav');
    expect(speech.durationSeconds).toBeGreaterThan(1);
    // an engine whose program is missing lists none
    expect(await createTtsPlugin('flite', { binary: '/nonexistent/flite' }).voices!()).toEqual([]);
  });
});
