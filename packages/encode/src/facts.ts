import { constants } from 'node:fs';
import { access, mkdir, readFile, realpath, stat } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { atomicWriteSmallFile, binaryIdentity, cacheDir } from '@avatar/core';
import type ffmpeg from 'fluent-ffmpeg';

/**
 * What an ffmpeg or ffprobe binary says about itself: its version, and for ffmpeg the formats and
 * encoders it was built with (in fluent-ffmpeg's own shape, which it checks every command against).
 * Each answer is a process start of 0.1-0.2 s of CPU, and a run needs four of them; the answers change
 * only when the binary does. So they are kept on disk, keyed by the binary's resolved path, inode, size,
 * modification and change times: replacing, rebuilding or upgrading the binary asks again.
 */
export interface ToolFacts {
  version?: string;
  formats?: ffmpeg.Formats;
  encoders?: ffmpeg.Encoders;
}

/** Bumped when the stored shape changes; other values are ignored (and overwritten). */
const FORMAT = 1;
/** Entries kept; the oldest go first (tests and upgrades leave binaries behind). */
const MAX_ENTRIES = 16;
const FILE = 'ffmpeg-tools.json';

interface Stored {
  format: number;
  tools: Record<string, ToolFacts & { savedAt: number }>;
}

/** The file a spawn of `binary` would run, found on PATH the way execvp does; undefined when none. */
async function locate(binary: string): Promise<string | undefined> {
  const executable = async (path: string): Promise<boolean> => {
    try {
      await access(path, constants.X_OK);
      return (await stat(path)).isFile();
    } catch {
      return false;
    }
  };
  if (binary.includes('/')) return (await executable(binary)) ? resolve(binary) : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = resolve(dir || '.', binary);
    if (await executable(candidate)) return candidate;
  }
  return undefined;
}

/** Identities found in this process, by binary: a run asks for ffmpeg's twice (version, capabilities). */
const identities = new Map<string, Promise<string | undefined>>();

/**
 * The key for `binary`'s facts, or undefined when it cannot be found (its spawn will say why). Found
 * once per process, like the answers themselves; a binary not found is looked for again next time.
 */
export function toolIdentity(binary: string): Promise<string | undefined> {
  let found = identities.get(binary);
  if (!found) {
    found = findIdentity(binary);
    identities.set(binary, found);
    void found.then((id) => { if (id === undefined) identities.delete(binary); });
  }
  return found;
}

async function findIdentity(binary: string): Promise<string | undefined> {
  try {
    const path = await locate(binary);
    if (!path) return undefined;
    const real = await realpath(path);
    return binaryIdentity(real, await stat(real, { bigint: true }));
  } catch {
    return undefined;
  }
}

async function readStored(dir: string): Promise<Stored> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, FILE), 'utf8')) as Partial<Stored>;
    if (parsed.format === FORMAT && parsed.tools && typeof parsed.tools === 'object') return { format: FORMAT, tools: parsed.tools };
  } catch {
    // missing, unreadable or torn by hand: start afresh
  }
  return { format: FORMAT, tools: {} };
}

/** The file as this process last read or wrote it: a run asks about three binaries in a row. */
let lastRead: { dir: string; stored: Promise<Stored> } | undefined;

/** The facts kept for the binary with this identity; empty when none are. */
export async function recallFacts(identity: string | undefined): Promise<ToolFacts> {
  const dir = cacheDir();
  if (!identity || !dir) return {};
  if (lastRead?.dir !== dir) lastRead = { dir, stored: readStored(dir) };
  const entry = (await lastRead.stored).tools[identity];
  if (!entry) return {};
  const { version, formats, encoders } = entry;
  return {
    ...(typeof version === 'string' && { version }),
    ...(formats && typeof formats === 'object' && { formats }),
    ...(encoders && typeof encoders === 'object' && { encoders }),
  };
}

/** Writes go one after another within a process, so two answers about one binary both land. */
let writing: Promise<void> = Promise.resolve();

/**
 * Adds `facts` to what is kept for the binary with this identity. Best effort: a folder that cannot be
 * written only means the next run asks again. Another process writing at the same moment may win the
 * rename; its file is whole either way.
 */
export function rememberFacts(identity: string | undefined, facts: ToolFacts): Promise<void> {
  const dir = cacheDir();
  if (!identity || !dir) return Promise.resolve();
  writing = writing.then(async () => {
    try {
      await mkdir(dir, { recursive: true });
      const stored = await readStored(dir);
      stored.tools[identity] = { ...stored.tools[identity], ...facts, savedAt: Date.now() };
      const kept = Object.entries(stored.tools).sort((a, b) => (b[1].savedAt ?? 0) - (a[1].savedAt ?? 0)).slice(0, MAX_ENTRIES);
      const next: Stored = { format: FORMAT, tools: Object.fromEntries(kept) };
      await atomicWriteSmallFile(join(dir, FILE), JSON.stringify(next));
      lastRead = { dir, stored: Promise.resolve(next) };
    } catch {
      // not kept: the answers are asked for again next time
    }
  });
  return writing;
}
