// A QEMU guest on host agents, as a user runs them: `livemig vm start --backend qemu` on host A,
// `vm migrate` to B and back to A, each host a separate `livemig host --backend sim,qemu`. Each
// move completes verified; the guest keeps its id and name, runs on the host it went to with its
// own memory check passing on its serial log there, its clock going on from where it stood; the
// QEMU it left is gone with its folder; and stopping it leaves nothing in any host's QEMU folder.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { GuestInfo, MigrationInfo } from '../dist/agent/control-types.js';
import { startLivemig } from './helpers/pool-processes.js';
import { expectGuestChecksItself, guestOn, startQemuHosts, type QemuHosts } from './helpers/qemu-hosts.js';
import { qemuTest } from './helpers/qemu.js';

let hosts: QemuHosts | undefined;

afterEach(async () => {
  await hosts?.stop();
  hosts = undefined;
});

/** Runs `livemig vm ...args --host URL-of-host --key-file ... --json`; returns its exit status and parsed output. */
async function vm<T>(host: string, args: string[]): Promise<{ status: number | null; out: T }> {
  const run = await startLivemig(['vm', ...args, '--host', hosts!.hosts[host]!.url, '--key-file', hosts!.keyFile, '--json']).done;
  let out: T;
  try {
    out = JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`livemig vm ${args.join(' ')} printed no JSON (status ${run.status}):\n${run.stdout}\n${run.stderr}`);
  }
  return { status: run.status, out };
}

/** Migrates the guest from `from` to `to` with the CLI and checks it arrived, running and checking itself. */
async function move(guest: GuestInfo, from: string, to: string, lastSecondsBefore: number): Promise<{ there: GuestInfo; lastSeconds: number }> {
  const { status, out } = await vm<MigrationInfo>(from, ['migrate', '--guest', guest.name, '--to', hosts!.hosts[to]!.url]);
  expect(out.error).toBeUndefined();
  expect(out).toMatchObject({ state: 'completed', guestId: guest.id, guestName: guest.name, guestRunningOn: 'target', verified: true });
  expect(status).toBe(0);

  const there = await guestOn(hosts!, to, guest.id);
  expect(there).toMatchObject({ id: guest.id, name: guest.name, kind: 'qemu', memoryBytes: guest.memoryBytes });
  expect(there.console!.startsWith(hosts!.qemuDirs[to]!)).toBe(true);
  expect((await hosts!.hosts[from]!.client.guests()).map((g) => g.id)).not.toContain(guest.id);
  // The QEMU it left has ended, and its folder (RAM file, serial log) is gone.
  expect(existsSync(dirname(guest.console!))).toBe(false);

  const reports = await expectGuestChecksItself(there.console!);
  // The same guest, not a fresh boot: its clock goes on from where it stood on the other host.
  expect(reports[0]!.seconds).toBeGreaterThanOrEqual(lastSecondsBefore);
  return { there, lastSeconds: reports.at(-1)!.seconds };
}

qemuTest('a QEMU guest started with the CLI moves A to B to A, verified, and runs on checking itself', async () => {
  hosts = await startQemuHosts(['A', 'B']);
  const started = await vm<GuestInfo>('A', ['start', '--backend', 'qemu', '--name', 'tcg-1', '--memory', '64MiB', '--dirty-rate', '8MB/s']);
  expect(started.status).toBe(0);
  const guest = started.out;
  expect(guest).toMatchObject({ name: 'tcg-1', kind: 'qemu', memoryBytes: 64 * 2 ** 20, vcpus: 1, state: 'running' });
  expect(guest.console!.startsWith(hosts.qemuDirs.A!)).toBe(true);
  // Admission counts the guest's RAM.
  expect((await hosts.hosts.A!.client.host()).usedBytes).toBe(64 * 2 ** 20);
  const onA = await expectGuestChecksItself(guest.console!, 2);

  const toB = await move(guest, 'A', 'B', onA.at(-1)!.seconds);
  expect((await hosts.hosts.B!.client.host()).usedBytes).toBe(64 * 2 ** 20);
  expect((await hosts.hosts.A!.client.host()).usedBytes).toBe(0);
  const back = await move(toB.there, 'B', 'A', toB.lastSeconds);

  const listed = await vm<GuestInfo[]>('A', ['list']);
  expect(listed.out.map((g) => [g.id, g.name, g.kind])).toEqual([[guest.id, 'tcg-1', 'qemu']]);
  const stopped = await vm<GuestInfo>('A', ['stop', '--guest', guest.id]);
  expect(stopped.status).toBe(0);
  expect(existsSync(dirname(back.there.console!))).toBe(false);
  expect(await hosts.leftovers()).toEqual([]);
}, 90_000);
