// Host agents that run QEMU guests, each a `livemig host --backend sim,qemu` process with its own
// QEMU folder under /dev/shm, in a pool file with a pool key; and what a test needs to read a
// QEMU guest's serial log wherever it runs.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { GuestInfo } from '../../dist/agent/control-types.js';
import { writeKeyFile } from '../../dist/agent/key-file.js';
import { readTestGuestLog, type TestGuestReport } from '../../dist/domain/qemu/test-guest.js';
import { startHostProcess, type HostProcess } from './host-process.js';
import type { Pool } from './pool-processes.js';
import { waitFor } from './qemu.js';

export interface QemuHosts extends Pool {
  /** Each host's QEMU folder, by host name. */
  qemuDirs: Record<string, string>;
  /** Lists what is left in every host's QEMU folder (empty once every guest is gone). */
  leftovers(): Promise<string[]>;
}

/** Starts one host process per name, each receiving and starting sim and QEMU guests. */
export async function startQemuHosts(names: string[], capacity = '1GiB'): Promise<QemuHosts> {
  const dir = mkdtempSync(join(tmpdir(), 'livemig-qemu-pool-'));
  const shm = await mkdtemp('/dev/shm/livemig-test-hosts-');
  const keyFile = join(dir, 'pool.key');
  const poolFile = join(dir, 'pool.json');
  const key = await writeKeyFile(keyFile);
  const qemuDirs: Record<string, string> = {};
  for (const name of names) {
    qemuDirs[name] = join(shm, name);
    await mkdir(qemuDirs[name]!);
  }
  const started: HostProcess[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(started.map((h) => h.stop()));
    rmSync(dir, { recursive: true, force: true });
    await rm(shm, { recursive: true, force: true });
  };
  try {
    for (const name of names) {
      const args = ['--capacity', capacity, '--key-file', keyFile, '--pool', poolFile, '--state-dir', join(dir, `state-${name}`), '--backend', 'sim,qemu', '--qemu-dir', qemuDirs[name]!];
      started.push(await startHostProcess(name, args, key));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  writeFileSync(poolFile, JSON.stringify({ hosts: started.map((h) => ({ name: h.name, url: h.url })) }));
  return {
    dir,
    keyFile,
    poolFile,
    hosts: Object.fromEntries(started.map((h) => [h.name, h])),
    configs: new Map(),
    qemuDirs,
    async leftovers() {
      const left: string[] = [];
      for (const [name, path] of Object.entries(qemuDirs)) for (const entry of await readdir(path)) left.push(`${name}/${entry}`);
      return left;
    },
    stop,
  };
}

/** The guest with `id` on `host`, expected to be there, running. */
export async function guestOn(hosts: QemuHosts, host: string, id: string): Promise<GuestInfo> {
  const guest = (await hosts.hosts[host]!.client.guests()).find((g) => g.id === id);
  expect(guest, `guest ${id} on host ${host}`).toBeDefined();
  expect(guest!.state).toBe('running');
  return guest!;
}

/** Resolves with the test guest's reports in the serial log at `console` once there are `count`. */
export function waitForGuestReports(console: string, count: number): Promise<TestGuestReport[]> {
  return waitFor(`${count} reports in ${console}`, async () => {
    const r = (await readTestGuestLog(console)).filter((l): l is TestGuestReport => l.kind === 'report');
    return r.length >= count ? r : undefined;
  });
}

/**
 * Waits for `count` reports of the test guest in the serial log at `console` and expects them to
 * show a guest that runs and finds its memory right: time, writes and checks go up, no error.
 */
export async function expectGuestChecksItself(console: string, count = 3): Promise<TestGuestReport[]> {
  const reports = await waitForGuestReports(console, count);
  for (let i = 1; i < reports.length; i++) {
    expect(reports[i]!.seconds).toBeGreaterThan(reports[i - 1]!.seconds);
    expect(reports[i]!.writes).toBeGreaterThan(reports[i - 1]!.writes);
    expect(reports[i]!.checked).toBeGreaterThan(reports[i - 1]!.checked);
  }
  expect(reports.every((r) => r.errors === 0), `errors in ${JSON.stringify(reports)}`).toBe(true);
  expect((await readTestGuestLog(console)).some((l) => l.kind === 'check-failed')).toBe(false);
  return reports;
}
