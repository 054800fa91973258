// A host says which guest kinds it receives (HostStatus.guestKinds). The plan places a guest only
// on a host that accepts its kind, even when another has more room, and refuses up front, with
// ERR_UNKNOWN_BACKEND and the kinds each target takes, a guest that no target accepts: nothing
// moves, as with a guest that has no room. A host agent lists the kinds of its backends.
import { afterEach, expect, test } from 'vitest';
import { HostAgent } from '../dist/agent/host-agent.js';
import { hostBackendsFromFlag } from '../dist/cli/host-backends.js';
import { evacuate, planHostEvacuation } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

const hosts: HostAgent[] = [];
afterEach(async () => {
  while (hosts.length) await hosts.pop()!.close();
});

function mixedPool(): FakePool {
  // B has the most room but runs simulated guests only; C takes both kinds.
  const pool = new FakePool([
    { name: 'A', capacityMiB: 4096, kinds: ['qemu', 'sim'] },
    { name: 'B', capacityMiB: 4096, kinds: ['sim'] },
    { name: 'C', capacityMiB: 1024, kinds: ['qemu', 'sim'] },
  ]);
  pool.addGuest('A', { name: 'vm1', memoryMiB: 256, kind: 'qemu' });
  pool.addGuest('A', { name: 'vm2', memoryMiB: 256, kind: 'qemu' });
  pool.addGuest('A', { name: 'sim1', memoryMiB: 256 });
  return pool;
}

test('QEMU guests go only to the host that runs QEMU, however much room the others have', async () => {
  const pool = mixedPool();
  const plan = await planHostEvacuation(pool, 'A');
  expect(plan.fits).toBe(true);
  const to = Object.fromEntries(plan.moves.map((m) => [m.guestName, m.to]));
  expect(to).toEqual({ vm1: 'C', vm2: 'C', sim1: 'B' });

  const report = await evacuate(pool, 'A', { parallel: 3, perTarget: 2, pollIntervalMs: 5 });
  expect(report.hostEmpty).toBe(true);
  expect(report.guests.every((g) => g.outcome === 'completed' && g.migrationIds.length === 1)).toBe(true);
  expect(pool.guestNames('C')).toEqual(['vm1', 'vm2']);
});

test('a guest whose kind no target accepts is refused before anything moves, with its reason', async () => {
  const pool = new FakePool([
    { name: 'A', capacityMiB: 4096, kinds: ['qemu', 'sim'] },
    { name: 'B', capacityMiB: 4096, kinds: ['sim'] },
    { name: 'C', capacityMiB: 4096, kinds: ['sim'] },
  ]);
  pool.addGuest('A', { name: 'vm1', memoryMiB: 256, kind: 'qemu' });
  pool.addGuest('A', { name: 'sim1', memoryMiB: 256 });
  const report = await evacuate(pool, 'A', { pollIntervalMs: 5 });
  expect(report.refused).toBe(true);
  expect(pool.started).toEqual([]);
  const vm1 = report.plan.find((m) => m.guestName === 'vm1')!;
  expect(vm1.to).toBeUndefined();
  expect(vm1.code).toBe('ERR_UNKNOWN_BACKEND');
  expect(vm1.reason).toMatch(/kind qemu .*B takes sim; C takes sim/);
  expect(report.guests.find((g) => g.guestName === 'vm1')).toMatchObject({ outcome: 'unplaced', error: { code: 'ERR_UNKNOWN_BACKEND' } });
  expect(report.plan.find((m) => m.guestName === 'sim1')!.to).toBeDefined();

  // Told to move what fits, the simulated guest moves and the QEMU guest stays, reported.
  const partial = await evacuate(pool, 'A', { moveWhatFits: true, pollIntervalMs: 5 });
  expect(pool.started.map((m) => m.guestId)).toEqual(['id-sim1']);
  expect(partial.guests.find((g) => g.guestName === 'vm1')).toMatchObject({ outcome: 'unplaced', runsOn: 'A', error: { code: 'ERR_UNKNOWN_BACKEND' } });
});

test('a host agent lists the guest kinds of its backends in its status', async () => {
  const plain = await HostAgent.start({ name: 'plain', capacityBytes: 64 * 1024 * 1024 });
  hosts.push(plain);
  expect(plain.status().guestKinds).toEqual(['sim']);
  // As `livemig host --backend qemu,sim` starts it (QEMU itself starts only with a guest).
  const both = await HostAgent.start({ name: 'both', capacityBytes: 64 * 1024 * 1024, ...hostBackendsFromFlag('qemu,sim') });
  hosts.push(both);
  expect(both.status().guestKinds).toEqual(['qemu', 'sim']);
});
