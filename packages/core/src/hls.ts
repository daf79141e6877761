import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fragmentSpan, movieTracks, type FragmentTrack } from './container.js';
import { atomicWriteFile, ensureDir, namingPath } from './fsutil.js';

/** The files of a live video, as a player asks for them. */
export const HLS_PLAYLIST = 'playlist.m3u8';
export const HLS_INIT = 'init.mp4';
/** seg-00000.m4s, seg-00001.m4s, ... */
export const HLS_SEGMENT = /^seg-\d{5}\.m4s$/;
/** Every name a live folder may hold: what a server may serve from it. */
export const isHlsFile = (name: string): boolean => name === HLS_PLAYLIST || name === HLS_INIT || HLS_SEGMENT.test(name);

/** Where a job's live video is written: `<storage>/live/<jobId>/`. */
export const liveDirFor = (storageDir: string, jobId: string): string => join(storageDir, 'live', jobId);

/** No fragment of a live video comes near this: a larger box is a stream that is not one. */
const MAX_BOX_BYTES = 1 << 30;

/**
 * Live files are renamed into place whole but not synced to disk one by one as they come: each fsync
 * held the first segment back by 10-30 ms on this machine. Once the stream has ended they are synced
 * together, before the ended playlist is written (durably): a power cut before then loses a job that
 * had not completed (its retry starts the folder afresh), never the files of one that had.
 */
const TRANSIENT = { durable: false } as const;

const segmentName = (index: number): string => `seg-${String(index).padStart(5, '0')}.m4s`;

/**
 * A fragmented MP4 as it is encoded (the live output of an encode engine) turned into HLS in a folder:
 * the header (ftyp + moov) as `init.mp4`, each fragment (moof + mdat: a second of video) as a segment,
 * and an EVENT playlist that lists a segment once it is whole, and ends (EXT-X-ENDLIST) when the stream
 * does. Every file is written under a temporary name and renamed, so a player never reads a torn one.
 * The stream is taken as it comes: a box is cut out once its bytes are in, a fragment written as soon as
 * its media data is, nothing else is kept.
 */
export class HlsWriter extends Writable {
  /** what has come in and is not cut into boxes yet, as it came (joined only to cut a box out) */
  private chunks: Buffer[] = [];
  private pendingBytes = 0;
  private header: Buffer[] = [];
  private tracks: ReadonlyMap<number, FragmentTrack> | undefined;
  /** the fragment being gathered: its moof (its mdat closes it) */
  private fragment: Buffer[] = [];
  private readonly segments: { name: string; seconds: number }[] = [];
  private started = false;
  /** the write in progress: destroy waits for it, so nothing is written once destroy has called back */
  private busy: Promise<void> = Promise.resolve();

  constructor(readonly dir: string) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    this.pendingBytes += chunk.byteLength;
    this.busy = this.drain();
    this.busy.then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.busy = (async () => {
      await this.drain();
      await this.closeFragment();
      await this.syncWritten();
      await this.writePlaylist(true);
    })();
    this.busy.then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.busy.then(() => callback(error), () => callback(error));
  }

  /** The first `n` bytes of what is pending (n at most pendingBytes). */
  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.byteLength >= n) return first;
    return Buffer.concat(this.chunks, this.pendingBytes).subarray(0, n);
  }

  /** Takes the first `n` bytes off what is pending. */
  private cut(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let box: Buffer;
    if (first.byteLength >= n) {
      box = first.subarray(0, n);
      if (first.byteLength > n) this.chunks[0] = first.subarray(n);
      else this.chunks.shift();
    } else {
      const all = Buffer.concat(this.chunks, this.pendingBytes);
      box = all.subarray(0, n);
      this.chunks = all.byteLength > n ? [all.subarray(n)] : [];
    }
    this.pendingBytes -= n;
    return box;
  }

  /** Cuts whole top-level boxes off the front of what has come in. */
  private async drain(): Promise<void> {
    while (!this.destroyed && this.pendingBytes >= 8) {
      const head = this.peek(Math.min(16, this.pendingBytes));
      let size = head.readUInt32BE(0);
      if (size === 1) {
        if (head.byteLength < 16) return;
        size = Number(head.readBigUInt64BE(8));
      }
      const type = head.toString('latin1', 4, 8);
      if (size < 8 || size > MAX_BOX_BYTES || !/^[a-z0-9 ]{4}$/i.test(type)) throw new Error(`the live video is not MP4: a box "${type}" of ${size} bytes`);
      if (!this.tracks && this.header.length === 0 && type !== 'ftyp') throw new Error(`the live video is not MP4: it starts with "${type}", not ftyp`);
      if (this.pendingBytes < size) return;
      await this.take(type, this.cut(size));
    }
  }

  private async take(type: string, box: Buffer): Promise<void> {
    if (this.destroyed) return;
    if (!this.tracks) {
      if (type !== 'moof') {
        this.header.push(box);
        if (type === 'moov') this.tracks = movieTracks(box);
        return;
      }
      throw new Error('the live video has a fragment before its header');
    }
    if (!this.started) {
      await ensureDir(this.dir);
      await atomicWriteFile(join(this.dir, HLS_INIT), Buffer.concat(this.header), TRANSIENT);
      this.header = [];
      this.started = true;
    }
    if (type === 'moof') {
      await this.closeFragment();
      this.fragment = [box];
      return;
    }
    // a fragment is its moof and its mdat: whole once the mdat is in, listed at once
    if (this.fragment.length > 0 && type !== 'mfra') {
      this.fragment.push(box);
      if (type === 'mdat') await this.closeFragment();
    }
  }

  /** Writes the gathered fragment as the next segment and lists it. */
  private async closeFragment(): Promise<void> {
    if (this.fragment.length === 0 || this.destroyed) return;
    const [moof] = this.fragment as [Buffer];
    const span = this.tracks ? fragmentSpan(moof, this.tracks) : undefined;
    const seconds = span && span.duration > 0 ? span.duration : 1;
    const name = segmentName(this.segments.length);
    await atomicWriteFile(join(this.dir, name), Buffer.concat(this.fragment), TRANSIENT);
    this.fragment = [];
    this.segments.push({ name, seconds });
    await this.writePlaylist(false);
  }

  /** The header and every segment, synced to disk (together: the thread pool runs a few at once). */
  private async syncWritten(): Promise<void> {
    if (!this.started || this.destroyed) return;
    await Promise.all([HLS_INIT, ...this.segments.map((s) => s.name)].map(async (name) => {
      const path = join(this.dir, name);
      const handle = await open(path, 'r');
      try {
        await handle.sync();
      } catch (error) {
        throw namingPath(error, path);
      } finally {
        await handle.close();
      }
    }));
  }

  private async writePlaylist(ended: boolean): Promise<void> {
    if (!this.started || this.destroyed) return;
    // (an EVENT playlist's target may not change as it grows: 2 s holds a fragment a second, and a last one)
    const target = Math.max(2, ...this.segments.map((s) => Math.ceil(s.seconds)));
    const lines = [
      '#EXTM3U',
      '#EXT-X-VERSION:7',
      `#EXT-X-TARGETDURATION:${target}`,
      '#EXT-X-PLAYLIST-TYPE:EVENT',
      '#EXT-X-INDEPENDENT-SEGMENTS',
      // from the beginning, however late a player joins (an EVENT playlist's players start near its end)
      '#EXT-X-START:TIME-OFFSET=0',
      `#EXT-X-MAP:URI="${HLS_INIT}"`,
      ...this.segments.flatMap((s) => [`#EXTINF:${s.seconds.toFixed(3)},`, s.name]),
      ...(ended ? ['#EXT-X-ENDLIST'] : []),
    ];
    // (the ended one durably: it is what says the video is whole, and lists the files synced before it)
    await atomicWriteFile(join(this.dir, HLS_PLAYLIST), `${lines.join('\n')}\n`, ended ? {} : TRANSIENT);
  }
}
