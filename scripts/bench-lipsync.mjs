// The talking head's speed and memory: the renderer alone (one core, 512x512), end-to-end runs of the CLI
// (text -> MP4, process start included) beside ffmpeg alone encoding the same frames at the same settings,
// and render + encode of 10, 60 and 120 s of speech (time and peak memory against length).
// Imports the built packages (npm run build).   node scripts/bench-lipsync.mjs
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { treeRssMB } from './lib/proc.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'packages/cli/dist/bin.js');
const portrait = join(root, 'tests/fixtures/grace_hopper.jpg');
const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card.';

/** Runs a command, returning wall seconds and the peak RSS of it and its children (node's own, for node). */
function timed(cmd, args, sample = false) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let peak = 0;
    let nodePeak = 0;
    const timer = sample ? setInterval(() => {
      peak = Math.max(peak, treeRssMB(child.pid));
      try {
        const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) nodePeak = Math.max(nodePeak, Number(m[1]) / 1024);
      } catch { /* gone */ }
    }, 50) : undefined;
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (timer) clearInterval(timer);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err}`));
      else resolve({ seconds: (performance.now() - started) / 1000, out, peakTreeMB: Math.round(peak), peakNodeMB: Math.round(nodePeak) });
    });
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Frames per second of the renderer alone at 512x512 on this thread, for each head-motion setting. */
export async function benchRenderer(work) {
  const { FaceRenderer, headMotionAt, computeMouthTrack, poseAt } = await import(join(root, 'packages/lipsync/dist/index.js'));
  const face = (await import(join(root, 'packages/face/dist/index.js'))).plugins[0];
  const silent = { debug() {}, info() {}, warn() {}, error() {} };
  const loaded = await face.load({ log: silent, storageDir: work });
  const ctx = { signal: new AbortController().signal, progress() {}, log: silent, workDir: work };
  const avatar = await loaded.run({ imagePath: portrait, prepare: { outputPath: join(work, 'avatar.png'), size: 512 } }, ctx);
  await loaded.unload();
  const { data, info } = await sharp(avatar.imagePath).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const image = { width: info.width, height: info.height, data: new Uint8Array(data) };
  // a real speech track drives the mouth
  const tts = (await import(join(root, 'packages/tts/dist/index.js'))).plugins.find((p) => p.name === 'flite');
  const speaker = await tts.load({ log: silent, storageDir: work });
  const speech = await speaker.run({ text: TEXT, voice: { engine: 'flite', voice: 'rms', language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(work, 'r.wav'), maxSeconds: 60 }, ctx);
  const track = computeMouthTrack(speech, { fps: 25 });
  const out = { width: image.width, height: image.height, frames: track.frameCount };
  // RGBA frames, and I420 frames as the pipeline draws them for the encoder
  for (const [format, prefix] of [['rgba', 'fps_'], ['yuv420p', 'fps_i420_']]) for (const motion of ['none', 'subtle', 'lively']) {
    const renderer = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: format });
    for (let i = 0; i < 50; i++) renderer.render(poseAt(track, i % track.frameCount), { blink: 0, ...headMotionAt(i / 25, motion, 1, 100) });
    const rounds = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      for (let i = 0; i < track.frameCount; i++) renderer.render(poseAt(track, i), { blink: 0, ...headMotionAt(i / 25, motion, 1, 100) });
      rounds.push(track.frameCount / ((performance.now() - t0) / 1000));
    }
    out[`${prefix}${motion}`] = Math.round(median(rounds));
  }
  return out;
}

/** The CLI end to end, beside ffmpeg alone encoding the same frames and audio at the same settings. */
export async function benchEndToEnd(work) {
  const storage = join(work, 'storage');
  const runs = [];
  let keptFrames = null;
  // three timed runs, then one more that samples memory from /proc (sampling costs CPU, so it is kept
  // out of the timed runs)
  let memory = { peakNodeMB: 0, peakTreeMB: 0 };
  for (let i = 0; i < 4; i++) {
    const sampled = i === 3;
    const r = await timed(process.execPath, [cli, '--storage', storage, '--json', 'pipeline', 'run', TEXT, '--avatar', portrait, '--output', join(work, 'e2e.mp4'), '--quality', 'medium', '--keep-intermediates'], sampled);
    const result = JSON.parse(r.out);
    if (sampled) memory = { peakNodeMB: r.peakNodeMB, peakTreeMB: r.peakTreeMB };
    else runs.push({ seconds: r.seconds, video: result.durationSeconds, stages: Object.fromEntries(result.stages.map((s) => [s.stage, s.wallSeconds])), workDir: result.workDir });
    keptFrames = result;
  }
  // ffmpeg alone: the same frames (decoded back from the video to raw RGBA, outside the timing) and the
  // same audio, encoded with the same settings
  const workDir = keptFrames.workDir;
  const raw = join(work, 'frames.rgba');
  const probe = JSON.parse(spawnSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', join(work, 'e2e.mp4')], { encoding: 'utf8' }).stdout);
  const v = probe.streams.find((s) => s.codec_type === 'video');
  spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', join(work, 'e2e.mp4'), '-f', 'rawvideo', '-pix_fmt', 'rgba', raw]);
  const { QUALITY_PRESETS } = await import(join(root, 'packages/core/dist/index.js'));
  const medium = QUALITY_PRESETS.medium;
  // ffmpeg alone, fed the frames as the renderer draws them (RGBA, converted by ffmpeg) and as they go
  // down the pipe (I420, converted while drawing)
  const yuv = join(work, 'frames.yuv');
  spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgba', '-s', `${v.width}x${v.height}`, '-i', raw,
    '-vf', 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p', '-f', 'rawvideo', yuv]);
  const bareRun = (file, pixFmt, filter) => timed('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', pixFmt, '-s', `${v.width}x${v.height}`, '-r', '25', '-i', file,
    '-i', join(workDir, 'speech.wav'), '-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', medium.preset, '-crf', String(medium.crf),
    '-vf', filter, '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-movflags', '+faststart', join(work, 'bare.mp4')]);
  const bare = [];
  const bareYuv = [];
  for (let i = 0; i < 3; i++) {
    bare.push((await bareRun(raw, 'rgba', 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p')).seconds);
    bareYuv.push((await bareRun(yuv, 'yuv420p', 'setsar=1')).seconds);
  }
  rmSync(workDir, { recursive: true, force: true });
  const best = runs.sort((a, b) => a.seconds - b.seconds)[1];
  const encodeMedian = median(runs.map((r) => r.stages.encode_video));
  return {
    videoSeconds: best.video,
    frames: Math.round(best.video * 25),
    wallSeconds: Number(median(runs.map((r) => r.seconds)).toFixed(3)),
    stages: best.stages,
    peakNodeMB: memory.peakNodeMB,
    peakTreeMB: memory.peakTreeMB,
    renderAndEncodeSeconds: Number(encodeMedian.toFixed(3)),
    ffmpegAloneSeconds: Number(median(bare).toFixed(3)),
    ratioToFfmpegAlone: Number((encodeMedian / median(bare)).toFixed(2)),
    ffmpegAloneI420Seconds: Number(median(bareYuv).toFixed(3)),
    ratioToFfmpegAloneI420: Number((encodeMedian / median(bareYuv)).toFixed(2)),
  };
}

/** Render + encode of longer recordings: time and peak memory against length. */
async function benchLengths(work) {
  const storage = join(work, 'storage-len');
  const speech = join(work, 'speech10.wav');
  spawnSync(process.execPath, [cli, '--storage', storage, 'tts', TEXT, '--output', speech]);
  const out = [];
  for (const seconds of [10, 60, 120]) {
    const audio = join(work, `speech-${seconds}.wav`);
    spawnSync('ffmpeg', ['-v', 'error', '-y', '-stream_loop', '-1', '-i', speech, '-t', String(seconds), audio]);
    const r = await timed(process.execPath, [cli, '--storage', storage, '--json', 'lipsync', '--avatar', portrait, '--audio', audio, '--output', join(work, `len-${seconds}.mp4`), '--quality', 'medium'], true);
    const result = JSON.parse(r.out);
    const stages = Object.fromEntries(result.stages.map((s) => [s.stage, s.wallSeconds]));
    out.push({ seconds, wallSeconds: Number(r.seconds.toFixed(2)), renderAndEncodeSeconds: stages.encode_video, peakNodeMB: r.peakNodeMB, peakTreeMB: r.peakTreeMB, lagFrames: result.inspection?.lagFrames, correlation: result.inspection?.correlation });
  }
  return out;
}

export async function benchLipsync() {
  const work = mkdtempSync(join(tmpdir(), 'avatar-bench-lipsync-'));
  try {
    return { renderer: await benchRenderer(work), endToEnd: await benchEndToEnd(work), lengths: await benchLengths(work) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await benchLipsync();
  console.log(`renderer alone, ${r.renderer.width}x${r.renderer.height}, one thread: RGBA ${r.renderer.fps_none} frames/s without head motion, ${r.renderer.fps_subtle} subtle, ${r.renderer.fps_lively} lively; I420 (as the pipeline draws them) ${r.renderer.fps_i420_none} / ${r.renderer.fps_i420_subtle} / ${r.renderer.fps_i420_lively}`);
  const e = r.endToEnd;
  console.log(`end to end (text -> MP4, medium, process start included): ${e.videoSeconds} s of video in ${e.wallSeconds} s; render+encode ${e.renderAndEncodeSeconds} s vs ffmpeg alone on the same ${e.frames} frames ${e.ffmpegAloneSeconds} s from RGBA (x${e.ratioToFfmpegAlone}), ${e.ffmpegAloneI420Seconds} s from I420 (x${e.ratioToFfmpegAloneI420}); peak RSS node ${e.peakNodeMB} MB, with ffmpeg ${e.peakTreeMB} MB`);
  console.log('stages:', JSON.stringify(e.stages));
  for (const l of r.lengths) console.log(`lipsync ${l.seconds} s: ${l.wallSeconds} s wall, render+encode ${l.renderAndEncodeSeconds} s, peak RSS node ${l.peakNodeMB} MB (with ffmpeg ${l.peakTreeMB} MB), lag ${l.lagFrames} frames, r ${l.correlation}`);
  console.log(JSON.stringify({ bench: 'lipsync', ...r }));
  writeFileSync(join(tmpdir(), 'avatar-bench-lipsync.json'), JSON.stringify(r));
}
