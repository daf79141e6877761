import { sweepLeftovers } from './leftovers.js';
import type { JobStore, StorageFinding } from './store/types.js';

/**
 * A storage folder's consistency, changing nothing: what killed processes left (work folders,
 * partials of outputs) and what the queue's store finds wrong in its own files (damaged job files,
 * claims whose lease ran out), each with what to do.
 */
export async function checkStorage(storageDir: string, store: JobStore): Promise<StorageFinding[]> {
  const findings: StorageFinding[] = [];
  for (const { path, kind, reason } of (await sweepLeftovers(storageDir, { dryRun: true })).removed) {
    const work = kind === 'work';
    findings.push({
      kind: work ? 'leftover_work' : 'leftover_partial',
      path,
      detail: `${work ? 'a work folder' : 'a half-written output'} left by a run that ended without cleaning up (${reason})`,
      advice: 'Nothing to do: the next run, worker or server start removes it (or delete it yourself).',
    });
  }
  if (store.checkConsistency) findings.push(...(await store.checkConsistency()));
  return findings;
}
