import type { EncodeSettings, FrameStream, GpuFrames } from '@avatar/core';
import { openNvencEncoder, type CudaFrameRenderer, type NvencFrameEncoder } from '@avatar/native';

/** The GPU's video encoder for one run, taking the frames where they are drawn. */
export interface GpuEncode {
  device: string;
  encoder: NvencFrameEncoder;
  frames: GpuFrames;
}

/**
 * NVENC for this encode when it can be had, else why not. It is used only where the frames are drawn
 * on a GPU (the GPU the host placed the renderer on, with its memory counted), for MP4, with nothing for
 * ffmpeg's filters to do (no scaling, no burned-in captions). Opening it is the test: a GPU with CUDA
 * may have no NVENC (H100, H200, A100), and an old driver or a full GPU refuse it.
 */
export function chooseGpuEncoder(
  frames: FrameStream,
  settings: EncodeSettings,
  options: { burn: boolean; resized: boolean; live: boolean; ffmpegVersion: string },
): { ok: true; gpu: GpuEncode } | { ok: false; reason: string } {
  const refuse = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });
  if (settings.format !== 'mp4') return refuse('NVENC has no VP9 encoder');
  if (process.env['AVATAR_NVENC'] === '0') return refuse('turned off (AVATAR_NVENC=0)');
  const gpu = frames.gpu;
  if (!gpu) return refuse('the frames are drawn on the CPU');
  if (frames.pixelFormat !== 'yuv420p') return refuse('the frames are RGBA, and NVENC here takes I420');
  if (options.burn) return refuse('burned-in captions are drawn by ffmpeg\'s filters on the CPU');
  if (options.resized) return refuse('the frames are scaled to the output size by ffmpeg');
  if (!Number.isInteger(frames.fps)) return refuse(`the frame rate ${frames.fps} is not a whole number`);
  if (!atLeast(options.ffmpegVersion, 4, 4)) return refuse(`ffmpeg ${options.ffmpegVersion} is older than 4.4, whose setts filter times NVENC's pictures`);
  // a key frame every second where a stream is watched live (each fragment starts on one), every five otherwise
  const gop = Math.max(1, frames.fps) * (options.live ? 1 : 5);
  const quality = Math.min(51, Math.max(1, Math.round(settings.crf)));
  const opened = openNvencEncoder({ width: frames.width, height: frames.height }, { fps: frames.fps, quality, gop }, { ...(gpu.uuid && { uuid: gpu.uuid }) });
  if (!opened.ok) return refuse(opened.reason);
  return { ok: true, gpu: { device: opened.device, encoder: opened.encoder, frames: gpu } };
}

/**
 * Frames into NVENC in order, each encoded on the thread pool while the next is drawn: `push` takes the
 * frame now (read on the GPU when it was left there, else its bytes) and resolves with its H.264 bytes
 * once encoded. At most two frames may be pushed and not yet resolved: await the older before a third.
 */
export class GpuEncodeQueue {
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly gpu: GpuEncode) {}

  push(frame: Uint8Array): Promise<Buffer> {
    const { encoder, frames } = this.gpu;
    const source = frames.lastOnGpu() ? (frames.handle as CudaFrameRenderer) : frame;
    // an older addon without the two steps: one frame at a time, on this thread
    if (!encoder.stage || !encoder.encodeSlot) {
      return Promise.resolve(source === frame ? encoder.encode(frame) : encoder.encodeFrom(source as CudaFrameRenderer));
    }
    const slot = encoder.stage(source);
    const encodeSlot = encoder.encodeSlot.bind(encoder);
    // (one encode at a time, in order: each waits for the one before, whatever became of it)
    const done = this.last.then(() => encodeSlot(slot), () => encodeSlot(slot));
    this.last = done.catch(() => undefined);
    return done;
  }

  /** Resolves once every pushed frame is encoded (or failed). */
  settled(): Promise<unknown> {
    return this.last;
  }
}

/** Whether an ffmpeg version string ("5.1.9-0+deb12u1", "n6.1") is at least major.minor; a build from git ("N-113...") is taken as new. */
export function atLeast(version: string, major: number, minor: number): boolean {
  const match = /^n?(\d+)\.(\d+)/.exec(version);
  if (!match) return true;
  const [have, haveMinor] = [Number(match[1]), Number(match[2])];
  return have > major || (have === major && haveMinor >= minor);
}
