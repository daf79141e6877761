/**
 * Why an encode stops before its frames end: a cancel, or ffmpeg gone. Waiting for the next frame
 * "or a stop" with `Promise.race([next, stopped])` leaves one reaction on the stop's promise per frame
 * until the encode ends (a promise keeps every reaction until it settles): some 500 bytes a frame, tens
 * of megabytes for an hour of video. `race` here leaves nothing behind once its frame has come.
 */
export class Stop<R extends string> {
  private reason: R | undefined;
  private readonly waiting = new Set<(reason: R) => void>();

  /** The first reason given, if any. */
  get stopped(): R | undefined {
    return this.reason;
  }

  /** Stops every wait, and every later one, with `reason` (the first reason given holds). */
  stop(reason: R): void {
    if (this.reason !== undefined) return;
    this.reason = reason;
    for (const wake of this.waiting) wake(reason);
    this.waiting.clear();
  }

  /** `next`'s value, or the stop's reason if it comes first (at once if stopped already). */
  race<T>(next: Promise<T>): Promise<T | R> {
    if (this.reason !== undefined) return Promise.resolve(this.reason);
    return new Promise<T | R>((resolve, reject) => {
      const wake = (reason: R): void => resolve(reason);
      this.waiting.add(wake);
      next.then(
        (value) => {
          this.waiting.delete(wake);
          resolve(value);
        },
        (error: unknown) => {
          this.waiting.delete(wake);
          reject(error);
        },
      );
    });
  }
}
