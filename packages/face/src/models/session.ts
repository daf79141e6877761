import { readFile } from 'node:fs/promises';
import { AvatarError } from '@avatar/core';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { sha256Hex } from './manifest.js';
import type { OutputTensor } from './decode.js';

/**
 * One ONNX Runtime session per model file per process: loaders share it and count references;
 * the last `release` frees it. Intra-op threads default to 1: on a 2-core machine shared with the
 * other stages (or other workers), a second thread made every one of these nets slower (measured:
 * tiny detector 14 vs 25 ms, full landmarks 2.0 vs 2.7 ms, SSD 94 vs 166 ms); pass `threads: 2`
 * where a core is known to be idle.
 */
export interface SharedSession {
  readonly name: string;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Record<string, { data: Float32Array; dims: readonly number[] }>, outputs?: string[]): Promise<Record<string, OutputTensor>>;
  release(): Promise<void>;
}

interface Entry {
  session: Promise<InferenceSession>;
  refs: number;
}

const sessions = new Map<string, Entry>();

type OnnxRuntime = typeof import('onnxruntime-node');
let runtime: Promise<OnnxRuntime> | undefined;

/**
 * onnxruntime-node, loaded on first use rather than when this package is imported: its native
 * library takes a good part of a second's start-up, which commands that never detect a face should
 * not pay, and which a run can spend while other stages work (the face plugin's prewarm).
 */
export function loadOnnxRuntime(): Promise<OnnxRuntime> {
  // The runtime's Linux build reports usage by default: it keeps a database under
  // ~/.cache/Microsoft, syncing it to disk on every load, and leaves an empty mat-debug-<pid>.log in
  // /tmp for each process. Face detection here sends nothing anywhere, so that is off unless the
  // user has set the variable themselves. It is read when the library loads, hence before the import.
  process.env.ORT_DISABLE_TELEMETRY ??= '1';
  runtime ??= import('onnxruntime-node');
  runtime.catch(() => { runtime = undefined; });
  return runtime;
}

export const DEFAULT_THREADS = 1;

export interface OpenOptions {
  name: string;
  path: string;
  /** expected sha256 (hex); checked before the session is created */
  sha256?: string;
  threads?: number;
}

async function create(opts: OpenOptions, threads: number): Promise<InferenceSession> {
  let bytes: Buffer;
  try {
    bytes = await readFile(opts.path);
  } catch {
    throw new AvatarError('AVATAR_ERR_MODEL_MISSING', { name: opts.name, path: opts.path });
  }
  if (opts.sha256) {
    const actual = sha256Hex(bytes);
    if (actual !== opts.sha256.toLowerCase()) {
      throw new AvatarError('AVATAR_ERR_MODEL_CHECKSUM', { name: opts.name, path: opts.path, expected: opts.sha256, actual });
    }
  }
  const { InferenceSession } = await loadOnnxRuntime();
  try {
    return await InferenceSession.create(bytes, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
    });
  } catch (err) {
    throw new AvatarError('AVATAR_ERR_MODEL_INVALID', { name: opts.name, reason: (err as Error).message }, { cause: err });
  }
}

export async function openSession(opts: OpenOptions): Promise<SharedSession> {
  const threads = opts.threads ?? DEFAULT_THREADS;
  const key = `${opts.path}\0${threads}\0${opts.sha256 ?? ''}`;
  let entry = sessions.get(key);
  if (!entry) {
    entry = { session: create(opts, threads), refs: 0 };
    sessions.set(key, entry);
    // a failed load must not stay cached
    entry.session.catch(() => sessions.delete(key));
  }
  entry.refs += 1;
  const held = entry;
  let session: InferenceSession;
  try {
    session = await held.session;
  } catch (err) {
    held.refs -= 1;
    throw err;
  }
  let released = false;
  const { Tensor: OrtTensor } = await loadOnnxRuntime();
  return {
    name: opts.name,
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, outputs) {
      if (released) throw new Error(`model ${opts.name} was disposed`);
      const ortFeeds: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) ortFeeds[k] = new OrtTensor('float32', v.data, v.dims as number[]);
      const result = outputs ? await session.run(ortFeeds, outputs) : await session.run(ortFeeds);
      const out: Record<string, OutputTensor> = {};
      for (const [k, t] of Object.entries(result)) out[k] = { data: t.data as Float32Array, dims: t.dims };
      return out;
    },
    async release() {
      if (released) return;
      released = true;
      held.refs -= 1;
      if (held.refs === 0 && sessions.get(key) === held) {
        sessions.delete(key);
        await session.release();
      }
    },
  };
}

/** How many distinct sessions are open now (for tests and diagnostics). */
export function openSessionCount(): number {
  return sessions.size;
}
