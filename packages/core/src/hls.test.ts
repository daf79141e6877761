import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HLS_INIT, HLS_PLAYLIST, HlsWriter, isHlsFile } from './hls.js';
import { fragmentSpan, movieTracks } from './container.js';

// A real fragmented MP4 as an encoder writes it live (ffmpeg: a key frame a second, a fragment each),
// fed to the HLS writer in odd-sized pieces, as a pipe hands it over.
let dir: string;
let fmp4: Buffer;
const SECONDS = 4.4;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'avatar-hls-'));
  const file = join(dir, 'live.mp4');
  execFileSync('ffmpeg', [
    '-v', 'error', '-f', 'lavfi', '-i', `testsrc2=size=160x120:rate=25:duration=${SECONDS}`, '-f', 'lavfi', '-i', `sine=frequency=300:sample_rate=16000:duration=${SECONDS}`,
    '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-keyint_min', '25', '-c:a', 'aac', '-ar', '48000',
    '-movflags', '+frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4', file,
  ]);
  fmp4 = await readFile(file);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Top-level boxes of an MP4 buffer, in order. */
function topBoxes(data: Buffer): { type: string; bytes: Buffer }[] {
  const out: { type: string; bytes: Buffer }[] = [];
  for (let at = 0; at + 8 <= data.length;) {
    const size = data.readUInt32BE(at);
    out.push({ type: data.toString('latin1', at + 4, at + 8), bytes: data.subarray(at, at + size) });
    at += size;
  }
  return out;
}

/** Writes `data` to the writer in pieces of the given sizes, in turn, waiting for each to be taken. */
async function feed(writer: HlsWriter, data: Buffer, sizes: readonly number[]): Promise<void> {
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const piece = data.subarray(at, at + (sizes[i % sizes.length] as number));
    at += piece.length;
    await new Promise<void>((resolve, reject) => writer.write(piece, (error) => (error ? reject(error) : resolve())));
  }
}

describe('HLS from a live fragmented MP4', () => {
  it('reads each fragment\'s start and length from the header\'s tracks', () => {
    const boxes = topBoxes(fmp4);
    const tracks = movieTracks(boxes.find((b) => b.type === 'moov')!.bytes);
    expect([...tracks.values()].map((t) => t.type).sort()).toEqual(['audio', 'video']);
    const spans = boxes.filter((b) => b.type === 'moof').map((b) => fragmentSpan(b.bytes, tracks)!);
    expect(spans.length).toBe(5);
    // a second each (the first a frame's fraction longer: ffmpeg lengthens the first video sample by the
    // audio encoder's priming, 1024 samples at 48 kHz), each starting where the one before ended
    expect(spans[0]!.start).toBe(0);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.start).toBeCloseTo(spans[i - 1]!.start + spans[i - 1]!.duration, 6);
    expect(spans[0]!.duration).toBeCloseTo(1 + 1024 / 48_000, 3);
    expect(spans.slice(1, 4).every((s) => Math.abs(s.duration - 1) < 1e-6)).toBe(true);
    expect(spans[4]!.duration).toBeCloseTo(SECONDS - 4, 5);
  });

  it('syncs nothing to disk while the stream comes, and every file once it has ended, before the ended playlist', async () => {
    const probe = await open(join(dir, 'live.mp4'), 'r');
    const handleType = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const sync = vi.spyOn(handleType, 'sync');
    try {
      const out = join(dir, 'synced');
      const writer = new HlsWriter(out);
      await feed(writer, fmp4, [65_536]);
      expect(sync).not.toHaveBeenCalled();
      expect(await readFile(join(out, HLS_PLAYLIST), 'utf8')).not.toContain('#EXT-X-ENDLIST');
      await new Promise<void>((resolve) => writer.end(resolve));
      // the header, five segments, and the ended playlist's own write
      expect(sync).toHaveBeenCalledTimes(7);
      expect(await readFile(join(out, HLS_PLAYLIST), 'utf8')).toContain('#EXT-X-ENDLIST');
    } finally {
      sync.mockRestore();
    }
  });

  it('writes the header, a segment per fragment and an EVENT playlist that ends with the stream; ffmpeg plays it', async () => {
    const out = join(dir, 'whole');
    const writer = new HlsWriter(out);
    await feed(writer, fmp4, [7, 1000, 65_536, 13]);
    // before the end: every fragment listed as soon as its media data was in, and no end mark
    const during = await readFile(join(out, HLS_PLAYLIST), 'utf8');
    expect(during).not.toContain('#EXT-X-ENDLIST');
    expect(during.match(/^seg-\d{5}\.m4s$/gm)).toEqual(['seg-00000.m4s', 'seg-00001.m4s', 'seg-00002.m4s', 'seg-00003.m4s', 'seg-00004.m4s']);
    await new Promise<void>((resolve) => writer.end(resolve));
    const playlist = await readFile(join(out, HLS_PLAYLIST), 'utf8');
    expect(playlist).toMatch(/^#EXTM3U\n/);
    expect(playlist).toContain('#EXT-X-PLAYLIST-TYPE:EVENT');
    expect(playlist).toContain(`#EXT-X-MAP:URI="${HLS_INIT}"`);
    expect(playlist.trimEnd().endsWith('#EXT-X-ENDLIST')).toBe(true);
    const durations = [...playlist.matchAll(/#EXTINF:([\d.]+),/g)].map((m) => Number(m[1]));
    expect(durations).toEqual([1.021, 1, 1, 1, 0.4]);
    // the files are the stream's own bytes, cut at its boxes; nothing else is in the folder
    const files = (await readdir(out)).sort();
    expect(files).toEqual([HLS_INIT, HLS_PLAYLIST, 'seg-00000.m4s', 'seg-00001.m4s', 'seg-00002.m4s', 'seg-00003.m4s', 'seg-00004.m4s']);
    expect(files.every(isHlsFile)).toBe(true);
    const parts = await Promise.all([HLS_INIT, ...files.filter((f) => f.startsWith('seg-'))].map((f) => readFile(join(out, f))));
    const played = topBoxes(fmp4).filter((b) => b.type !== 'mfra').map((b) => b.bytes);
    expect(Buffer.concat(parts).equals(Buffer.concat(played))).toBe(true);
    // a player reads the playlist: every frame and the sound, as long as the stream
    const probe = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-show_entries', 'stream=codec_type,nb_read_frames:format=duration', '-of', 'json', join(out, HLS_PLAYLIST)], { encoding: 'utf8' });
    expect(probe.status, probe.stderr).toBe(0);
    const info = JSON.parse(probe.stdout) as { streams: { codec_type: string; nb_read_frames?: string }[]; format: { duration: string } };
    expect(info.streams.find((s) => s.codec_type === 'video')?.nb_read_frames).toBe(String(Math.round(SECONDS * 25)));
    expect(info.streams.some((s) => s.codec_type === 'audio')).toBe(true);
    expect(Math.abs(Number(info.format.duration) - SECONDS)).toBeLessThan(0.1);
  });

  it('lists a fragment as soon as its media data is in, and writes nothing once destroyed', async () => {
    const boxes = topBoxes(fmp4);
    const firstMdat = boxes.findIndex((b) => b.type === 'mdat');
    const upToFirst = Buffer.concat(boxes.slice(0, firstMdat + 1).map((b) => b.bytes));
    const out = join(dir, 'early');
    const writer = new HlsWriter(out);
    await feed(writer, upToFirst, [upToFirst.length]);
    // the first second is playable before the second fragment has begun
    expect((await readFile(join(out, HLS_PLAYLIST), 'utf8')).match(/^seg-\d{5}\.m4s$/gm)).toEqual(['seg-00000.m4s']);
    // destroyed while a write is on its way (a cancelled run): once destroy has called back, nothing more
    // is written, so the folder can be removed for good
    const rest = fmp4.subarray(upToFirst.length);
    writer.write(rest);
    writer.destroy();
    await new Promise((resolve) => writer.once('close', resolve));
    await rm(out, { recursive: true, force: true });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await readdir(dir)).not.toContain('early');
  });

  it('refuses a stream that is not MP4 rather than writing nonsense', async () => {
    const writer = new HlsWriter(join(dir, 'bad'));
    const failed = new Promise<Error>((resolve) => writer.on('error', resolve));
    writer.write(Buffer.from('this is not an mp4 stream at all'));
    expect((await failed).message).toMatch(/not MP4/);
    const other = new HlsWriter(join(dir, 'bad2'));
    const refused = new Promise<Error>((resolve) => other.on('error', resolve));
    other.write(Buffer.from('\x00\x00\x00\x10mdat\x00\x00\x00\x00\x00\x00\x00\x00', 'latin1'));
    expect((await refused).message).toMatch(/starts with "mdat", not ftyp/);
    expect(await readdir(dir)).not.toContain('bad2');
  });

  it('names only its own files as servable', () => {
    for (const name of [HLS_PLAYLIST, HLS_INIT, 'seg-00000.m4s', 'seg-12345.m4s']) expect(isHlsFile(name), name).toBe(true);
    for (const name of ['../playlist.m3u8', 'seg-1.m4s', 'seg-00000.m4s.tmp', '.playlist.m3u8.tmp-1-ab', 'live.mp4', '']) expect(isHlsFile(name), name).toBe(false);
  });
});
