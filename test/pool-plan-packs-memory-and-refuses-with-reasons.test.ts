// Planning an evacuation up front: memory bin-packed over the enabled targets after counting
// reservations not yet made, in priority order, and every guest that cannot be placed reported
// with its reason; the coordinator refuses such a plan before anything moves unless told to move
// what fits.
import { expect, test } from 'vitest';
import type { GuestInfo, HostStatus } from '../dist/agent/control-types.js';
import { planEvacuation } from '../dist/pool/evacuation-plan.js';
import { evacuate, planHostEvacuation } from '../dist/pool/evacuation.js';
import { FakePool, MiB } from './helpers/fake-pool.js';

function guest(name: string, memoryMiB: number, extra: Partial<GuestInfo> = {}): GuestInfo {
  return { id: `id-${name}`, name, kind: 'sim', memoryBytes: memoryMiB * MiB, vcpus: 1, state: 'running', since: '', priority: 0, ...extra };
}

function host(name: string, freeMiB: number, extra: Partial<HostStatus> = {}): HostStatus {
  const capacityBytes = 8192 * MiB;
  const freeBytes = freeMiB * MiB;
  return { name, url: `http://${name}`, capacityBytes, usedBytes: capacityBytes - freeBytes, reservedBytes: 0, freeBytes, maintenance: false, guests: 0, migrationsIn: 0, migrationsOut: 0, version: 't', ...extra };
}

const A = host('A', 0);

test('guests spread over the targets with the most room', () => {
  const plan = planEvacuation({ source: 'A', hosts: [A, host('B', 1000), host('C', 1000)], guests: ['g1', 'g2', 'g3', 'g4'].map((n) => guest(n, 200)) });
  expect(plan.fits).toBe(true);
  const counts = new Map<string, number>();
  for (const m of plan.moves) counts.set(m.to!, (counts.get(m.to!) ?? 0) + 1);
  expect(Object.fromEntries(counts)).toEqual({ B: 2, C: 2 });
  expect(plan.targets).toEqual([
    { name: 'B', freeBytes: 1000 * MiB, leftBytes: 600 * MiB },
    { name: 'C', freeBytes: 1000 * MiB, leftBytes: 600 * MiB },
  ]);
});

test('when spreading strands a guest, tighter packing places every one', () => {
  // Most-room-first puts 3 GiB on B (1 left) and 2 GiB on C (1 left): the last 2 GiB has no room.
  // Least-room-that-fits puts 3 GiB on C and both 2 GiB guests on B.
  const plan = planEvacuation({ source: 'A', hosts: [A, host('B', 4096), host('C', 3072)], guests: [guest('big', 3072), guest('m1', 2048), guest('m2', 2048)] });
  expect(plan.fits).toBe(true);
  expect(plan.moves.map((m) => [m.guestName, m.to])).toEqual([['big', 'C'], ['m1', 'B'], ['m2', 'B']]);
  expect(plan.targets.every((t) => t.leftBytes >= 0)).toBe(true);
});

test('reservations of migrations in flight that a target has not counted yet take room', () => {
  const plan = planEvacuation({ source: 'A', hosts: [A, host('B', 1000)], guests: [guest('g', 500)], pendingBytes: new Map([['B', 600 * MiB]]) });
  expect(plan.fits).toBe(false);
  expect(plan.moves[0]!.to).toBeUndefined();
  expect(plan.moves[0]).toMatchObject({ guestName: 'g', code: 'ERR_INSUFFICIENT_CAPACITY', reason: 'needs 500 MiB; the most free on any target is 400 MiB on B' });
});

test('higher priority first, then larger first; the room goes to priority and the rest is reported with its reason', () => {
  const guests = [guest('small-low', 100), guest('big-low', 600), guest('mid-high', 500, { priority: 5 }), guest('tiny-high', 50, { priority: 5 })];
  const plan = planEvacuation({ source: 'A', hosts: [A, host('B', 700)], guests });
  expect(plan.moves.map((m) => m.guestName)).toEqual(['mid-high', 'tiny-high', 'big-low', 'small-low']);
  expect(plan.moves.map((m) => m.to)).toEqual(['B', 'B', undefined, 'B']);
  expect(plan.moves[2]).toMatchObject({ code: 'ERR_INSUFFICIENT_CAPACITY', reason: 'needs 600 MiB; the most free on any target is 150 MiB on B after the guests placed before it (700 MiB before the plan)' });
});

test('targets in maintenance, outside --to, or failed on before take nothing, and the reasons say so', () => {
  const hosts = [A, host('B', 4096, { maintenance: true }), host('C', 4096)];
  const onlyB = planEvacuation({ source: 'A', hosts, guests: [guest('g', 100)], to: ['B'] });
  expect(onlyB.moves[0]!.to).toBeUndefined();
  expect(onlyB.moves[0]).toMatchObject({ code: 'ERR_HOST_IN_MAINTENANCE', reason: 'no target host can take it (B is in maintenance)' });
  const avoided = planEvacuation({ source: 'A', hosts, guests: [guest('g', 100), guest('h', 100)], avoid: new Map([['id-g', new Set(['C'])]]) });
  expect(avoided.moves.map((m) => m.to)).toEqual([undefined, 'C']);
  expect(avoided.moves[0]!.reason).toBe('no target host can take it (B is in maintenance); already failed on C');
  expect(() => planEvacuation({ source: 'A', hosts, guests: [], to: ['X'] })).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
  expect(() => planEvacuation({ source: 'A', hosts, guests: [], to: ['A'] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});

test('a guest paused after an unknown switchover or still arriving is reported, not placed', () => {
  const plan = planEvacuation({
    source: 'A',
    hosts: [A, host('B', 4096)],
    guests: [guest('p', 100, { state: 'paused', migrationId: 'm7' }), guest('in', 100, { state: 'migrating-in', migrationId: 'm8' })],
  });
  expect(plan.moves).toEqual([
    expect.objectContaining({ guestName: 'in', code: 'ERR_CONFLICT', reason: 'still arriving on A (migration m8); evacuate again once it has landed' }),
    expect.objectContaining({ guestName: 'p', code: 'ERR_CONFLICT', reason: 'paused after a switchover whose outcome is unknown (migration m7); resolve that migration first' }),
  ]);
});

function crowdedPool(): FakePool {
  const pool = new FakePool([{ name: 'A', capacityMiB: 4096 }, { name: 'B', capacityMiB: 1024 }, { name: 'C', capacityMiB: 512 }]);
  pool.addGuest('A', { name: 'g1', memoryMiB: 900 });
  pool.addGuest('A', { name: 'g2', memoryMiB: 400 });
  pool.addGuest('A', { name: 'g3', memoryMiB: 800 });
  return pool;
}

test('a plan that does not fit is refused before anything moves, with per-guest reasons', async () => {
  const pool = crowdedPool();
  const dry = await planHostEvacuation(pool, 'A');
  expect(dry.fits).toBe(false);
  const report = await evacuate(pool, 'A', { pollIntervalMs: 2 });
  expect(report.refused).toBe(true);
  expect(report.state).toBe('failed');
  expect(report.hostEmpty).toBe(false);
  expect(pool.started).toEqual([]);
  expect(report.guests.map((g) => [g.guestName, g.outcome, g.runsOn, g.error?.code])).toEqual([
    ['g1', 'pending', 'A', undefined],
    ['g3', 'unplaced', 'A', 'ERR_INSUFFICIENT_CAPACITY'],
    ['g2', 'pending', 'A', undefined],
  ]);
  expect(report.guests[1]!.error!.message).toBe('needs 800 MiB; the most free on any target is 512 MiB on C');
  expect(pool.isInMaintenance('A')).toBe(false);
  expect(pool.claimOf('A')).toBeUndefined();
});

test('told to move what fits, it moves those and reports the rest left on the source', async () => {
  const pool = crowdedPool();
  const report = await evacuate(pool, 'A', { pollIntervalMs: 2, moveWhatFits: true });
  expect(report.refused).toBe(false);
  expect(report.guests.map((g) => [g.guestName, g.outcome, g.runsOn])).toEqual([
    ['g1', 'completed', 'B'],
    ['g3', 'unplaced', 'A'],
    ['g2', 'completed', 'C'],
  ]);
  expect(pool.guestNames('A')).toEqual(['g3']);
  expect(report.hostEmpty).toBe(false);
  expect(report.state).toBe('failed');
  expect(pool.isInMaintenance('A')).toBe(true);
});
