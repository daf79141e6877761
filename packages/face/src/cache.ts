import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SIDECAR_VERSION, sha256, sidecarPathFor } from './prepare.js';
import { listModelManifests } from './models/manifest.js';
import type { ResolvedFaceOptions } from './stage.js';

/**
 * Prepared avatars kept between runs, keyed by the photo's bytes and everything that decides what is
 * made of them: a run with a photo seen before copies its prepared avatar instead of detecting the
 * face again (the face stage on a raw photo: 0.2-0.3 s on two cores, most of it the models' start; from
 * here a few tens of milliseconds). A missing, damaged or half-removed entry is a miss, never an error;
 * deleting the folder is always safe.
 */

/** Bumped when what the preparation makes changes (crop, alignment, sidecar): older entries are then missed. */
const CACHE_FORMAT = 1;
/** Entries kept; the least recently used go first. */
export const MAX_PREPARED_ENTRIES = 64;

/** A name beside `path` for writing it whole before it takes its name. */
const partialOf = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`);

export class PreparedAvatarCache {
  private modelKey: string | undefined;

  constructor(private readonly dir: string, private readonly options: ResolvedFaceOptions, private readonly maxEntries = MAX_PREPARED_ENTRIES) {}

  /** The entry for a photo of these bytes prepared at `size` px with this engine's options and models. */
  keyFor(photo: Uint8Array, size: number): string {
    // (the models' checksums from their manifests: rebuilt models are new entries)
    this.modelKey ??= listModelManifests({ verify: false, ...(this.options.modelsDir !== undefined && { modelsDir: this.options.modelsDir }) })
      .map((m) => `${m.name}:${m.sha256}`).join(',');
    const { detector, landmarks, thresholds, maxMegapixels } = this.options;
    const what = JSON.stringify({ CACHE_FORMAT, SIDECAR_VERSION, photo: sha256(photo), size, detector, landmarks, thresholds, maxMegapixels, models: this.modelKey });
    return sha256(new TextEncoder().encode(what));
  }

  /**
   * Copies the entry's avatar and sidecar to `outputPath` (and its sidecar path), each whole or not at
   * all (the output may be the user's own file); false when there is no entry.
   */
  async restore(key: string, outputPath: string): Promise<boolean> {
    const image = join(this.dir, `${key}.png`);
    const pngPartial = partialOf(outputPath);
    const sidecarPartial = partialOf(sidecarPathFor(outputPath));
    try {
      // the sidecar first: an entry is written image first, sidecar last, so a sidecar means a whole entry
      await copyFile(sidecarPathFor(image), sidecarPartial);
      await copyFile(image, pngPartial);
      await rename(pngPartial, outputPath);
      await rename(sidecarPartial, sidecarPathFor(outputPath));
    } catch {
      await Promise.all([pngPartial, sidecarPartial].map((path) => rm(path, { force: true })));
      return false;
    }
    // (used now: the last to be pruned)
    const now = new Date();
    await utimes(sidecarPathFor(image), now, now).catch(() => {});
    return true;
  }

  /** Keeps a prepared avatar (and its sidecar) under `key`; a failure to keep it costs the run nothing. */
  async keep(key: string, preparedPath: string): Promise<void> {
    const image = join(this.dir, `${key}.png`);
    const pngPartial = partialOf(image);
    const sidecarPartial = partialOf(sidecarPathFor(image));
    try {
      await mkdir(this.dir, { recursive: true });
      await copyFile(preparedPath, pngPartial);
      await copyFile(sidecarPathFor(preparedPath), sidecarPartial);
      await rename(pngPartial, image);
      await rename(sidecarPartial, sidecarPathFor(image));
    } catch {
      await Promise.all([rm(pngPartial, { force: true }), rm(sidecarPartial, { force: true })]);
      return;
    }
    await this.prune().catch(() => {});
  }

  /** Removes the least recently used entries past the limit, and partial files a killed run left. */
  private async prune(): Promise<void> {
    const names = await readdir(this.dir);
    const sidecars = names.filter((n) => n.endsWith('.face.json'));
    const hour = 3_600_000;
    for (const name of names.filter((n) => n.startsWith('.') && n.endsWith('.partial'))) {
      const at = await stat(join(this.dir, name)).then((s) => s.mtimeMs, () => Date.now());
      if (Date.now() - at > hour) await rm(join(this.dir, name), { force: true });
    }
    if (sidecars.length <= this.maxEntries) return;
    const used = await Promise.all(sidecars.map(async (name) => ({ name, at: await stat(join(this.dir, name)).then((s) => s.mtimeMs, () => 0) })));
    used.sort((a, b) => a.at - b.at);
    for (const { name } of used.slice(0, used.length - this.maxEntries)) {
      const key = name.slice(0, -'.face.json'.length);
      // the sidecar first: what is left of an entry without it is a miss
      await rm(join(this.dir, name), { force: true });
      await rm(join(this.dir, `${key}.png`), { force: true });
    }
  }
}
