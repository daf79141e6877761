import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMp4Summary, readWavInfo } from './container.js';

// Every answer of the header readers is checked against ffprobe's on real files ffmpeg and espeak-ng write.
const run = promisify(execFile);
let dir: string;
const file = (name: string): string => join(dir, name);

interface Probed {
  durationSeconds?: number;
  streams: Array<{ type: string; codec: string; width?: number; height?: number; sampleRate?: number; channels?: number; durationSeconds?: number; frames?: number; frameRate?: number; start?: number }>;
}

/** ffprobe's view of a file, in the reader's terms. */
async function probe(path: string): Promise<Probed> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries',
    'stream=codec_type,codec_name,width,height,sample_rate,channels,duration,nb_frames,avg_frame_rate,start_time:format=duration', '-of', 'json', path]);
  const info = JSON.parse(stdout) as { streams: Array<Record<string, string | number>>; format: { duration?: string } };
  const num = (v: string | number | undefined): number | undefined => (v === undefined || v === 'N/A' ? undefined : Number(v));
  const rate = (v: string | number | undefined): number | undefined => {
    const [n, d] = String(v ?? '').split('/').map(Number);
    return n && d ? n / d : undefined;
  };
  return {
    durationSeconds: num(info.format.duration),
    streams: info.streams.map((s) => ({
      type: String(s.codec_type), codec: String(s.codec_name), width: num(s.width), height: num(s.height),
      sampleRate: num(s.sample_rate), channels: num(s.channels), durationSeconds: num(s.duration),
      frames: num(s.nb_frames), frameRate: rate(s.avg_frame_rate), start: num(s.start_time),
    })),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-container-'));
  const gen = (...args: string[]) => run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args]);
  await Promise.all([
    gen('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=16000:duration=1.5', file('s16.wav')),
    gen('-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=44100:duration=2.25', '-ac', '2', '-c:a', 'pcm_f32le', file('f32.wav')),
    gen('-f', 'lavfi', '-i', 'sine=frequency=300:sample_rate=48000:duration=0.7', '-ac', '3', '-c:a', 'pcm_s24le', file('s24x3.wav')),
    gen('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=22050:duration=1', file('tone.mp3')),
    gen('-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=8000:duration=1', '-c:a', 'adpcm_ms', file('adpcm.wav')),
    gen('-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=25:duration=2', '-f', 'lavfi', '-i', 'sine=duration=2',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-movflags', '+faststart', '-shortest', file('fast.mp4')),
    gen('-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=30:duration=1.5', '-f', 'lavfi', '-i', 'sine=duration=1.5',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', file('moov-at-end.mp4')),
    gen('-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=25:duration=1', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', file('silent.mp4')),
    // B-frames (composition offsets) and AAC priming, both behind edit lists, as the encoder writes them
    gen('-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=25:duration=2', '-f', 'lavfi', '-i', 'sine=duration=2',
      '-c:v', 'libx264', '-preset', 'medium', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-movflags', '+faststart', '-shortest', file('bframes.mp4')),
    gen('-f', 'lavfi', '-i', 'testsrc=size=160x90:rate=30000/1001:duration=1.5', '-f', 'lavfi', '-i', 'sine=duration=1.5',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', file('ntsc.mp4')),
    // composition offsets without an edit list: ffmpeg's start rule there is left to ffprobe
    gen('-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=25:duration=2', '-c:v', 'libx264', '-preset', 'medium', '-pix_fmt', 'yuv420p', '-use_editlist', '0', file('no-edits.mp4')),
    gen('-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=25:duration=1', '-f', 'lavfi', '-i', 'sine=duration=1',
      '-c:v', 'libvpx-vp9', '-deadline', 'realtime', '-c:a', 'libopus', '-shortest', file('clip.webm')),
    run('espeak-ng', ['-w', file('espeak.wav'), 'Reading a header.']),
    writeFile(file('words.wav'), 'RIFF is a word, WAVE is another\n'),
  ]);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readWavInfo', () => {
  it.each(['s16.wav', 'f32.wav', 's24x3.wav', 'espeak.wav'])('reads %s as ffprobe does', async (name) => {
    const ours = await readWavInfo(file(name));
    const probed = await probe(file(name));
    const audio = probed.streams[0];
    expect(ours).toBeDefined();
    expect(ours?.sampleRate).toBe(audio?.sampleRate);
    expect(ours?.channels).toBe(audio?.channels);
    expect(ours?.codec).toBe(audio?.codec);
    expect(Math.abs((ours?.durationSeconds ?? 0) - (audio?.durationSeconds ?? -1))).toBeLessThan(1e-5);
  });

  it('leaves anything it does not fully understand to ffprobe', async () => {
    expect(await readWavInfo(file('tone.mp3'))).toBeUndefined();
    expect(await readWavInfo(file('adpcm.wav'))).toBeUndefined();
    expect(await readWavInfo(file('words.wav'))).toBeUndefined();
    expect(await readWavInfo(file('missing.wav'))).toBeUndefined();
    const whole = await readFile(file('s16.wav'));
    // cut short: the data chunk claims more bytes than the file has
    await writeFile(file('short.wav'), whole.subarray(0, whole.length - 100));
    expect(await readWavInfo(file('short.wav'))).toBeUndefined();
    // a streamed header, its sizes never filled in
    const streamed = Buffer.from(whole);
    streamed.writeUInt32LE(0xffffffff, 4);
    streamed.writeUInt32LE(0xffffffff, 40);
    await writeFile(file('streamed.wav'), streamed);
    expect(await readWavInfo(file('streamed.wav'))).toBeUndefined();
  });
});

describe('readMp4Summary', () => {
  beforeAll(async () => {
    // the same streams, the video (then the audio) starting later: an empty edit before the media
    const copy = (offset: 'video' | 'audio', name: string) => run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y',
      ...(offset === 'audio' ? ['-itsoffset', '0.3'] : []), '-i', file('bframes.mp4'),
      ...(offset === 'video' ? ['-itsoffset', '0.5'] : []), '-i', file('bframes.mp4'),
      '-map', '1:v', '-map', '0:a', '-c', 'copy', file(name)]);
    await Promise.all([copy('video', 'video-late.mp4'), copy('audio', 'audio-late.mp4')]);
  });

  it.each(['fast.mp4', 'bframes.mp4', 'ntsc.mp4', 'video-late.mp4', 'audio-late.mp4'])('reads frame rate, frame count and start times of %s as ffprobe does', async (name) => {
    const ours = await readMp4Summary(file(name));
    const probed = await probe(file(name));
    expect(ours?.tracks.length).toBe(probed.streams.length);
    for (const [i, stream] of probed.streams.entries()) {
      const track = ours?.tracks[i];
      expect(track?.sampleCount).toBe(stream.frames);
      // ffprobe rounds an edit to its stream's time base: 0.276009 s where the edit says 0.276
      expect(Math.abs((track?.startSeconds ?? -1) - (stream.start ?? 0))).toBeLessThan(1e-4);
      if (stream.type === 'video') expect(Math.abs((track?.frameRate ?? 0) - (stream.frameRate ?? -1))).toBeLessThan(1e-9);
    }
    // the two copies really do start late, so the start rule is exercised
    if (name === 'video-late.mp4') expect(ours?.tracks.find((t) => t.type === 'video')?.startSeconds).toBeCloseTo(0.5, 3);
    if (name === 'audio-late.mp4') expect(ours?.tracks.find((t) => t.type === 'audio')?.startSeconds).toBeGreaterThan(0.25);
  });

  it('leaves the start to ffprobe where ffmpeg would read composition offsets without an edit list', async () => {
    const ours = await readMp4Summary(file('no-edits.mp4'));
    const probed = await probe(file('no-edits.mp4'));
    expect(probed.streams[0]?.start).toBeGreaterThan(0);
    expect(ours?.tracks[0]?.type).toBe('video');
    expect(ours?.tracks[0]?.startSeconds).toBeUndefined();
  });

  it.each(['fast.mp4', 'moov-at-end.mp4', 'silent.mp4'])('reads the tracks of %s as ffprobe does', async (name) => {
    const ours = await readMp4Summary(file(name));
    const probed = await probe(file(name));
    expect(ours).toBeDefined();
    expect(ours?.tracks.map((t) => t.type)).toEqual(probed.streams.map((s) => s.type));
    const video = ours?.tracks.find((t) => t.type === 'video');
    const stream = probed.streams.find((s) => s.type === 'video');
    expect(video?.codec).toBe('avc1');
    expect([video?.width, video?.height]).toEqual([stream?.width, stream?.height]);
    expect(Math.abs((ours?.durationSeconds ?? 0) - (probed.durationSeconds ?? -1))).toBeLessThan(0.03);
  });

  it('gives up on anything that is not a whole MP4', async () => {
    expect(await readMp4Summary(file('clip.webm'))).toBeUndefined();
    expect(await readMp4Summary(file('s16.wav'))).toBeUndefined();
    const whole = await readFile(file('moov-at-end.mp4'));
    // the movie box is written last: cut off, there is none
    await writeFile(file('cut.mp4'), whole.subarray(0, Math.floor(whole.length * 0.8)));
    expect(await readMp4Summary(file('cut.mp4'))).toBeUndefined();
    // a box that claims to run past the end of the file
    const broken = Buffer.from(await readFile(file('fast.mp4')));
    broken.writeUInt32BE(0x7fffffff, 0);
    await writeFile(file('broken.mp4'), broken);
    expect(await readMp4Summary(file('broken.mp4'))).toBeUndefined();
    // a movie header whose duration is unknown (all ones) or zero, as fragmented files have
    const fast = await readFile(file('fast.mp4'));
    const mvhd = fast.indexOf(Buffer.from('mvhd'));
    expect(mvhd).toBeGreaterThan(0);
    for (const [name, duration] of [['unknown.mp4', 0xffffffff], ['zero.mp4', 0]] as const) {
      const copy = Buffer.from(fast);
      copy.writeUInt32BE(duration, mvhd + 4 + 16); // version 0: flags, two times, time scale, duration
      await writeFile(file(name), copy);
      expect(await readMp4Summary(file(name))).toBeUndefined();
    }
  });
});
