// A target host dies mid-evacuation: each guest in flight to it ends as its source reports
// (back on the source, or indeterminate with its migration id), the guests planned for it go to
// the hosts that remain, and a rerun moves what was left on the source.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { evacuate } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

const dirs: string[] = [];
afterEach(async () => {
  while (dirs.length) await rm(dirs.pop()!, { recursive: true, force: true });
});

function pool(): { p: FakePool; ids: string[] } {
  const p = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  const ids = Array.from({ length: 6 }, (_, i) => p.addGuest('A', { name: `g${i}`, memoryMiB: 256, durationMs: 15 }));
  return { p, ids };
}

/** Kills C as soon as the first migration into it has started. */
function killCOnFirstMigration(p: FakePool): () => number {
  let killedAt = -1;
  p.onStart = (m) => {
    if (m.to === 'C' && killedAt < 0) {
      killedAt = p.started.length;
      p.kill('C');
    }
  };
  return () => killedAt;
}

test('C dies with a guest in flight: that guest is on exactly one host or reported indeterminate with its id; the rest go to B', async () => {
  const { p, ids } = pool();
  const killedAt = killCOnFirstMigration(p);
  const doomed = new Set<string>();
  // The first guest caught in flight to C ends indeterminate; any other caught there fails back to A.
  p.onTargetLost = (guestId) => (doomed.size === 0 || doomed.has(guestId) ? (doomed.add(guestId), 'indeterminate') : 'failed');
  const report = await evacuate(p, 'A', { parallel: 2, perTarget: 1, pollIntervalMs: 2 });

  expect(killedAt()).toBeGreaterThan(0);
  expect(p.started.slice(killedAt()).every((m) => m.to === 'B')).toBe(true);
  for (const g of report.guests) {
    if (g.outcome === 'indeterminate') {
      expect(doomed.has(g.guestId)).toBe(true);
      const id = g.migrationIds.at(-1)!;
      expect(p.migrationState(id)).toMatchObject({ state: 'indeterminate', to: 'C', guestId: g.guestId });
      expect(g.error?.code).toBe('ERR_INDETERMINATE');
    } else {
      expect(g.outcome).toBe('completed');
      expect(g.runsOn).toBe('B');
      expect(p.placesOf(g.guestId)).toEqual(['B']);
    }
  }
  expect(report.guests.filter((g) => g.outcome === 'indeterminate')).toHaveLength(1);
  expect(report.guests.map((g) => g.guestId).sort()).toEqual([...ids].sort());
  expect(report.hostEmpty).toBe(false);
  expect(p.guestNames('A')).toHaveLength(1);
});

test('guests left on A after C died are reported there, and a rerun with the same ledger moves them to B', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-pool-'));
  dirs.push(dir);
  const ledgerPath = join(dir, 'evacuate-A.json');
  const { p, ids } = pool();
  const killedAt = killCOnFirstMigration(p);
  // B refuses g0 during the first run: after failing on C and then on B it is left on A.
  let bRefusesG0 = true;
  p.failWhen = ({ guestName, to }) => (bRefusesG0 && guestName === 'g0' && to === 'B' ? 'ERR_OUT_OF_MEMORY' : undefined);
  const first = await evacuate(p, 'A', { parallel: 2, pollIntervalMs: 2, ledgerPath });
  expect(killedAt()).toBeGreaterThan(0);
  const leftOnA = first.guests.filter((g) => g.runsOn === 'A');
  expect(leftOnA.map((g) => g.guestName)).toEqual(p.guestNames('A'));
  expect(leftOnA.length).toBeGreaterThan(0);
  expect(first.hostEmpty).toBe(false);

  bRefusesG0 = false;
  const second = await evacuate(p, 'A', { parallel: 2, pollIntervalMs: 2, ledgerPath });
  expect(second.evacuationId).toBe(first.evacuationId);
  expect(second.hostEmpty).toBe(true);
  expect(second.state).toBe('completed');
  for (const id of ids) expect(p.placesOf(id)).toEqual(['B']);
  for (const g of second.guests) expect(g).toMatchObject({ outcome: 'completed', runsOn: 'B' });
});
