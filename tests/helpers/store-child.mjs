// A job store in a process of its own, driven over IPC by tests/helpers/store-process.ts: each
// message { id, method, args } calls that method of the store and answers { id, value } or
// { id, error }. Usage: node store-child.mjs <storageDir> <store URL or ""> <maxAttempts>
import { openJobStore } from '../../packages/core/dist/index.js';
import { jobStores } from '../../packages/queue-redis/dist/index.js';

const [storageDir, url, maxAttempts] = process.argv.slice(2);
const store = await openJobStore(url || undefined, { storageDir, maxAttempts: Number(maxAttempts), kinds: jobStores });

process.on('message', async ({ id, method, args }) => {
  try {
    const value = await store[method](...args);
    process.send({ id, value: value === undefined ? null : value, undefined: value === undefined });
    if (method === 'close') process.disconnect();
  } catch (error) {
    const avatar = error && typeof error === 'object' && typeof error.code === 'string' && typeof error.toJSON === 'function' ? error.toJSON() : undefined;
    process.send({ id, error: { avatar, message: String(error?.message ?? error) } });
  }
});
process.send({ ready: true });
