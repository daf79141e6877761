import type { ChildProcess } from 'node:child_process';

/**
 * Signals a child that is running, and nothing else. Node's `ChildProcess.kill()` on a child whose start
 * failed (a missing binary), called before the failure's 'error' is delivered, signals pid 0: seen on
 * Node 20.20 as `kill(0, SIGKILL)`, which kills this process's whole group (the caller, the shell or
 * test runner that started it). A started child has its pid, so one without a pid is never signalled.
 * Returns whether the signal was sent.
 */
export function killChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): boolean {
  return isRunning(child) && child.kill(signal);
}

/** Whether a child started and has not exited (nor been ended by a signal) yet. */
export function isRunning(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/**
 * Kills `child` with `killSignal` when `abort` fires, or at once if it has fired: the kill half of the
 * `signal` option of `spawn` and `execFile` (whose `kill()` is unguarded), through killChild. It emits
 * no AbortError: the caller settles on the child's 'close' (or 'error'), once it is gone. Returns the
 * listener's removal, also done when the child exits.
 */
export function killOnAbort(child: ChildProcess, abort: AbortSignal | undefined, killSignal: NodeJS.Signals = 'SIGTERM'): () => void {
  if (!abort) return () => {};
  const onAbort = (): void => {
    killChild(child, killSignal);
  };
  if (abort.aborted) {
    onAbort();
    return () => {};
  }
  abort.addEventListener('abort', onAbort, { once: true });
  const remove = (): void => abort.removeEventListener('abort', onAbort);
  child.once('exit', remove);
  child.once('error', remove);
  return remove;
}

/** The error Node's own `signal` option settles a killed child with (name AbortError, the reason as cause). */
export function abortError(abort: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: abort.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}
