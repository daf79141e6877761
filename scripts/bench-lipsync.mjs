// The talking head's speed and memory: the renderer alone (one core, 512x512), end-to-end runs of the CLI
// (text -> MP4, process start included) beside ffmpeg alone encoding the same frames at the same settings,
// and render + encode of 10, 60 and 120 s of speech (time and peak memory against length).
// Imports the built packages (npm run build).   node scripts/bench-lipsync.mjs [--renderer]
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
// a 10.6 s clip with the default voice: the target is stated for a 10 s clip
const TEXT = 'Hello! I am Grace. This video was made from one photo and this sentence, on an ordinary computer, without a graphics card, in a few seconds.';

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
  const loaded = await face.load({ log: silent, storageDir: work, options: {} });
  const ctx = { signal: new AbortController().signal, progress() {}, log: silent, workDir: work };
  const avatar = await loaded.run({ imagePath: portrait, prepare: { outputPath: join(work, 'avatar.png'), size: 512 } }, ctx);
  await loaded.unload();
  const { data, info } = await sharp(avatar.imagePath).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const image = { width: info.width, height: info.height, data: new Uint8Array(data) };
  // a real speech track drives the mouth
  const tts = (await import(join(root, 'packages/tts/dist/index.js'))).plugins.find((p) => p.name === 'flite');
  const speaker = await tts.load({ log: silent, storageDir: work, options: {} });
  const speech = await speaker.run({ text: TEXT, voice: { engine: 'flite', voice: 'rms', language: 'en-US', rate: 1, pitch: 0 }, outputPath: join(work, 'r.wav'), maxSeconds: 60 }, ctx);
  const track = computeMouthTrack(speech, { fps: 25 });
  const out = { width: image.width, height: image.height, frames: track.frameCount };
  // RGBA frames, and I420 frames as the pipeline draws them for the encoder: with the native addon's
  // compiled warp when it is built (what the pipeline uses), and with the TypeScript warp
  out.kernel = new FaceRenderer(image, avatar.face.landmarks, { pixelFormat: 'yuv420p' }).kernel;
  /** Median frames/s over three passes of the track, after 50 frames of warm-up. */
  const fps = (img, landmarks, options, motion, faceScale) => {
    const renderer = new FaceRenderer(img, landmarks, options);
    const state = (i) => ({ blink: 0, ...headMotionAt(i / 25, motion, 1, faceScale) });
    for (let i = 0; i < 50; i++) renderer.render(poseAt(track, i % track.frameCount), state(i));
    const rounds = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      for (let i = 0; i < track.frameCount; i++) renderer.render(poseAt(track, i), state(i));
      rounds.push(track.frameCount / ((performance.now() - t0) / 1000));
    }
    return Math.round(median(rounds));
  };
  const configs = [['rgba', 'fps_', 'auto'], ['yuv420p', 'fps_i420_', 'auto'], ['yuv420p', 'fps_i420_js_', 'js']];
  for (const [format, prefix, kernel] of configs) for (const motion of ['none', 'subtle', 'lively']) {
    out[`${prefix}${motion}`] = fps(image, avatar.face.landmarks, { pixelFormat: format, kernel }, motion, 100);
  }
  // at 1024 px (the photo enlarged, its landmarks with it): what --quality high draws
  const { data: big } = await sharp(avatar.imagePath).resize(image.width * 2, image.height * 2, { kernel: 'lanczos3' }).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  const large = { width: image.width * 2, height: image.height * 2, data: new Uint8Array(big) };
  const landmarks2 = avatar.face.landmarks.map((p) => ({ x: p.x * 2 + 0.5, y: p.y * 2 + 0.5 }));
  for (const motion of ['none', 'subtle', 'lively']) out[`fps_i420_1024_${motion}`] = fps(large, landmarks2, { pixelFormat: 'yuv420p' }, motion, 200);
  return out;
}

/**
 * The CLI end to end, beside ffmpeg alone encoding the same frames and audio at the same settings. The
 * runs are interleaved (pipeline, ffmpeg fed RGBA, ffmpeg fed I420, and again), so each comparison is
 * between runs seconds apart: this machine's speed drifts by more than the differences measured.
 */
/**
 * A coordinator in this process with every engine but the inspector: render + encode alone, the work
 * ffmpeg alone is compared with (in a CLI run the inspector decodes the video beside the encode, on the
 * same cores).
 */
async function coordinatorWithoutInspector(storage) {
  const core = await import(join(root, 'packages/core/dist/index.js'));
  const tts = await import(join(root, 'packages/tts/dist/index.js'));
  const lipsync = await import(join(root, 'packages/lipsync/dist/index.js'));
  const registry = new core.PluginRegistry({ log: core.silentLogger });
  for (const pkg of ['@avatar/tts', '@avatar/face', '@avatar/encode']) await registry.loadPackage(pkg, { from: [root] });
  for (const plugin of lipsync.plugins) if (plugin.stage !== 'inspect') registry.register(plugin, '@avatar/lipsync');
  return new core.PipelineCoordinator({ registry, resources: new core.ResourceManager(), voices: new core.VoiceProfileStore(storage), storageDir: storage, defaultVoice: tts.DEFAULT_VOICE, log: core.silentLogger });
}

export async function benchEndToEnd(work, rounds = Number(process.env.BENCH_ROUNDS ?? 5)) {
  const storage = join(work, 'storage');
  const pipeline = (sampled = false) => timed(process.execPath, [cli, '--storage', storage, '--json', 'pipeline', 'run', TEXT, '--avatar', portrait, '--output', join(work, 'e2e.mp4'), '--quality', 'medium', '--keep-intermediates'], sampled);
  // a first run (not timed) gives the frames and the speech that ffmpeg alone is fed
  const first = JSON.parse((await pipeline()).out);
  const workDir = first.workDir;
  const raw = join(work, 'frames.rgba');
  const probe = JSON.parse(spawnSync('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_streams', join(work, 'e2e.mp4')], { encoding: 'utf8' }).stdout);
  const v = probe.streams.find((s) => s.codec_type === 'video');
  spawnSync('ffmpeg', ['-v', 'error', '-y', '-i', join(work, 'e2e.mp4'), '-f', 'rawvideo', '-pix_fmt', 'rgba', raw]);
  const { QUALITY_PRESETS } = await import(join(root, 'packages/core/dist/index.js'));
  const medium = QUALITY_PRESETS.medium;
  // ffmpeg alone, fed the frames as RGBA (converted by ffmpeg) and as I420 (what the pipeline sends)
  const yuv = join(work, 'frames.yuv');
  spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgba', '-s', `${v.width}x${v.height}`, '-i', raw,
    '-vf', 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p', '-f', 'rawvideo', yuv]);
  const bareRun = (file, pixFmt, filter) => timed('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', pixFmt, '-s', `${v.width}x${v.height}`, '-r', '25', '-i', file,
    '-i', join(workDir, 'speech.wav'), '-map', '0:v', '-map', '1:a', '-c:v', 'libx264', '-preset', medium.preset, '-crf', String(medium.crf),
    '-vf', filter, '-c:a', 'aac', '-b:a', '128k', '-ar', '48000', '-movflags', '+faststart', join(work, 'bare.mp4')]);
  const alone = await coordinatorWithoutInspector(join(work, 'storage-alone'));
  const renderEncodeAlone = async () => {
    const result = await alone.execute({ text: TEXT, avatarImage: portrait, outputPath: join(work, 'alone.mp4'), config: { videoQuality: 'medium', captions: 'none' } });
    if (!result.success) throw new Error(`render + encode alone: ${JSON.stringify(result.error)}`);
    return result.stages.find((s) => s.stage === 'encode_video').wallSeconds;
  };
  await renderEncodeAlone(); // (warms this process's engines and prepares the photo)
  const runs = [];
  for (let i = 0; i < rounds; i++) {
    const r = await pipeline();
    const result = JSON.parse(r.out);
    rmSync(result.workDir, { recursive: true, force: true });
    const stages = Object.fromEntries(result.stages.map((s) => [s.stage, s.wallSeconds]));
    const rgba = (await bareRun(raw, 'rgba', 'scale=out_color_matrix=bt709:out_range=tv,format=yuv420p')).seconds;
    const i420 = (await bareRun(yuv, 'yuv420p', 'setsar=1')).seconds;
    const uninspected = await renderEncodeAlone();
    runs.push({ seconds: r.seconds, video: result.durationSeconds, stages, rgba, i420, uninspected, ratio: stages.encode_video / rgba, ratioI420: stages.encode_video / i420, ratioUninspectedI420: uninspected / i420 });
  }
  // memory in a run of its own: sampling /proc costs CPU the timed runs should not pay
  const sampled = await pipeline(true);
  rmSync(JSON.parse(sampled.out).workDir, { recursive: true, force: true });
  rmSync(workDir, { recursive: true, force: true });
  const mid = [...runs].sort((a, b) => a.seconds - b.seconds)[Math.floor(runs.length / 2)];
  const range = (xs, digits) => [Math.min(...xs), Math.max(...xs)].map((x) => Number(x.toFixed(digits)));
  return {
    videoSeconds: mid.video,
    frames: Math.round(mid.video * 25),
    rounds,
    wallSeconds: Number(median(runs.map((r) => r.seconds)).toFixed(3)),
    wallSecondsRange: range(runs.map((r) => r.seconds), 3),
    stages: mid.stages,
    peakNodeMB: sampled.peakNodeMB,
    peakTreeMB: sampled.peakTreeMB,
    renderAndEncodeSeconds: Number(median(runs.map((r) => r.stages.encode_video)).toFixed(3)),
    ffmpegAloneSeconds: Number(median(runs.map((r) => r.rgba)).toFixed(3)),
    ffmpegAloneI420Seconds: Number(median(runs.map((r) => r.i420)).toFixed(3)),
    // medians of the per-round ratios: each compares runs made seconds apart
    ratioToFfmpegAlone: Number(median(runs.map((r) => r.ratio)).toFixed(2)),
    ratioToFfmpegAloneRange: range(runs.map((r) => r.ratio), 2),
    ratioToFfmpegAloneI420: Number(median(runs.map((r) => r.ratioI420)).toFixed(2)),
    ratioToFfmpegAloneI420Range: range(runs.map((r) => r.ratioI420), 2),
    // render + encode with no inspection beside them (in this process, captions none, as ffmpeg alone has)
    renderAndEncodeUninspectedSeconds: Number(median(runs.map((r) => r.uninspected)).toFixed(3)),
    ratioUninspectedToFfmpegAloneI420: Number(median(runs.map((r) => r.ratioUninspectedI420)).toFixed(2)),
    ratioUninspectedToFfmpegAloneI420Range: range(runs.map((r) => r.ratioUninspectedI420), 2),
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

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--renderer') {
  // the renderer alone: node scripts/bench-lipsync.mjs --renderer
  const work = mkdtempSync(join(tmpdir(), 'avatar-bench-renderer-'));
  try {
    console.log(JSON.stringify({ bench: 'renderer', ...(await benchRenderer(work)) }));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const r = await benchLipsync();
  const q = r.renderer;
  console.log(`renderer alone, ${q.width}x${q.height}, one thread: RGBA ${q.fps_none} frames/s without head motion, ${q.fps_subtle} subtle, ${q.fps_lively} lively; I420 as the pipeline draws them (${q.kernel} warp) ${q.fps_i420_none} / ${q.fps_i420_subtle} / ${q.fps_i420_lively}; I420 with the TypeScript warp ${q.fps_i420_js_none} / ${q.fps_i420_js_subtle} / ${q.fps_i420_js_lively}`);
  if (q.fps_i420_1024_none) console.log(`renderer alone at ${q.width * 2}x${q.height * 2}, I420 (${q.kernel}): ${q.fps_i420_1024_none} / ${q.fps_i420_1024_subtle} / ${q.fps_i420_1024_lively} frames/s`);
  const e = r.endToEnd;
  console.log(`end to end (text -> MP4, medium, process start included), median of ${e.rounds}: ${e.videoSeconds} s of video in ${e.wallSeconds} s (range ${e.wallSecondsRange.join('-')}); render+encode ${e.renderAndEncodeSeconds} s vs ffmpeg alone on the same ${e.frames} frames ${e.ffmpegAloneSeconds} s from RGBA (x${e.ratioToFfmpegAlone}, range ${e.ratioToFfmpegAloneRange.join('-')}), ${e.ffmpegAloneI420Seconds} s from I420 (x${e.ratioToFfmpegAloneI420}, range ${e.ratioToFfmpegAloneI420Range.join('-')}); peak RSS node ${e.peakNodeMB} MB, with ffmpeg ${e.peakTreeMB} MB`);
  console.log(`render + encode with no inspection beside them (in this process): ${e.renderAndEncodeUninspectedSeconds} s (x${e.ratioUninspectedToFfmpegAloneI420} ffmpeg alone from I420, range ${e.ratioUninspectedToFfmpegAloneI420Range.join('-')})`);
  console.log('stages:', JSON.stringify(e.stages));
  for (const l of r.lengths) console.log(`lipsync ${l.seconds} s: ${l.wallSeconds} s wall, render+encode ${l.renderAndEncodeSeconds} s, peak RSS node ${l.peakNodeMB} MB (with ffmpeg ${l.peakTreeMB} MB), lag ${l.lagFrames} frames, r ${l.correlation}`);
  console.log(JSON.stringify({ bench: 'lipsync', ...r }));
  writeFileSync(join(tmpdir(), 'avatar-bench-lipsync.json'), JSON.stringify(r));
}
