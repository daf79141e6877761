// Speed and memory figures, printed as a table and as one JSON line. Run with `npm run bench`.
// Every figure comes from real runs of the built CLI and engines on this machine.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { treeRssMB } from './lib/proc.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'packages/cli/dist/bin.js');
const work = mkdtempSync(join(tmpdir(), 'avatar-bench-'));
const storage = join(work, 'storage');
const portrait = join(root, 'tests/fixtures/grace_hopper.jpg');
// about ten seconds of speech at a normal rate
const TEXT = 'The quick brown fox jumps over the lazy dog. Avatar turns one photo and a few sentences into a short video, ' +
  'on an ordinary computer, without a graphics card, in about a second.';

/** Runs the CLI, returning its JSON output, wall time (process start included) and peak tree RSS. */
function runCli(args) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [cli, '--storage', storage, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let peak = 0;
    const timer = setInterval(() => { peak = Math.max(peak, treeRssMB(child.pid)); }, 50);
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(timer);
      const wall = (performance.now() - started) / 1000;
      if (code !== 0) reject(new Error(`avatar ${args.join(' ')} exited ${code}: ${err}`));
      else resolve({ result: JSON.parse(out), wall, peakRssMB: Math.round(peak) });
    });
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const REPEAT = Number(process.env.BENCH_REPEAT ?? 3);

async function benchTts() {
  const rows = [];
  // the default voice first, then one voice of each other engine
  for (const [engine, voice] of [['flite', 'rms'], ['flite', 'slt'], ['festival', 'cmu_us_slt_arctic_hts'], ['espeak-ng', 'en-us']]) {
    const profile = (await runCli(['voices', 'create', '--engine', engine, '--voice', voice])).result;
    const runs = [];
    for (let i = 0; i < REPEAT; i++) runs.push(await runCli(['tts', TEXT, '--voice', profile.id, '--output', join(work, `${engine}-${voice}.wav`)]));
    const stage = runs.map((r) => r.result.stages.find((s) => s.stage === 'synthesize_speech').wallSeconds);
    const audio = runs[0].result.durationSeconds;
    rows.push({
      engine, voice, audioSeconds: audio, synthSeconds: median(stage), realtimeFactor: Math.round((audio / median(stage)) * 10) / 10,
      processWallSeconds: Math.round(median(runs.map((r) => r.wall)) * 1000) / 1000, peakRssMB: Math.max(...runs.map((r) => r.peakRssMB)),
    });
  }
  return rows;
}

async function benchStill() {
  const wav = join(work, 'flite-rms.wav');
  const runs = [];
  for (let i = 0; i < REPEAT; i++) runs.push(await runCli(['encode', '--image', portrait, '--audio', wav, '--output', join(work, 'still.mp4'), '--quality', 'medium']));
  return {
    audioSeconds: runs[0].result.durationSeconds,
    encodeSeconds: median(runs.map((r) => r.result.stages[0].wallSeconds)),
    processWallSeconds: Math.round(median(runs.map((r) => r.wall)) * 1000) / 1000,
    peakRssMB: Math.max(...runs.map((r) => r.peakRssMB)),
  };
}

async function optional(path, name) {
  try {
    const mod = await import(path);
    return await mod[name]();
  } catch (error) {
    return { error: error.message };
  }
}

const figures = {
  machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
  tts: await benchTts(),
  stillEncode: await benchStill(),
  encode: await optional('./bench-encode.mjs', 'benchEncode'),
  face: await optional('./bench-face.mjs', 'benchFace'),
  lipsync: await optional('./bench-lipsync.mjs', 'benchLipsync'),
  queue: await optional('./bench-queue.mjs', 'benchQueue'),
  server: await optional('./bench-server.mjs', 'benchServer'),
};

console.log('\nspeech (one fixed text, 11-13 s spoken; median of', REPEAT, 'runs)');
console.log('engine      voice                   audio s  synth s  x real time  process s  peak RSS MB');
for (const r of figures.tts) {
  console.log(`${r.engine.padEnd(11)} ${r.voice.padEnd(23)} ${r.audioSeconds.toFixed(2).padStart(7)}  ${r.synthSeconds.toFixed(3).padStart(7)}  ${String(r.realtimeFactor).padStart(11)}  ${r.processWallSeconds.toFixed(2).padStart(9)}  ${String(r.peakRssMB).padStart(11)}`);
}
const s = figures.stillEncode;
console.log(`\nstill image + ${s.audioSeconds.toFixed(1)} s audio -> MP4, medium (512 px): encode ${s.encodeSeconds.toFixed(3)} s, process ${s.processWallSeconds.toFixed(2)} s, peak RSS ${s.peakRssMB} MB`);
console.log('\nencode:', JSON.stringify(figures.encode));
console.log('face:', JSON.stringify(figures.face));
const l = figures.lipsync;
if (l.renderer) {
  console.log(`\nrenderer alone, ${l.renderer.width}x${l.renderer.height}, one thread: I420 (${l.renderer.kernel} warp) ${l.renderer.fps_i420_none} frames/s (no head motion), ${l.renderer.fps_i420_subtle} (subtle), ${l.renderer.fps_i420_lively} (lively); I420 with the TypeScript warp ${l.renderer.fps_i420_js_none} / ${l.renderer.fps_i420_js_subtle} / ${l.renderer.fps_i420_js_lively}; RGBA ${l.renderer.fps_none} / ${l.renderer.fps_subtle} / ${l.renderer.fps_lively}`);
  const e = l.endToEnd;
  console.log(`talking head end to end, medium, median of ${e.rounds} interleaved rounds: ${e.videoSeconds} s of video in ${e.wallSeconds} s (range ${e.wallSecondsRange.join("-")}, process start included); render+encode ${e.renderAndEncodeSeconds} s vs ffmpeg alone ${e.ffmpegAloneSeconds} s from RGBA (x${e.ratioToFfmpegAlone}, range ${e.ratioToFfmpegAloneRange.join("-")}), ${e.ffmpegAloneI420Seconds} s from I420 (x${e.ratioToFfmpegAloneI420}, range ${e.ratioToFfmpegAloneI420Range.join("-")}); peak RSS ${e.peakNodeMB} MB (node), ${e.peakTreeMB} MB (with ffmpeg)`);
  for (const x of l.lengths) console.log(`  ${String(x.seconds).padStart(3)} s of speech: ${x.wallSeconds} s wall, render+encode ${x.renderAndEncodeSeconds} s, peak RSS ${x.peakNodeMB} MB (node), ${x.peakTreeMB} MB (with ffmpeg)`);
} else console.log('lipsync:', JSON.stringify(l));
console.log('queue:', JSON.stringify(figures.queue));
const h = figures.server;
if (h.getOne) {
  console.log(`\nHTTP server: GET one job ${h.getOne.requestsPerSecond} req/s (p99 ${h.getOne.p99Ms} ms), JSON submissions ${h.post.requestsPerSecond}/s (p99 ${h.post.p99Ms} ms); ` +
    `${h.sse.streams} event streams on ${h.sse.jobs} jobs: ${h.sse.endedWithEnd} got their end, server RSS ${h.sse.rssBeforeMB} -> ${h.sse.rssPeakMB} MB`);
} else console.log('server:', JSON.stringify(h));
console.log(`\nJSON ${JSON.stringify(figures)}`);
