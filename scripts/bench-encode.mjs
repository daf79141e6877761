// Encode benchmark: a still image + 10 s of audio at 512x512 (medium preset), and the throughput of
// streamed 512x512 RGBA frames. Runs the built packages:
//   npx tsc -p packages/core/tsconfig.json && npx tsc -p packages/encode/tsconfig.json
//   node scripts/bench-encode.mjs
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { QUALITY_PRESETS } from '@avatar/core';
import { encodeFrames, encodeStill, warmUp } from '../packages/encode/dist/index.js';

const run = promisify(execFile);
const gen = (...args) => run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** A 512x512 pattern that moves every frame, drawn into one reused buffer (the encoder allows it). */
function pattern(width, height, count) {
  const buffer = new Uint8Array(width * height * 4);
  async function* frames() {
    for (let i = 0; i < count; i += 1) {
      for (let y = 0; y < height; y += 1) {
        const row = y * width * 4;
        for (let x = 0; x < width; x += 1) {
          const o = row + x * 4;
          buffer[o] = (x + i * 4) & 255;
          buffer[o + 1] = (y + i * 2) & 255;
          buffer[o + 2] = ((x ^ y) + i) & 255;
          buffer[o + 3] = 255;
        }
      }
      yield buffer;
    }
  }
  return { width, height, fps: 25, frameCount: count, frames: frames() };
}

/**
 * @param {{ runs?: number, seconds?: number, frameSeconds?: number }} [options]
 * @returns the measured figures (seconds are wall-clock)
 */
export async function benchEncode(options = {}) {
  const runs = options.runs ?? 5;
  const seconds = options.seconds ?? 10;
  const frameSeconds = options.frameSeconds ?? 10;
  const dir = await mkdtemp(join(tmpdir(), 'avatar-bench-encode-'));
  try {
    const image = join(dir, 'portrait.png');
    const audio = join(dir, 'speech.wav');
    await gen('-f', 'lavfi', '-i', 'testsrc2=size=768x768', '-frames:v', '1', image);
    await gen('-f', 'lavfi', '-i', `sine=frequency=220:sample_rate=22050:duration=${seconds}`, audio);
    const settings = { format: 'mp4', ...QUALITY_PRESETS.medium };

    // What the plugin's load() does once per process: check the binaries, read ffmpeg's capabilities.
    const warmStarted = performance.now();
    await warmUp();
    const warmUpSeconds = (performance.now() - warmStarted) / 1000;

    // The same ffmpeg command line run bare, interleaved with the plugin's runs, shows what the
    // checks, probes and rename around it cost on a machine whose load varies.
    let commandLine = '';
    const log = {
      debug(message, fields) { if (message === 'ffmpeg started') commandLine = String(fields.command); },
      info() {}, warn() {}, error() {},
    };
    const stillTimes = [];
    const bareTimes = [];
    let still;
    for (let i = 0; i < runs; i += 1) {
      let started = performance.now();
      still = await encodeStill({ imagePath: image, audioPath: audio, outputPath: join(dir, `still-${i}.mp4`), settings }, { log });
      stillTimes.push((performance.now() - started) / 1000);
      const args = commandLine.split(' ').slice(1);
      args[args.length - 1] = join(dir, `bare-${i}.mp4`);
      started = performance.now();
      await run('ffmpeg', args);
      bareTimes.push((performance.now() - started) / 1000);
    }

    const count = Math.round(frameSeconds * 25);
    let rssPeak = 0;
    const rssStart = process.memoryUsage().rss;
    const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage().rss); }, 20);
    const started = performance.now();
    const video = await encodeFrames({ frames: pattern(512, 512, count), audioPath: audio, outputPath: join(dir, 'frames.mp4'), settings });
    const framesSeconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);

    return {
      warmUpSeconds,
      still: {
        audioSeconds: seconds,
        width: still.width,
        height: still.height,
        preset: settings.preset,
        crf: settings.crf,
        fps: settings.fps,
        firstRunSeconds: stillTimes[0],
        bestSeconds: Math.min(...stillTimes),
        medianSeconds: median(stillTimes),
        runs: stillTimes,
        bareFfmpegMedianSeconds: median(bareTimes),
      },
      frames: {
        frames: count,
        width: video.width,
        height: video.height,
        preset: settings.preset,
        seconds: framesSeconds,
        framesPerSecond: count / framesSeconds,
        realtimeFactor: count / 25 / framesSeconds,
        rssStartMB: rssStart / 2 ** 20,
        rssPeakMB: rssPeak / 2 ** 20,
        streamedMB: (count * 512 * 512 * 4) / 2 ** 20,
      },
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchEncode();
  const f = (n) => n.toFixed(3);
  console.log(`load (binary checks + ffmpeg capabilities, once per process): ${f(r.warmUpSeconds)} s`);
  console.log(`still ${r.still.width}x${r.still.height}, ${r.still.audioSeconds}s audio, preset ${r.still.preset} crf ${r.still.crf} @${r.still.fps}fps: ` +
    `median ${f(r.still.medianSeconds)} s, best ${f(r.still.bestSeconds)} s (first run ${f(r.still.firstRunSeconds)} s; runs ${r.still.runs.map(f).join(', ')}); ` +
    `the bare ffmpeg command alone: median ${f(r.still.bareFfmpegMedianSeconds)} s`);
  console.log(`frames ${r.frames.width}x${r.frames.height}, ${r.frames.frames} frames, preset ${r.frames.preset}: ${f(r.frames.seconds)} s, ` +
    `${r.frames.framesPerSecond.toFixed(1)} frames/s (${r.frames.realtimeFactor.toFixed(2)}x realtime at 25 fps); ` +
    `RSS ${r.frames.rssStartMB.toFixed(0)} -> peak ${r.frames.rssPeakMB.toFixed(0)} MB while streaming ${r.frames.streamedMB.toFixed(0)} MB of frames`);
}
