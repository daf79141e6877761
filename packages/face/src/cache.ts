import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, statfs, utimes, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SIDECAR_VERSION, readSidecar, sha256, sidecarPathFor } from './prepare.js';
import type { AvatarSidecar } from './prepare.js';
import { listModelManifests } from './models/manifest.js';
import { loadSharp } from './sharp.js';

/**
 * Prepared avatars kept between runs, keyed by the photo's bytes and everything that decides what is
 * made of them: a run with a photo seen before copies its prepared avatar instead of detecting the
 * face again (the face stage on a raw photo: 0.2-0.4 s on two cores, most of it the models' start; from
 * here a few tens of milliseconds). A missing, damaged or half-removed entry is a miss, never an error;
 * deleting the folder is always safe.
 */

/** Bumped when what the preparation makes changes (crop, alignment, sidecar): older entries are then missed. */
const CACHE_FORMAT = 1;
/** Entries kept; the least recently used go first. */
export const MAX_PREPARED_ENTRIES = 64;
/** Free space an entry is not kept below: a nearly full disk is left to the run's own files. */
const KEEP_ABOVE_FREE_BYTES = 64 * 1024 * 1024;
/** A partial file, or an image without its sidecar, older than this was left by a run that was killed. */
const STALE_MS = 3_600_000;

/** A name beside `path` for writing it whole before it takes its name. */
const partialOf = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(4).toString('hex')}.partial`);

let packageVersion: string | undefined;
/** This package's version: a release that prepares differently keys its own entries. */
function versionOfThisPackage(): string {
  if (packageVersion === undefined) {
    try {
      packageVersion = String((JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version);
    } catch {
      packageVersion = 'unknown';
    }
  }
  return packageVersion;
}

/** The engine's options that decide what is made of a photo (the stage's resolved options). */
export interface PreparingOptions {
  detector: string;
  landmarks: string;
  thresholds: object;
  maxMegapixels?: number;
  modelsDir?: string;
}

/** What a run found in the cache for a photo: the key to keep its avatar under, and the photo's SHA-256. */
export interface CacheKey {
  key: string;
  photoSha256: string;
}

export class PreparedAvatarCache {
  private modelKey: string | undefined;

  constructor(private readonly dir: string, private readonly options: PreparingOptions, private readonly maxEntries = MAX_PREPARED_ENTRIES) {}

  /**
   * The entry for a photo of these bytes prepared at `size` px with this engine's options, models, code
   * and image library; undefined when the models cannot be listed (no cache for that run).
   */
  async keyFor(photo: Uint8Array, size: number): Promise<CacheKey | undefined> {
    try {
      // (the models' checksums from their manifests: rebuilt models are new entries)
      this.modelKey ??= listModelManifests({ verify: false, ...(this.options.modelsDir !== undefined && { modelsDir: this.options.modelsDir }) })
        .map((m) => `${m.name}:${m.sha256}`).join(',');
    } catch {
      return undefined;
    }
    const vips = (await loadSharp()).versions.vips;
    const photoSha256 = sha256(photo);
    const { detector, landmarks, thresholds, maxMegapixels } = this.options;
    const what = JSON.stringify({
      CACHE_FORMAT, SIDECAR_VERSION, face: versionOfThisPackage(), vips, photo: photoSha256, size, detector, landmarks, thresholds, maxMegapixels, models: this.modelKey,
    });
    return { key: sha256(new TextEncoder().encode(what)), photoSha256 };
  }

  /**
   * Writes the entry's avatar to `outputPath` and its sidecar beside it, each whole or not at all (the
   * output may be the user's own file), the sidecar naming this run's photo and file, and returns that
   * sidecar; undefined, with nothing written, when there is no entry or it does not hold together
   * (another photo's, a damaged or half-removed one: checked as any prepared avatar's sidecar is).
   */
  async restore(found: CacheKey, outputPath: string, photoPath: string): Promise<AvatarSidecar | undefined> {
    const image = join(this.dir, `${found.key}.png`);
    const pngPartial = partialOf(outputPath);
    const sidecarPartial = partialOf(sidecarPathFor(outputPath));
    let own: AvatarSidecar;
    try {
      const png = await readFile(image);
      const sidecar = (await readSidecar(image, png))?.sidecar;
      if (sidecar?.source?.sha256 !== found.photoSha256) return undefined;
      own = { ...sidecar, image: { ...sidecar.image, file: basename(outputPath) }, source: { ...sidecar.source, path: photoPath } };
      await writeFile(pngPartial, png);
      await writeFile(sidecarPartial, `${JSON.stringify(own, null, 2)}\n`);
      await rename(pngPartial, outputPath);
      await rename(sidecarPartial, sidecarPathFor(outputPath));
    } catch {
      await Promise.all([pngPartial, sidecarPartial].map((path) => rm(path, { force: true })));
      return undefined;
    }
    // (used now: the last to be pruned)
    const now = new Date();
    await utimes(sidecarPathFor(image), now, now).catch(() => {});
    return own;
  }

  /** Keeps a prepared avatar (and its sidecar) under `key`; a failure to keep it costs the run nothing. */
  async keep(found: CacheKey, preparedPath: string): Promise<void> {
    const image = join(this.dir, `${found.key}.png`);
    const pngPartial = partialOf(image);
    const sidecarPartial = partialOf(sidecarPathFor(image));
    try {
      const [png, text] = await Promise.all([readFile(preparedPath), readFile(sidecarPathFor(preparedPath), 'utf8')]);
      // (the photo this avatar was made from is the one keyed: a photo replaced during the run is not kept)
      if ((JSON.parse(text) as AvatarSidecar).source?.sha256 !== found.photoSha256) return;
      await mkdir(this.dir, { recursive: true });
      const free = await statfs(this.dir);
      if (free.bavail * free.bsize < KEEP_ABOVE_FREE_BYTES) return;
      await writeFile(pngPartial, png);
      await writeFile(sidecarPartial, text);
      // the image first, the sidecar last: a sidecar means a whole entry
      await rename(pngPartial, image);
      await rename(sidecarPartial, sidecarPathFor(image));
    } catch {
      await Promise.all([pngPartial, sidecarPartial].map((path) => rm(path, { force: true })));
      return;
    }
    await this.prune().catch(() => {});
  }

  /** Removes the least recently used entries past the limit, and what killed runs left (partial files, images without sidecars). */
  private async prune(): Promise<void> {
    const names = new Set(await readdir(this.dir));
    const age = async (name: string): Promise<number> => Date.now() - (await stat(join(this.dir, name)).then((s) => s.mtimeMs, () => Date.now()));
    for (const name of names) {
      const orphan = name.endsWith('.png') && !names.has(`${name.slice(0, -'.png'.length)}.face.json`);
      if ((orphan || (name.startsWith('.') && name.endsWith('.partial'))) && (await age(name)) > STALE_MS) await rm(join(this.dir, name), { force: true });
    }
    const sidecars = [...names].filter((n) => n.endsWith('.face.json'));
    if (sidecars.length <= this.maxEntries) return;
    const used = await Promise.all(sidecars.map(async (name) => ({ name, at: await stat(join(this.dir, name)).then((s) => s.mtimeMs, () => 0) })));
    used.sort((a, b) => a.at - b.at || a.name.localeCompare(b.name));
    for (const { name } of used.slice(0, used.length - this.maxEntries)) {
      // the sidecar first: what is left of an entry without it is a miss
      await rm(join(this.dir, name), { force: true });
      await rm(join(this.dir, `${name.slice(0, -'.face.json'.length)}.png`), { force: true });
    }
  }
}
