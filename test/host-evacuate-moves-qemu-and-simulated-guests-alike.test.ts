// Evacuating a host that holds a QEMU guest and a simulated guest (`livemig host evacuate A`, each
// host a separate `livemig host --backend sim,qemu`): the host ends empty, both guests complete
// and run on B under their ids and names, the simulated one matching its replay oracle and the
// QEMU one checking its own memory on its serial log there; A's QEMU folder is left empty.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, expect } from 'vitest';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { expectHostGuestMatchesOracle } from './helpers/host-process.js';
import { evacuateWithCli } from './helpers/pool-processes.js';
import { expectGuestChecksItself, guestOn, startQemuHosts, type QemuHosts } from './helpers/qemu-hosts.js';
import { qemuTest } from './helpers/qemu.js';

const MiB = 2 ** 20;

let hosts: QemuHosts | undefined;

afterEach(async () => {
  await hosts?.stop();
  hosts = undefined;
});

qemuTest('host evacuate empties a host of a QEMU guest and a simulated guest alike', async () => {
  hosts = await startQemuHosts(['A', 'B']);
  const a = hosts.hosts.A!.client;
  const qemu = await a.startGuest({ name: 'tcg', kind: 'qemu', memoryBytes: 64 * MiB, config: { dirtyRateBytesPerSec: 8e6 }, priority: 1 });
  const sim = await a.startGuest({ name: 'sim', memoryBytes: 32 * MiB, config: { workload: 'uniform', dirtyRateBytesPerSec: 3e6, seed: 7 } });
  expect((await a.host()).usedBytes).toBe(96 * MiB);
  await expectGuestChecksItself(qemu.console!, 1);

  const { status, info, stderr } = await evacuateWithCli(hosts, ['A', '--to', 'B']);
  expect(info.error, stderr).toBeUndefined();
  expect(info.state).toBe('completed');
  expect(info.hostEmpty).toBe(true);
  expect(status).toBe(0);
  const outcomes = Object.fromEntries(info.guests.map((g) => [g.guestName, [g.outcome, g.runsOn]]));
  expect(outcomes).toEqual({ tcg: ['completed', 'B'], sim: ['completed', 'B'] });

  expect(await a.guests()).toEqual([]);
  expect((await a.host()).usedBytes).toBe(0);
  const qemuOnB = await guestOn(hosts, 'B', qemu.id);
  expect(qemuOnB).toMatchObject({ name: 'tcg', kind: 'qemu', priority: 1 });
  expect(qemuOnB.console!.startsWith(hosts.qemuDirs.B!)).toBe(true);
  expect(existsSync(dirname(qemu.console!))).toBe(false);
  await expectGuestChecksItself(qemuOnB.console!);
  expect(await guestOn(hosts, 'B', sim.id)).toMatchObject({ name: 'sim', kind: 'sim' });
  await expectHostGuestMatchesOracle(hosts.hosts.B!.client, sim.id, sim.config as unknown as SimGuestConfig);
  expect((await hosts.hosts.B!.client.host()).usedBytes).toBe(96 * MiB);
  expect(await hosts.leftovers()).toEqual([`B/${dirname(qemuOnB.console!).split('/').at(-1)}`]);
}, 90_000);
