// The evacuation's sliding window: never more migrations at once than `parallel`, never more
// into one host than `perTarget`, the window kept full while there is work, and guests started
// in priority order (then larger first).
import { expect, test } from 'vitest';
import { evacuate } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

function poolWithGuests(count: number): { pool: FakePool; ids: string[] } {
  const pool = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  const ids = Array.from({ length: count }, (_, i) => pool.addGuest('A', { name: `g${i}`, memoryMiB: 256, durationMs: 5 + (i % 3) * 7 }));
  return { pool, ids };
}

test('eight guests with a window of 3 and 2 per target: the limits hold, the window fills, and A ends empty in maintenance', async () => {
  const { pool, ids } = poolWithGuests(8);
  const report = await evacuate(pool, 'A', { parallel: 3, perTarget: 2, pollIntervalMs: 2 });
  expect(pool.peak.overall).toBe(3);
  expect(pool.peak.perTarget.get('B')).toBeLessThanOrEqual(2);
  expect(pool.peak.perTarget.get('C')).toBeLessThanOrEqual(2);
  expect(report.state).toBe('completed');
  expect(report.hostEmpty).toBe(true);
  expect(report.guests.map((g) => g.outcome)).toEqual(Array(8).fill('completed'));
  for (const g of report.guests) {
    expect(pool.placesOf(g.guestId)).toEqual([g.runsOn]);
    expect(g.migrationIds).toHaveLength(1);
    expect(g.downtimeMs).toBe(3);
  }
  expect(new Set(report.guests.map((g) => g.runsOn))).toEqual(new Set(['B', 'C']));
  expect(pool.started).toHaveLength(ids.length);
  expect(pool.guestNames('A')).toEqual([]);
  expect(pool.isInMaintenance('A')).toBe(true);
  expect(pool.claimOf('A')).toBeUndefined();
});

test('one target and a window of 4: the per-target limit of 1 is the one that binds', async () => {
  const { pool } = poolWithGuests(4);
  const report = await evacuate(pool, 'A', { to: ['B'], parallel: 4, perTarget: 1, pollIntervalMs: 2 });
  expect(report.hostEmpty).toBe(true);
  expect(pool.peak.perTarget.get('B')).toBe(1);
  expect(pool.peak.perTarget.get('C')).toBe(0);
  expect(pool.peak.overall).toBe(1);
  expect(report.guests.every((g) => g.runsOn === 'B')).toBe(true);
});

test('guests start in priority order, then larger first', async () => {
  const pool = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 8192 }]);
  pool.addGuest('A', { name: 'web', memoryMiB: 128, priority: 1 });
  pool.addGuest('A', { name: 'db', memoryMiB: 512, priority: 9 });
  pool.addGuest('A', { name: 'batch', memoryMiB: 1024 });
  pool.addGuest('A', { name: 'cache', memoryMiB: 256, priority: 9 });
  pool.addGuest('A', { name: 'scratch', memoryMiB: 64 });
  const started: string[] = [];
  const report = await evacuate(pool, 'A', { parallel: 1, pollIntervalMs: 2, onEvent: (e) => e.type === 'started' && started.push(e.guestName) });
  expect(started).toEqual(['db', 'cache', 'web', 'batch', 'scratch']);
  expect(pool.started.map((m) => m.guestId)).toEqual(['id-db', 'id-cache', 'id-web', 'id-batch', 'id-scratch']);
  expect(report.plan.map((m) => m.guestName)).toEqual(started);
  expect(report.hostEmpty).toBe(true);
});
