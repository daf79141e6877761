// Captions from the speech's own word timings, end to end: the files beside the video, the subtitle
// track in it, their timing against the speech as heard, burnt in, and none.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { alignSpeech, silentLogger } from '@avatar/core';
import { DEFAULT_VOICE, createTtsPlugin } from '@avatar/tts';
import { PORTRAIT, avatar, ffprobe, tempDir } from './helpers/cli.js';

const TEXT = 'Good morning. The meeting starts at 2:30pm in room 4B, on the second floor. Please bring your notes, and a pen.';

interface Cue { start: number; end: number; text: string }

function parseVtt(vtt: string): Cue[] {
  const seconds = (s: string): number => {
    const parts = s.split(':').map(Number);
    return parts.reduce((t, p) => t * 60 + p, 0);
  };
  return vtt.split(/\n\n+/).flatMap((block) => {
    const m = /^([\d:.]+) --> ([\d:.]+)\n([\s\S]*)$/.exec(block.trim());
    return m ? [{ start: seconds(m[1]!), end: seconds(m[2]!), text: m[3]!.replace(/\n/g, ' ') }] : [];
  });
}

/** Where speech starts again after each pause of at least 0.25 s: the audio's 10 ms frames above a tenth of its loud level. */
function onsets(path: string): number[] {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:a', '-ac', '1', '-ar', '16000', '-f', 's16le', '-'], { maxBuffer: 1 << 28 });
  const pcm = new Int16Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.length / 2);
  const levels: number[] = [];
  for (let at = 0; at + 160 <= pcm.length; at += 160) {
    let sum = 0;
    for (let k = at; k < at + 160; k++) sum += Math.abs(pcm[k]!);
    levels.push(sum / 160);
  }
  const loud = [...levels].sort((a, b) => a - b)[Math.floor(levels.length * 0.9)]!;
  const out: number[] = [];
  let quiet = 25;
  for (let k = 0; k < levels.length; k++) {
    if (levels[k]! > loud * 0.1) {
      if (quiet >= 25) out.push(k / 100);
      quiet = 0;
    } else {
      quiet++;
    }
  }
  return out;
}

describe('captions', () => {
  let dir: string;
  const run = async (name: string, extra: string[]) => {
    const out = join(dir, name);
    const r = await avatar(['--json', '--storage', join(dir, 'storage'), 'pipeline', 'run', TEXT, '--avatar', PORTRAIT, '--output', out, '--quality', 'low', ...extra]);
    expect(r.code, r.stderr).toBe(0);
    return { out, result: JSON.parse(r.stdout) as { captions?: { mode: string; vtt: string; srt: string; cues: number; timing: string } } };
  };

  beforeAll(async () => {
    dir = await tempDir('avatar-captions-');
  });

  it('writes WebVTT and SRT beside the video and carries them as a subtitle track, timed to the speech as heard', async () => {
    const { out, result } = await run('talk.mp4', []);
    expect(result.captions).toEqual({ mode: 'soft', vtt: join(dir, 'talk.vtt'), srt: join(dir, 'talk.srt'), cues: expect.any(Number), timing: 'engine' });
    const files = parseVtt(await readFile(join(dir, 'talk.vtt'), 'utf8'));
    const srt = await readFile(join(dir, 'talk.srt'), 'utf8');
    expect(srt.split(/\n\n+/).filter((b) => b.trim()).length).toBe(files.length);
    // as written, in order, every word
    expect(files.map((c) => c.text).join(' ')).toBe(TEXT);
    expect(files[0]!.text).toBe('Good morning.');
    expect(files.some((c) => c.text.includes('2:30pm'))).toBe(true);
    // the video's own track says the same
    expect(ffprobe(out).streams.some((s) => s.codec_type === 'subtitle' && s.codec_name === 'mov_text')).toBe(true);
    const track = spawnSync('ffmpeg', ['-v', 'error', '-i', out, '-map', '0:s:0', '-f', 'webvtt', '-'], { encoding: 'utf8' });
    const cues = parseVtt(track.stdout.replace(/(^|\n)(\d\d:\d\d\.\d\d\d)/g, '$100:$2').replace(/--> (\d\d:\d\d\.\d\d\d)/g, '--> 00:$1'));
    expect(cues.map((c) => c.text)).toEqual(files.map((c) => c.text));
    // each sentence's cue starts when the synthesized speech says its first word, within a frame (20 fps)
    // on average: the same text through the same engine and voice, timed by the engine
    const tts = createTtsPlugin(DEFAULT_VOICE.engine as 'flite');
    const loaded = await tts.load({ log: silentLogger, storageDir: join(dir, 'storage'), options: {}, device: { kind: 'cpu' } });
    const speech = await loaded.run({ text: TEXT, voice: { ...DEFAULT_VOICE }, outputPath: join(dir, 'speech.wav'), maxSeconds: 60 },
      { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: join(dir, 'tts') });
    const sentences = cues.filter((c, k) => k === 0 || /[.!?]$/.test(cues[k - 1]!.text));
    expect(sentences.length).toBe(3);
    const firstWords = ['good', 'the', 'please'].map((w) => speech.words!.find((s) => s.word.toLowerCase() === w)!.start);
    const misses = sentences.map((c, k) => Math.abs(c.start - firstWords[k]!));
    expect(misses.reduce((a, b) => a + b, 0) / misses.length, `cue starts ${sentences.map((c) => c.start).join(', ')}; words ${firstWords.join(', ')}`).toBeLessThanOrEqual(1 / 20);
    // and as heard: no cue starts after its sentence is heard, nor long before (a plosive's closure is silent)
    const heard = onsets(out);
    for (const c of sentences) {
      const next = heard.find((h) => h >= c.start - 0.05);
      expect(next, `cue at ${c.start}; speech heard from ${heard.join(', ')}`).toBeDefined();
      expect(next! - c.start).toBeLessThan(0.15);
    }
    // never overlapping, each up for at least a moment
    for (let k = 1; k < cues.length; k++) expect(cues[k]!.start).toBeGreaterThanOrEqual(cues[k - 1]!.end - 0.001);
  });

  it('burns them into the picture in WebM (no subtitle track), and writes none with --captions none', async () => {
    const burnt = await run('burnt.webm', ['--captions', 'burn']);
    expect(burnt.result.captions).toMatchObject({ mode: 'burn', vtt: join(dir, 'burnt.vtt') });
    expect(ffprobe(burnt.out).streams.map((s) => s.codec_type).sort()).toEqual(['audio', 'video']);
    const plain = await run('plain.webm', ['--captions', 'none']);
    expect(plain.result.captions).toBeUndefined();
    expect(existsSync(join(dir, 'plain.vtt')) || existsSync(join(dir, 'plain.srt'))).toBe(false);
    // a frame within the first cue: the bottom band carries the text, the top of the picture is the same
    const frame = (path: string): Buffer => spawnSync('ffmpeg', ['-v', 'error', '-ss', '0.8', '-i', path, '-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'gray', '-'], { maxBuffer: 1 << 24 }).stdout;
    const a = frame(burnt.out);
    const b = frame(plain.out);
    const { width = 0, height = 0 } = ffprobe(plain.out).streams.find((s) => s.codec_type === 'video') ?? {};
    // the share of pixels that differ a lot (white letters, dark outlines) in a band of rows
    const band = (from: number, to: number): number => {
      let changed = 0;
      for (let y = Math.floor(from * height); y < Math.floor(to * height); y++) for (let x = 0; x < width; x++) changed += Math.abs(a[y * width + x]! - b[y * width + x]!) > 40 ? 1 : 0;
      return changed / ((Math.floor(to * height) - Math.floor(from * height)) * width);
    };
    expect(band(0.8, 1)).toBeGreaterThan(0.01);
    expect(band(0, 0.2)).toBeLessThan(0.001);
    // a webm's soft captions are WebVTT
    const soft = await run('soft.webm', []);
    expect(ffprobe(soft.out).streams.find((s) => s.codec_type === 'subtitle')?.codec_name).toBe('webvtt');
    expect((await readdir(join(dir, 'storage', 'work')).catch(() => [])).length).toBe(0);
  });

  it('refuses a run whose captions cannot be written beside the video (a folder of that name), before any stage', async () => {
    await mkdir(join(dir, 'blocked.srt'));
    const r = await avatar(['--json', '--storage', join(dir, 'storage'), 'pipeline', 'run', 'Hi.', '--avatar', PORTRAIT, '--output', join(dir, 'blocked.mp4')]);
    expect(r.code).not.toBe(0);
    const result = JSON.parse(r.stdout) as { error: { message: string }; stagesCompleted: string[] };
    expect(result.error.message).toMatch(/captions file.*blocked\.srt/);
    expect(result.stagesCompleted).toEqual([]);
    expect(existsSync(join(dir, 'blocked.mp4')) || existsSync(join(dir, 'blocked.vtt'))).toBe(false);
  });

  it('captions a recording from its transcript, aligned to it; warns when the transcript says something else; none without one', async () => {
    // the recording: another engine and voice (festival, which times its own words: the truth to check against)
    const festival = await createTtsPlugin('festival').load({ log: silentLogger, storageDir: join(dir, 'storage'), options: {}, device: { kind: 'cpu' } });
    const said = 'The meeting starts at half past two. Please bring your notes, and a pen.';
    const recording = await festival.run({ text: said, voice: { engine: 'festival', voice: 'cmu_us_slt_arctic_hts', language: 'en-US', rate: 0.9, pitch: 0 }, outputPath: join(dir, 'recording.wav'), maxSeconds: 60 },
      { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: join(dir, 'tts') });
    const lipsync = async (name: string, extra: string[]) => {
      const r = await avatar(['--json', '--storage', join(dir, 'storage'), 'lipsync', '--avatar', PORTRAIT, '--audio', join(dir, 'recording.wav'), '--output', join(dir, name), '--quality', 'low', ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return { result: JSON.parse(r.stdout) as { captions?: { timing: string; warning?: string; vtt: string } }, stderr: r.stderr };
    };
    const aligned = await lipsync('aligned.mp4', ['--transcript', 'The meeting starts at 2:30. Please bring your notes, and a pen.']);
    expect(aligned.result.captions).toMatchObject({ timing: 'aligned', vtt: join(dir, 'aligned.vtt') });
    expect(aligned.result.captions?.warning).toBeUndefined();
    const cues = parseVtt(await readFile(join(dir, 'aligned.vtt'), 'utf8'));
    expect(cues.map((c) => c.text).join(' ')).toBe('The meeting starts at 2:30. Please bring your notes, and a pen.');
    // each cue starts where festival says its first word, within two frames (20 fps): a sentence's start,
    // after a pause whose length differs between the voices, is the warp's least sure point
    const firsts = cues.map((c) => recording.words!.find((w) => w.word.toLowerCase() === c.text.split(' ')[0]!.toLowerCase().replace(/[^a-z]/g, ''))!.start);
    const misses = cues.map((c, k) => Math.abs(c.start - firsts[k]!));
    expect(Math.max(...misses), `cues ${cues.map((c) => c.start).join(', ')}; words ${firsts.join(', ')}`).toBeLessThanOrEqual(2 / 20);
    // every word, as the aligner places it: within a frame of festival's own times on average (measured 12-26 ms)
    const flite = await createTtsPlugin('flite').load({ log: silentLogger, storageDir: join(dir, 'storage'), options: {}, device: { kind: 'cpu' } });
    const synthesis = await flite.run({ text: said, voice: { ...DEFAULT_VOICE }, outputPath: join(dir, 'synthesis.wav'), maxSeconds: 60 },
      { signal: new AbortController().signal, progress: () => undefined, log: silentLogger, workDir: join(dir, 'tts') });
    const placed = (await alignSpeech({ pcm: recording.pcm, sampleRate: recording.sampleRate }, { pcm: synthesis.pcm, sampleRate: synthesis.sampleRate, words: synthesis.words! }))!;
    expect(placed.words.map((w) => w.word.toLowerCase())).toEqual(recording.words!.map((w) => w.word.toLowerCase()));
    const error = placed.words.reduce((s, w, k) => s + Math.abs(w.start - recording.words![k]!.start), 0) / placed.words.length;
    expect(error).toBeLessThanOrEqual(1 / 20);
    expect(placed.matches).toBe(true);
    // a speaker who waits four seconds before speaking: the same words, four seconds on
    const late = new Int16Array(recording.pcm.length + 4 * recording.sampleRate);
    late.set(recording.pcm, 4 * recording.sampleRate);
    const waited = (await alignSpeech({ pcm: late, sampleRate: recording.sampleRate }, { pcm: synthesis.pcm, sampleRate: synthesis.sampleRate, words: synthesis.words! }))!;
    const lateError = waited.words.reduce((s, w, k) => s + Math.abs(w.start - 4 - recording.words![k]!.start), 0) / waited.words.length;
    expect(lateError).toBeLessThanOrEqual(1 / 20);
    expect(waited.matches).toBe(true);
    // a transcript of something else: captions all the same, and a warning, not a failure
    const wrong = await lipsync('wrong.mp4', ['--transcript', 'The weather was cold and windy all week, so the children stayed inside by the fire.']);
    expect(wrong.result.captions?.warning).toMatch(/does not seem to be what the recording says/);
    expect(wrong.stderr).toMatch(/warning/i);
    // a transcript the voice cannot say: no captions, a warning, the video all the same
    const unsayable = await lipsync('unsayable.mp4', ['--transcript', '日本語の文章です。']);
    expect(unsayable.result.captions).toBeUndefined();
    expect((unsayable.result as { warnings?: string[] }).warnings).toEqual([expect.stringMatching(/^no captions: the transcript could not be spoken/)]);
    expect(existsSync(join(dir, 'unsayable.mp4'))).toBe(true);
    // no transcript: no captions, no error
    const none = await lipsync('none.mp4', []);
    expect(none.result.captions).toBeUndefined();
    expect(existsSync(join(dir, 'none.vtt'))).toBe(false);
  }, 120_000);

  it('refuses a caption mode it does not know, before any stage', async () => {
    const r = await avatar(['--storage', join(dir, 'storage'), 'pipeline', 'run', 'Hi.', '--avatar', PORTRAIT, '--output', join(dir, 'x.mp4'), '--captions', 'loud']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/captions/);
  });
});
