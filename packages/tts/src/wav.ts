import { readFile } from 'node:fs/promises';

export interface WavData {
  sampleRate: number;
  channels: number;
  bitsPerSample: number;
  /** interleaved samples when channels > 1 */
  samples: Int16Array;
  durationSeconds: number;
}

/**
 * Parses a 16-bit PCM RIFF/WAVE buffer. Walks the chunk list rather than assuming a 44-byte header,
 * because engines add LIST/fact chunks and some write a data size of 0 or -1 when streaming.
 */
export function parseWav(buf: Uint8Array): WavData {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const tag = (at: number): string => String.fromCharCode(buf[at] ?? 0, buf[at + 1] ?? 0, buf[at + 2] ?? 0, buf[at + 3] ?? 0);
  if (buf.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a RIFF/WAVE file');
  let offset = 12;
  let format: { audioFormat: number; channels: number; sampleRate: number; bits: number } | undefined;
  while (offset + 8 <= buf.byteLength) {
    const id = tag(offset);
    let size = view.getUint32(offset + 4, true);
    const body = offset + 8;
    if (id === 'fmt ') {
      format = {
        audioFormat: view.getUint16(body, true),
        channels: view.getUint16(body + 2, true),
        sampleRate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true),
      };
    } else if (id === 'data') {
      if (!format) throw new Error('WAV data chunk before fmt chunk');
      // 0xFFFFFFFF or 0 means the writer did not know the size: take the rest of the file
      if (size === 0xffffffff || size === 0 || body + size > buf.byteLength) size = buf.byteLength - body;
      const isPcm = format.audioFormat === 1 || format.audioFormat === 0xfffe;
      if (!isPcm || format.bits !== 16) throw new Error(`WAV is not 16-bit PCM (format ${format.audioFormat}, ${format.bits} bits)`);
      const count = Math.floor(size / 2);
      const samples = new Int16Array(count);
      for (let i = 0; i < count; i++) samples[i] = view.getInt16(body + i * 2, true);
      return {
        sampleRate: format.sampleRate,
        channels: format.channels,
        bitsPerSample: format.bits,
        samples,
        durationSeconds: count / format.channels / format.sampleRate,
      };
    }
    offset = body + size + (size % 2);
  }
  throw new Error('WAV has no data chunk');
}

export async function readWav(path: string): Promise<WavData> {
  return parseWav(await readFile(path));
}

/** A mono 16-bit PCM WAV file's bytes. */
export function encodeWav(samples: Int16Array, sampleRate: number): Uint8Array {
  const out = new Uint8Array(44 + samples.length * 2);
  const view = new DataView(out.buffer);
  const put = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  put(0, 'RIFF');
  view.setUint32(4, 36 + samples.length * 2, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  put(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) view.setInt16(44 + i * 2, samples[i] ?? 0, true);
  return out;
}

/** Int16 PCM as floats in [-1, 1). */
export function toFloat(samples: Int16Array): Float32Array {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = (samples[i] ?? 0) / 32768;
  return out;
}
