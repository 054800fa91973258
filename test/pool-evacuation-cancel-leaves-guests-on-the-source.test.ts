// Cancelling an evacuation: no new migration starts, those in flight are cancelled and their
// guests stay on the source, a migration past its switchover decision completes on its target,
// and no guest ever runs in two places.
import { expect, test } from 'vitest';
import { evacuate } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

function pool(): { p: FakePool; ids: string[] } {
  const p = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  // Long enough that the abort always lands while the first two run.
  const ids = Array.from({ length: 6 }, (_, i) => p.addGuest('A', { name: `g${i}`, memoryMiB: 256, durationMs: 60_000 }));
  return { p, ids };
}

test('cancelled once two run: both stay on A, nothing else starts, and every guest is on A alone', async () => {
  const { p, ids } = pool();
  const abort = new AbortController();
  const report = await evacuate(p, 'A', {
    parallel: 2,
    pollIntervalMs: 2,
    signal: abort.signal,
    onEvent: (e) => e.type === 'started' && p.started.length === 2 && abort.abort(),
  });
  expect(p.started).toHaveLength(2);
  expect(report.state).toBe('cancelled');
  expect(report.hostEmpty).toBe(false);
  const inFlight = new Set(p.started.map((m) => m.guestId));
  for (const g of report.guests) {
    expect(g.runsOn).toBe('A');
    expect(g.outcome).toBe(inFlight.has(g.guestId) ? 'cancelled' : 'pending');
    expect(g.migrationIds).toHaveLength(inFlight.has(g.guestId) ? 1 : 0);
  }
  for (const m of p.started) expect(p.migrationState(m.migrationId)!.state).toBe('cancelled');
  for (const id of ids) expect(p.placesOf(id)).toEqual(['A']);
  expect(p.guestNames('B')).toEqual([]);
  expect(p.guestNames('C')).toEqual([]);
  expect(p.claimOf('A')).toBeUndefined();
});

test('a migration past its switchover when the cancel arrives completes on its target, and only there', async () => {
  const { p, ids } = pool();
  const late = ids[0]!;
  p.ignoresCancel = (guestId) => guestId === late;
  const abort = new AbortController();
  const report = await evacuate(p, 'A', {
    parallel: 2,
    pollIntervalMs: 2,
    signal: abort.signal,
    onEvent: (e) => e.type === 'started' && p.started.length === 2 && abort.abort(),
  });
  expect(report.guests.find((g) => g.guestId === late)!.outcome).toBe('completed');
  const result = report.guests.find((g) => g.guestId === late)!;
  expect(p.placesOf(late)).toEqual([result.runsOn]);
  expect(result.runsOn).not.toBe('A');
  for (const id of ids.slice(1)) expect(p.placesOf(id)).toEqual(['A']);
  expect(p.started).toHaveLength(2);
});
