import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMp4Summary, readWavInfo } from './container.js';
import { probeMedia } from './probe.js';

// Every answer of the header readers is checked against ffprobe's on real files ffmpeg and espeak-ng write.
const run = promisify(execFile);
let dir: string;
const file = (name: string): string => join(dir, name);

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
    const probed = await probeMedia(file(name));
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
  it.each(['fast.mp4', 'moov-at-end.mp4', 'silent.mp4'])('reads the tracks of %s as ffprobe does', async (name) => {
    const ours = await readMp4Summary(file(name));
    const probed = await probeMedia(file(name));
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
