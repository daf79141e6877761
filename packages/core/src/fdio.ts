// File-descriptor calls through the thread pool, for the writers that do the cheap steps (copying a few
// KB, closing) inline and only the ones that can wait on the disk off the event loop. Internal to core.
import { fdatasync, fsync, open } from 'node:fs';
import { promisify } from 'node:util';

export const openFd = promisify(open);
export const fsyncFd = promisify(fsync);
export const fdatasyncFd = promisify(fdatasync);
