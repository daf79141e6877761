#!/usr/bin/env node
// Compares the installed English voices: intelligibility (word error rate of the pocketsphinx
// recogniser on the synthesised audio), synthesis speed (real-time factor) and a naturalness proxy
// (intonation spread). Prints a Markdown table; docs/voices.md records a run and the choice it led to.
//
//   npx tsc -p packages/core/tsconfig.json && npx tsc -p packages/tts/tsconfig.json
//   node scripts/evaluate-voices.mjs
//
// Needs: flite, festival + festvox-us-slt-hts, espeak-ng, sox, pocketsphinx + pocketsphinx-en-us.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyzeSpeech, createTtsPlugin, listInstalledVoices, pitchSpreadSemitones, prepareText, runTool, toFloat } from '@avatar/tts';

// Harvard sentences (IEEE 1969), public domain, plus two with numbers and abbreviations so the
// normaliser is part of what is measured.
const SENTENCES = [
  'The birch canoe slid on the smooth planks.',
  'Glue the sheet to the dark blue background.',
  'It is easy to tell the depth of a well.',
  'These days a chicken leg is a rare dish.',
  'Rice is often served in round bowls.',
  'The juice of lemons makes fine punch.',
  'The box was thrown beside the parked truck.',
  'Four hours of steady work faced us.',
  'Dr. Smith paid $25 for 3 books on Main St. in 2019.',
  'The meeting starts at 10:30 and 85% of the staff will come.',
];

const MODEL = '/usr/share/pocketsphinx/model/en-us';
const silent = { debug() {}, info() {}, warn() {}, error() {} };

function words(text) {
  return text.toLowerCase().replace(/-/g, ' ').replace(/[^a-z' ]+/g, ' ').split(/\s+/).filter(Boolean);
}

function editDistance(ref, hyp) {
  const row = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= hyp.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, diag + (ref[i - 1] === hyp[j - 1] ? 0 : 1));
      diag = row[j];
      row[j] = next;
    }
  }
  return row[hyp.length];
}

async function transcribe(wav, dir) {
  const pcm16k = join(dir, 'asr.wav');
  await runTool('sox', [wav, '-r', '16000', '-c', '1', '-b', '16', pcm16k], { tool: 'sox', install: 'sudo apt-get install -y sox', engine: 'sox' });
  const { stdout } = await runTool('pocketsphinx_continuous', [
    '-infile', pcm16k, '-hmm', `${MODEL}/en-us`, '-lm', `${MODEL}/en-us.lm.bin`, '-dict', `${MODEL}/cmudict-en-us.dict`, '-logfn', '/dev/null',
  ], { tool: 'pocketsphinx_continuous', install: 'sudo apt-get install -y pocketsphinx pocketsphinx-en-us', engine: 'pocketsphinx' });
  return stdout.trim();
}

const candidates = [];
for (const voice of ['slt', 'rms', 'awb', 'kal16', 'kal']) candidates.push({ engine: 'flite', voice });
for (const voice of await listInstalledVoices('festival')) candidates.push({ engine: 'festival', voice });
for (const voice of ['en-us', 'en-us+f3', 'en-us+m3', 'en-gb', 'en-gb-x-rp']) candidates.push({ engine: 'espeak-ng', voice });

const dir = await mkdtemp(join(tmpdir(), 'avatar-voices-'));
const rows = [];
try {
  for (const c of candidates) {
    const settings = { engine: c.engine, voice: c.voice, language: c.voice.startsWith('en-gb') ? 'en-GB' : 'en-US', rate: 1, pitch: 0 };
    const loaded = await createTtsPlugin(c.engine).load({ log: silent, storageDir: dir, options: {} });
    let errors = 0;
    let refWords = 0;
    let synthSeconds = 0;
    let audioSeconds = 0;
    let rate = 0;
    const spreads = [];
    const work = join(dir, 'work');
    for (const [i, sentence] of SENTENCES.entries()) {
      const outputPath = join(dir, `${c.engine}-${c.voice}-${i}.wav`);
      const started = process.hrtime.bigint();
      const speech = await loaded.run({ text: sentence, voice: settings, outputPath, maxSeconds: 60 }, { signal: new AbortController().signal, progress() {}, log: silent, workDir: work });
      synthSeconds += Number(process.hrtime.bigint() - started) / 1e9;
      audioSeconds += speech.durationSeconds;
      rate = speech.sampleRate;
      spreads.push(pitchSpreadSemitones(analyzeSpeech(toFloat(speech.pcm), speech.sampleRate)));
      const ref = words(prepareText(sentence, settings, 60).spokenText);
      const hyp = words(await transcribe(outputPath, dir));
      errors += editDistance(ref, hyp);
      refWords += ref.length;
    }
    await loaded.unload();
    spreads.sort((a, b) => a - b);
    const row = {
      engine: c.engine,
      voice: c.voice,
      sampleRate: rate,
      wer: errors / refWords,
      rtf: synthSeconds / audioSeconds,
      spread: spreads[Math.floor(spreads.length / 2)],
    };
    rows.push(row);
    process.stderr.write(`${c.engine} ${c.voice}: WER ${(row.wer * 100).toFixed(1)}%\n`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}

// the default: lowest WER among voices at least 20x faster than real time; intonation breaks ties
const fastEnough = rows.filter((r) => r.rtf <= 1 / 20);
const choice = [...fastEnough].sort((a, b) => a.wer - b.wer || b.spread - a.spread)[0];

console.log(`${SENTENCES.length} sentences, ${rows.length} voices, node ${process.version}\n`);
console.log('| engine | voice | rate (Hz) | WER | real-time factor | x real time | pitch spread (st, p10-p90) |');
console.log('|---|---|---|---|---|---|---|');
for (const r of rows) {
  const mark = r === choice ? ' **(default)**' : '';
  console.log(`| ${r.engine} | ${r.voice}${mark} | ${r.sampleRate} | ${(r.wer * 100).toFixed(1)}% | ${r.rtf.toFixed(3)} | ${(1 / r.rtf).toFixed(0)}x | ${r.spread.toFixed(1)} |`);
}
console.log(choice ? `\nchoice: ${choice.engine} ${choice.voice}` : '\nno voice is 20x faster than real time');
