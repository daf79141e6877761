import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { AvatarError, type AvatarErrorJSON, type JobStore } from '@avatar/core';
import { ROOT } from './cli.js';

type Reply = { id: number; value: unknown; undefined?: boolean } | { id: number; error: { avatar?: AvatarErrorJSON; message: string } };

/**
 * A JobStore whose every call runs in another process (tests/helpers/store-child.mjs, on the built
 * packages): the conformance suite's second store, so "two instances" also means two processes.
 * `url` empty: the file store in `storageDir`.
 */
export async function storeInChildProcess(options: { storageDir: string; url?: string; maxAttempts: number }): Promise<JobStore & { child: ChildProcess }> {
  const child = fork(join(ROOT, 'tests/helpers/store-child.mjs'), [options.storageDir, options.url ?? '', String(options.maxAttempts)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [], env: { ...process.env, NODE_OPTIONS: '' } });
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  let next = 0;
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the store process exited (${code}) before it was ready`)));
    child.once('message', () => resolve());
  });
  child.on('message', (message: Reply) => {
    const call = waiting.get(message.id);
    if (!call) return;
    waiting.delete(message.id);
    if ('error' in message) call.reject(message.error.avatar ? AvatarError.fromJSON(message.error.avatar) : new Error(message.error.message));
    else call.resolve(message.undefined ? undefined : message.value);
  });
  child.on('exit', () => {
    for (const call of waiting.values()) call.reject(new Error('the store process exited'));
    waiting.clear();
  });
  const call = (method: string, args: unknown[]): Promise<unknown> => {
    if (child.exitCode !== null || !child.connected) return method === 'close' ? Promise.resolve() : Promise.reject(new Error('the store process is gone'));
    const id = next++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      child.send({ id, method, args });
    });
  };
  return new Proxy({ child } as JobStore & { child: ChildProcess }, {
    get: (target, name) => {
      if (name === 'child') return target.child;
      if (typeof name !== 'string' || name === 'then') return undefined;
      return (...args: unknown[]) => call(name, args);
    },
  });
}
