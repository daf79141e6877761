import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimWorkDir, keepWorkDir, sweepLeftovers, sweepPartials } from './leftovers.js';
import { ownerTag, pidNamespace } from './owner.js';

/** The id of a process that has just ended. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

const minutesAgo = (m: number): Date => new Date(Date.now() - m * 60_000);

describe('what killed processes leave', () => {
  let storage: string;
  beforeEach(async () => {
    storage = await mkdtemp(join(tmpdir(), 'avatar-leftovers-'));
    await mkdir(join(storage, 'work'));
    await mkdir(join(storage, 'outputs'));
  });
  afterEach(async () => {
    await rm(storage, { recursive: true, force: true });
  });

  const workDir = async (name: string, owner: { pid: number; hostname: string; pidns?: string } | null, writtenAt?: Date): Promise<string> => {
    const dir = join(storage, 'work', name);
    await mkdir(dir);
    await writeFile(join(dir, 'speech.wav'), 'RIFF');
    if (owner) await writeFile(join(dir, '.owner'), JSON.stringify(owner));
    if (writtenAt) {
      for (const f of await readdir(dir)) await utimes(join(dir, f), writtenAt, writtenAt);
      await utimes(dir, writtenAt, writtenAt);
    }
    return dir;
  };

  it('removes the work folder of a process of this host that is gone, and keeps a live one\'s, another host\'s and another container\'s', async () => {
    await workDir('run-dead', { pid: deadPid(), hostname: hostname(), pidns: pidNamespace() });
    await workDir('run-live', { pid: process.pid, hostname: hostname(), pidns: pidNamespace() });
    await workDir('run-elsewhere', { pid: deadPid(), hostname: 'another-host', pidns: pidNamespace() });
    // same host name, other process ids: a container beside this one
    await workDir('run-other-namespace', { pid: deadPid(), hostname: hostname(), pidns: 'pid:[1]' });
    const report = await sweepLeftovers(storage);
    expect(report.removed.map((r) => r.path)).toEqual([join(storage, 'work', 'run-dead')]);
    expect(report.removed[0]?.reason).toMatch(/process \d+ is gone/);
    expect((await readdir(join(storage, 'work'))).sort()).toEqual(['run-elsewhere', 'run-live', 'run-other-namespace']);
  });

  it('never removes a work folder a run kept on purpose, however old', async () => {
    const dir = await workDir('run-kept', null, minutesAgo(30 * 24 * 60));
    await keepWorkDir(dir);
    await utimes(join(dir, '.owner'), minutesAgo(30 * 24 * 60), minutesAgo(30 * 24 * 60));
    expect((await sweepLeftovers(storage)).removed).toEqual([]);
  });

  it('removes any work folder not written for a day, whoever made it; keeps a fresh unmarked one', async () => {
    await workDir('run-old-elsewhere', { pid: 1234, hostname: 'another-host' }, minutesAgo(25 * 60));
    await workDir('run-old-unmarked', null, minutesAgo(25 * 60));
    await workDir('run-just-made', null);
    await sweepLeftovers(storage);
    expect(await readdir(join(storage, 'work'))).toEqual(['run-just-made']);
  });

  it('removes a dead process\'s partial once it has been quiet a while, never one still being written', async () => {
    const dead = deadPid();
    const tag = ownerTag();
    const out = join(storage, 'outputs');
    const quiet = join(out, `.job-1.partial-${dead}-${tag}-a1b2c3.mp4`);
    const fresh = join(out, `.job-2.partial-${dead}-${tag}-a1b2c3.mp4`);
    const mine = join(out, `.job-3.partial-${process.pid}-${tag}-a1b2c3.mp4`);
    // another host's (its tag), quiet for an hour: its process id says nothing here
    const elsewhere = join(out, `.job-4.partial-${dead}-000000-a1b2c3.mp4`);
    const other = join(out, '.notes.txt');
    for (const f of [quiet, fresh, mine, elsewhere, other]) await writeFile(f, 'x');
    await utimes(quiet, minutesAgo(3), minutesAgo(3));
    await utimes(mine, minutesAgo(60), minutesAgo(60));
    await utimes(elsewhere, minutesAgo(60), minutesAgo(60));
    await utimes(other, minutesAgo(48 * 60), minutesAgo(48 * 60));
    const report = await sweepLeftovers(storage);
    expect(report.removed.map((r) => r.path)).toEqual([quiet]);
    expect((await readdir(out)).sort()).toEqual([fresh, mine, elsewhere, other].map((f) => f.slice(out.length + 1)).sort());
  });

  it('in a user\'s own folder removes only this host\'s dead processes\' partials, however old the others; a folder it cannot read is skipped', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'avatar-leftovers-out-'));
    try {
      const dead = join(folder, `..video.partial-${deadPid()}-${ownerTag()}-abcdef.partial-${deadPid()}-${ownerTag()}-fedcba.mp4`);
      const untagged = join(folder, '.holiday.partial-1-abcdef.mp4');
      for (const f of [dead, untagged]) {
        await writeFile(f, 'x');
        await utimes(f, minutesAgo(25 * 60), minutesAgo(25 * 60));
      }
      const report = await sweepPartials([folder, join(folder, 'missing')]);
      expect(report.removed.map((r) => r.path)).toEqual([dead]);
      expect(await readdir(folder)).toEqual(['.holiday.partial-1-abcdef.mp4']);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });

  it('a work folder made by this process is marked as its own', async () => {
    const dir = join(storage, 'work', 'run-marked');
    await mkdir(dir);
    await claimWorkDir(dir);
    expect((await sweepLeftovers(storage)).removed).toEqual([]);
    expect(await readdir(dir)).toEqual(['.owner']);
  });
});
