import { describe, expect, it } from 'vitest';
import { QUALITY_PRESETS } from '@avatar/core';
import { codecArgs, outputGeometry, vp9Crf } from './settings.js';

describe('outputGeometry', () => {
  it('makes the longer side the preset size and keeps the aspect ratio', () => {
    expect(outputGeometry(800, 600, 512)).toEqual({ width: 512, height: 384, filter: 'scale=512:384:flags=lanczos' });
    expect(outputGeometry(600, 800, 256)).toMatchObject({ width: 192, height: 256 });
  });

  it('rounds both sides down to even numbers', () => {
    const g = outputGeometry(1000, 333, 512);
    expect(g.width).toBe(512);
    expect(g.height % 2).toBe(0);
    expect(Math.abs(g.width / g.height - 1000 / 333)).toBeLessThan(0.02);
  });

  it('never upscales; a small picture keeps its size and odd edges are cropped, not resampled', () => {
    expect(outputGeometry(300, 200, 1024)).toEqual({ width: 300, height: 200, filter: 'null' });
    expect(outputGeometry(301, 201, 1024)).toEqual({ width: 300, height: 200, filter: 'crop=300:200:0:0' });
  });
});

describe('codec arguments', () => {
  it('maps x264 crf onto the VP9 scale at both ends and in the middle', () => {
    expect(vp9Crf(0)).toBe(0);
    expect(vp9Crf(51)).toBe(63);
    expect(vp9Crf(23)).toBe(28);
  });

  it('MP4 uses libx264 + aac, yuv420p, faststart, stillimage tuning only for stills', () => {
    const settings = { format: 'mp4' as const, ...QUALITY_PRESETS.medium };
    const still = codecArgs(settings, true);
    expect([still.videoCodec, still.audioCodec, still.muxer]).toEqual(['libx264', 'aac', 'mp4']);
    expect(still.options.join(' ')).toContain('-preset veryfast -crf 21 -tune stillimage -x264-params ref=1:bframes=0:rc-lookahead=5 -pix_fmt yuv420p');
    expect(still.options.join(' ')).toContain('-movflags +faststart');
    expect(still.options.join(' ')).toContain('-ar 48000');
    const moving = codecArgs(settings, false).options;
    expect(moving).not.toContain('stillimage');
    expect(moving).not.toContain('-x264-params');
  });

  it('a live MP4 puts its first fragment out sooner: a key frame at half a second; at veryfast a shorter lookahead and a lower crf for the same quality', () => {
    const medium = codecArgs({ format: 'mp4', ...QUALITY_PRESETS.medium }, false, { live: true }).options.join(' ');
    expect(medium).toContain('-preset veryfast -crf 19.5');
    expect(medium).toContain('-bf 0 -rc-lookahead 5 -force_key_frames expr:eq(n,12)');
    expect(medium).toContain('-g 25 -keyint_min 25 -movflags +frag_keyframe+empty_moov+default_base_moof');
    const low = codecArgs({ format: 'mp4', ...QUALITY_PRESETS.low }, false, { live: true }).options.join(' ');
    expect(low).toContain('-crf 26.5');
    expect(low).toContain('-force_key_frames expr:eq(n,10)');
    // slow keeps its lookahead and crf (a shorter one was measured to lose quality there)
    const high = codecArgs({ format: 'mp4', ...QUALITY_PRESETS.high }, false, { live: true }).options.join(' ');
    expect(high).toContain('-preset slow -crf 18 ');
    expect(high).not.toContain('-rc-lookahead');
    expect(high).toContain('-bf 0 -force_key_frames expr:eq(n,15)');
    // never lossless (crf 0, which browsers do not play); a file run and a still are as before
    expect(codecArgs({ format: 'mp4', ...QUALITY_PRESETS.medium, crf: 1 }, false, { live: true }).options.join(' ')).toContain('-crf 1 ');
    for (const args of [codecArgs({ format: 'mp4', ...QUALITY_PRESETS.medium }, false), codecArgs({ format: 'mp4', ...QUALITY_PRESETS.medium }, true, { live: true })]) {
      expect(args.options).not.toContain('-force_key_frames');
      expect(args.options.join(' ')).toContain('-crf 21 ');
    }
  });

  it('WebM uses constant-quality VP9 (-b:v 0) with the preset as deadline/cpu-used, and Opus', () => {
    const webm = codecArgs({ format: 'webm', ...QUALITY_PRESETS.low }, true);
    expect([webm.videoCodec, webm.audioCodec, webm.muxer]).toEqual(['libvpx-vp9', 'libopus', 'webm']);
    expect(webm.options.join(' ')).toContain('-crf 35 -b:v 0 -deadline good -cpu-used 5');
    expect(webm.options.join(' ')).toContain('-b:a 96k');
  });
});
