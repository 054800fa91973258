// A guest whose migration fails with the guest still on the source is retried once on another
// host, placed by a fresh plan; after that it is left running on the source and reported with
// its error.
import { expect, test } from 'vitest';
import { evacuate } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

function pool(): FakePool {
  // B has the most room, so the plan sends the first guests there.
  return new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 2048 }]);
}

test('a guest that fails on B is moved to C; one that fails everywhere stays on A and is reported', async () => {
  const p = pool();
  const flaky = p.addGuest('A', { name: 'flaky', memoryMiB: 512, priority: 2 });
  const broken = p.addGuest('A', { name: 'broken', memoryMiB: 512, priority: 1 });
  const fine = p.addGuest('A', { name: 'fine', memoryMiB: 512 });
  p.failWhen = ({ guestName, to }) => (guestName === 'broken' || (guestName === 'flaky' && to === 'B') ? 'ERR_DOMAIN_FAILED' : undefined);
  const retries: string[] = [];
  const report = await evacuate(p, 'A', { parallel: 1, pollIntervalMs: 2, onEvent: (e) => e.type === 'retrying' && retries.push(`${e.guestName}@${e.failedOn}`) });
  const byName = new Map(report.guests.map((g) => [g.guestName, g]));

  expect(p.started.filter((m) => m.guestId === flaky).map((m) => m.to)).toEqual(['B', 'C']);
  expect(byName.get('flaky')).toMatchObject({ outcome: 'completed', runsOn: 'C' });
  expect(byName.get('flaky')!.migrationIds).toHaveLength(2);
  expect(p.placesOf(flaky)).toEqual(['C']);

  const brokenTries = p.started.filter((m) => m.guestId === broken).map((m) => m.to);
  expect(brokenTries).toHaveLength(2);
  expect(new Set(brokenTries).size).toBe(2);
  expect(byName.get('broken')).toMatchObject({ outcome: 'failed', runsOn: 'A', error: { code: 'ERR_DOMAIN_FAILED' } });
  expect(byName.get('broken')!.migrationIds).toHaveLength(2);
  expect(p.placesOf(broken)).toEqual(['A']);

  expect(byName.get('fine')).toMatchObject({ outcome: 'completed' });
  expect(p.placesOf(fine)).toEqual([byName.get('fine')!.runsOn]);
  expect(retries).toEqual(['flaky@B', `broken@${brokenTries[0]}`]);
  expect(report.hostEmpty).toBe(false);
  expect(report.state).toBe('failed');
});

test('the retry is placed with fresh capacities: with no room left elsewhere it is not retried, and says why', async () => {
  const p = pool();
  const flaky = p.addGuest('A', { name: 'flaky', memoryMiB: 1024, priority: 1 });
  p.addGuest('A', { name: 'other', memoryMiB: 1024 });
  p.failWhen = ({ guestName, to }) => (guestName === 'flaky' && to === 'B' ? 'ERR_PEER_ABORTED' : undefined);
  // Someone else fills C once the evacuation runs: the plan made at the start no longer holds.
  let filled = false;
  const fillC = (): void => {
    if (!filled) p.addGuest('C', { name: 'squatter', memoryMiB: 1536 });
    filled = true;
  };
  const report = await evacuate(p, 'A', { parallel: 2, perTarget: 2, pollIntervalMs: 2, onEvent: (e) => e.type === 'started' && fillC() });
  expect(report.plan.map((m) => m.to)).toEqual(['B', 'B']);
  const result = report.guests.find((g) => g.guestName === 'flaky')!;
  expect(p.started.filter((m) => m.guestId === flaky).map((m) => m.to)).toEqual(['B']);
  expect(result).toMatchObject({ outcome: 'failed', runsOn: 'A', error: { code: 'ERR_PEER_ABORTED' } });
  expect(result.error!.message).toMatch(/not retried: needs 1024 MiB; the most free on any target is 512 MiB on C; already failed on B$/);
  expect(p.placesOf(flaky)).toEqual(['A']);
});
