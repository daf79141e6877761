// avatar-plugin-label: an encode engine that burns a visible label into the video, for the disclosure
// many places now ask of synthetic media ("AI-generated"), a presenter's name or a copyright line.
// It encodes with ffmpeg like the built-in engine and draws the label with ffmpeg's drawtext filter.
// Plain JavaScript; @avatar/core (the host's) gives it error codes of its own, where ffmpeg is, and
// child processes that die with the host.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { FFMPEG_INSTALL, defineErrorCodes, ffmpegPath, ffprobePath, guardedCommand, killChild, PLUGIN_API_VERSION } from '@avatar/core';

const errors = defineErrorCodes('label', {
  FFMPEG_MISSING: {
    message: 'ffmpeg with the drawtext filter is not available: {detail}',
    hint: 'Install it: sudo apt-get install -y ffmpeg (or point AVATAR_FFMPEG at one built with libfreetype).',
    httpStatus: 503,
  },
  FONT_MISSING: {
    message: 'no font for the label: {detail}',
    hint: 'Install one (sudo apt-get install -y fonts-dejavu-core) or set the fontFile option to a .ttf or .otf file.',
    httpStatus: 503,
  },
  ENCODE_FAILED: {
    message: 'ffmpeg could not encode {output} with its label: {reason}',
    hint: 'Check the inputs and the label options; ffmpeg\'s own words are in the message.',
  },
});

/** The font drawtext uses: the option, else what fontconfig picks for "sans", else DejaVu Sans where Debian puts it. */
function findFont(fontFile) {
  if (fontFile) return existsSync(fontFile) ? fontFile : undefined;
  const matched = spawnSync('fc-match', ['-f', '%{file}', 'sans'], { encoding: 'utf8' });
  if (matched.status === 0 && matched.stdout && existsSync(matched.stdout)) return matched.stdout;
  const dejavu = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
  return existsSync(dejavu) ? dejavu : undefined;
}

// where the label sits: x and y as drawtext expressions, with a margin of 3 % of the height
const PLACES = {
  'top-left': ['h*0.03', 'h*0.03'],
  'top-right': ['w-tw-h*0.03', 'h*0.03'],
  'bottom-left': ['h*0.03', 'h-th-h*0.03'],
  'bottom-right': ['w-tw-h*0.03', 'h-th-h*0.03'],
};

/**
 * The drawtext filter. The label and the font are read from files named relative to the folder ffmpeg
 * runs in (label.txt, a link to the font), so no path or text needs escaping in the filter graph; and
 * `expansion=none`, or drawtext would read "%{...}" in a label as an expression and "100% real" as none.
 */
function labelFilter(options, height) {
  const [x, y] = PLACES[options.position];
  const pad = Math.max(2, Math.round(height * options.size * 0.3));
  return [
    'fontfile=font', 'textfile=label.txt', 'expansion=none',
    `fontcolor=white@${options.opacity}`,
    `fontsize=h*${options.size}`,
    `x=${x}`, `y=${y}`,
    'box=1', `boxcolor=black@${(options.opacity * 0.5).toFixed(2)}`, `boxborderw=${pad}`,
  ].join(':');
}

// the same meaning of crf and preset as the built-in engine: x264's scale, mapped onto VP9's for WebM
const vp9Crf = (crf) => Math.round(Math.min(63, Math.max(0, crf * 1.25)));

function codecArgs(settings) {
  if (settings.format === 'webm') {
    return ['-c:v', 'libvpx-vp9', '-crf', String(vp9Crf(settings.crf)), '-b:v', '0', '-deadline', 'good', '-cpu-used', '4',
      '-c:a', 'libopus', '-b:a', `${settings.audioBitrateKbps}k`, '-f', 'webm'];
  }
  return ['-c:v', 'libx264', '-crf', String(settings.crf), '-preset', settings.preset, '-profile:v', 'high',
    '-c:a', 'aac', '-b:a', `${settings.audioBitrateKbps}k`, '-movflags', '+faststart', '-f', 'mp4'];
}

/** The longer side at the preset's size (never enlarged), both sides even, BT.709 as the built-in encoder writes. */
function scaleFilter(size) {
  const side = `trunc(min(${size},max(iw,ih))/2)*2`;
  return `scale=w='if(gte(iw,ih),${side},-2)':h='if(gte(iw,ih),-2,${side})':flags=lanczos:out_color_matrix=bt709:out_range=tv`;
}

/** Runs ffmpeg in `cwd`; `feed` writes its stdin (frames), or nothing. Kills it when the signal aborts. */
function runFfmpeg(args, { signal, feed, cwd }) {
  return new Promise((resolve, reject) => {
    const { command, args: guarded } = guardedCommand(ffmpegPath(), args);
    const child = spawn(command, guarded, { cwd, stdio: [feed ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr = (stderr + d.toString()).slice(-4000); });
    // (killChild, not child.kill: Node's kill of a child that did not start signals this whole process group)
    const onAbort = () => killChild(child, 'SIGKILL');
    signal.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error) => {
      signal.removeEventListener('abort', onAbort);
      reject(error.code === 'ENOENT' ? errors.create('FFMPEG_MISSING', { detail: `${ffmpegPath()} not found` }) : error);
    });
    child.on('close', (code) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) reject(signal.reason);
      else if (code === 0) resolve();
      else reject(new Error(stderr.trim().split('\n').filter(Boolean).pop() ?? `ffmpeg exited with ${code}`));
    });
    if (feed) {
      child.stdin.on('error', () => undefined); // ffmpeg gone: its exit says why
      feed(child.stdin).then(() => child.stdin.end(), (error) => {
        killChild(child, 'SIGKILL');
        reject(error);
      });
    }
  });
}

/** Writes each frame and waits until ffmpeg's pipe has taken it: the renderer may reuse a frame's buffer once we ask for the next. */
async function writeFrames(stdin, frames, signal, progress) {
  let written = 0;
  for await (const frame of frames.frames) {
    signal.throwIfAborted();
    await new Promise((resolve, reject) => stdin.write(frame, (error) => (error ? reject(error) : resolve())));
    written += 1;
    if (written % 10 === 0) progress(Math.min(0.99, written / frames.frameCount));
  }
}

async function encode(input, options, ctx) {
  ctx.signal.throwIfAborted();
  const font = findFont(options.fontFile);
  if (!font) throw errors.create('FONT_MISSING', { detail: options.fontFile ? `${options.fontFile} does not exist` : 'fontconfig found no sans font' });
  const { settings } = input;
  // written beside the target under a hidden name and renamed when whole: a failed or cancelled run leaves nothing
  // (absolute: ffmpeg runs in a scratch folder of its own)
  const outputPath = resolve(input.outputPath);
  const partial = join(dirname(outputPath), `.${basename(outputPath)}.label-${process.pid}-${Date.now().toString(36)}`);
  const scratch = await mkdtemp(join(ctx.workDir, 'label-'));
  await writeFile(join(scratch, 'label.txt'), options.text);
  await symlink(font, join(scratch, 'font'));
  ctx.progress(0, 'encoding with a label');
  try {
    let args;
    let feed;
    if (input.kind === 'still') {
      const height = settings.size;
      args = ['-loop', '1', '-framerate', String(settings.fps), '-i', resolve(input.imagePath), '-i', resolve(input.audioPath),
        '-vf', `${scaleFilter(settings.size)},drawtext=${labelFilter(options, height)},format=yuv420p`, '-shortest'];
    } else {
      const { frames } = input;
      const height = frames.height;
      const pixFmt = frames.pixelFormat ?? 'rgba';
      const toYuv = pixFmt === 'rgba' ? 'scale=out_color_matrix=bt709:out_range=tv,' : '';
      args = ['-f', 'rawvideo', '-pix_fmt', pixFmt, '-s', `${frames.width}x${frames.height}`, '-framerate', String(frames.fps), '-i', 'pipe:0',
        '-i', resolve(input.audioPath), '-vf', `${toYuv}drawtext=${labelFilter(options, height)},format=yuv420p`, '-shortest'];
      feed = (stdin) => writeFrames(stdin, frames, ctx.signal, ctx.progress);
    }
    args = ['-v', 'error', '-nostdin', '-y', ...args, '-map', '0:v:0', '-map', '1:a:0', '-r', String(settings.fps),
      '-colorspace', 'bt709', '-color_primaries', 'bt709', '-color_trc', 'bt709', ...codecArgs(settings), partial];
    try {
      await runFfmpeg(args, { signal: ctx.signal, cwd: scratch, ...(feed && { feed }) });
    } catch (error) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (error && typeof error === 'object' && Symbol.for('avatar.error') in error) throw error;
      throw errors.create('ENCODE_FAILED', { output: input.outputPath, reason: error instanceof Error ? error.message : String(error) });
    }
    ctx.signal.throwIfAborted();
    await rename(partial, outputPath);
    const { size } = await stat(outputPath);
    const probed = probe(outputPath);
    ctx.progress(1);
    return { outputPath, format: settings.format, ...probed, fps: settings.fps, bytes: size };
  } finally {
    await rm(partial, { force: true });
    await rm(scratch, { recursive: true, force: true });
  }
}

/** What the written file holds: its picture size and duration, as ffprobe reads them. */
function probe(path) {
  const r = spawnSync(ffprobePath(), ['-v', 'error', '-of', 'json', '-select_streams', 'v:0', '-show_entries', 'stream=width,height:format=duration', path], { encoding: 'utf8' });
  const parsed = r.status === 0 ? JSON.parse(r.stdout) : {};
  const stream = parsed.streams?.[0] ?? {};
  return { width: stream.width ?? 0, height: stream.height ?? 0, durationSeconds: Number(parsed.format?.duration ?? 0) };
}

/** The engine: picked with --engine encode=label, its options with --engine-option encode.text=... */
export const labelPlugin = {
  name: 'label',
  stage: 'encode',
  apiVersion: PLUGIN_API_VERSION,
  description: 'ffmpeg with a visible label burnt into every frame ("AI-generated" unless told otherwise)',
  // ffmpeg runs as its own process and holds no model
  resources: { device: 'cpu' },
  options: {
    type: 'object',
    properties: {
      text: { type: 'string', minLength: 1, maxLength: 120, default: 'AI-generated', description: 'the words on the label' },
      position: { type: 'string', enum: Object.keys(PLACES), default: 'bottom-right', description: 'which corner the label sits in' },
      size: { type: 'number', minimum: 0.02, maximum: 0.2, default: 0.045, description: 'text height as a share of the video height' },
      opacity: { type: 'number', minimum: 0.1, maximum: 1, default: 0.85, description: 'how opaque the text is (its box is half as opaque)' },
      fontFile: { type: 'string', description: 'a .ttf or .otf font; default: fontconfig\'s sans font' },
    },
  },
  license: () => ({
    code: 'MIT (runs ffmpeg with libx264 and libfreetype: GPL-2.0-or-later as built by Debian)',
    commercialUse: true,
    models: [],
  }),
  async check() {
    const r = spawnSync(ffmpegPath(), ['-hide_banner', '-filters'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return { ok: false, detail: `${ffmpegPath()} not found`, install: FFMPEG_INSTALL };
    if (!/\bdrawtext\b/.test(r.stdout)) return { ok: false, detail: `${ffmpegPath()} has no drawtext filter`, install: 'an ffmpeg built with libfreetype (Debian\'s is)' };
    const font = findFont();
    if (!font) return { ok: false, detail: 'no sans font found by fontconfig', install: 'sudo apt-get install -y fonts-dejavu-core' };
    return { ok: true, detail: `${ffmpegPath()} with drawtext, font ${font}` };
  },
  async load(ctx) {
    const options = ctx.options;
    return {
      run: (input, runCtx) => encode(input, options, runCtx),
      async unload() {},
    };
  },
};

export const plugins = [labelPlugin];
