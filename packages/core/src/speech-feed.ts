import { PassThrough } from 'node:stream';
import type { Speech, SpeechPart } from './plugin.js';

/**
 * A speech's parts as the speech engine makes them, handed on twice, each read once: to the renderer
 * (the parts, for the mouth track) and to the encoder (their samples, for the sound). Object streams
 * hold what is not read yet: a speech is a few dozen parts at most.
 */
export class SpeechFeed {
  /** the first part, once it is made; rejects when the speech fails before it */
  readonly first: Promise<SpeechPart>;
  private readonly toRenderer = new PassThrough({ objectMode: true, highWaterMark: 1024 });
  private readonly toEncoder = new PassThrough({ objectMode: true, highWaterMark: 1024 });
  private given = false;
  /** the speech's length, once it is whole */
  seconds: number | undefined;
  private firstIn: (part: SpeechPart) => void = () => {};
  private firstFailed: (error: unknown) => void = () => {};

  constructor() {
    this.first = new Promise((resolve, reject) => {
      this.firstIn = resolve;
      this.firstFailed = reject;
    });
    this.first.catch(() => {});
    // a failure reaches the readers through their iteration; unread, it must not count as unhandled
    this.toRenderer.on('error', () => {});
    this.toEncoder.on('error', () => {});
  }

  add(part: SpeechPart): void {
    if (!this.given) this.firstIn(part);
    this.given = true;
    this.toRenderer.write(part);
    this.toEncoder.write(part.pcm);
  }

  /** The speech is whole; an engine that gave no parts gives it all as one. */
  end(speech: Speech): void {
    if (!this.given) {
      this.add({
        index: 0, pcm: speech.pcm, sampleRate: speech.sampleRate, startSeconds: 0,
        ...(speech.phonemes && { phonemes: speech.phonemes }), ...(speech.words && { words: speech.words }),
      });
    }
    this.seconds = speech.durationSeconds;
    this.toRenderer.end();
    this.toEncoder.end();
  }

  fail(error: unknown): void {
    this.firstFailed(error);
    const reason = error instanceof Error ? error : new Error(String(error));
    this.toRenderer.destroy(reason);
    this.toEncoder.destroy(reason);
  }

  parts(): AsyncIterable<SpeechPart> {
    return this.toRenderer;
  }

  sound(): AsyncIterable<Int16Array> {
    return this.toEncoder;
  }
}
