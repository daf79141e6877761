import { link, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Job } from '../jobs.js';
import { NO_LINK, errnoCode, unlinkQuiet } from './file-helpers.js';

// The file store's queue of pending jobs: an empty file per pending job in queue/pending, named
// `<key>--<jobId>` with keys that sort oldest first, which claimers scan in name order.

const MARKER_SEP = '--';

// Per-process sequence: keeps FIFO among jobs submitted within the same millisecond.
let markerSeq = 0;
export const markerKey = (ms: number, seq: number): string =>
  `${String(ms).padStart(15, '0')}-${(seq >>> 0).toString(16).padStart(8, '0')}`;

/** The key of a job submitted now: after every key handed out before, in this process too. */
export const nextMarkerKey = (ms: number): string => markerKey(ms, ++markerSeq);

/** The job id a marker's name ends with. */
export const markerJobId = (name: string): string => name.slice(name.lastIndexOf(MARKER_SEP) + MARKER_SEP.length);

export class PendingMarkers {
  /**
   * @param dir queue/pending
   * @param template an empty file every marker is a hard link of
   */
  constructor(readonly dir: string, private readonly template: string) {}

  /** Makes the template file markers are links of (the store starts). */
  async prepare(): Promise<void> {
    await writeFile(this.template, '', { flag: 'a' });
  }

  /** The marker's path for a job and key. */
  path(id: string, key: string): string {
    return join(this.dir, `${key}${MARKER_SEP}${id}`);
  }

  // Creating an inode costs far more than adding a name on some file systems, so markers are
  // hard links of one empty file; where links are not possible, plain empty files.
  async create(id: string, key: string): Promise<void> {
    const path = this.path(id, key);
    try {
      await link(this.template, path);
      return;
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'EEXIST') return;
      if (code === 'ENOENT') await writeFile(this.template, '', { flag: 'a' });
      else if (!NO_LINK.has(code ?? '')) throw error;
    }
    await (await open(path, 'w')).close();
  }

  async of(id: string): Promise<string[]> {
    const names = await readdir(this.dir);
    return names.filter((n) => n.endsWith(`${MARKER_SEP}${id}`));
  }

  /** Re-queues: a marker keyed by the job's creation time puts it back in its original place. */
  async ensure(job: Job): Promise<void> {
    if ((await this.of(job.jobId)).length > 0) return;
    await this.create(job.jobId, markerKey(Date.parse(job.createdAt), 0));
  }

  async remove(id: string): Promise<void> {
    for (const name of await this.of(id)) await unlinkQuiet(join(this.dir, name));
  }
}
