// Evacuations over three `livemig host` processes that go wrong on the way. C's agent is killed
// while a guest is in flight to it: every guest runs on exactly one host or is reported
// indeterminate with its migration id, the evacuation reports the guests left on A, and a rerun
// (the same evacuation, from its ledger) moves them to B. Then B is evacuated back to A and
// cancelled with Ctrl-C mid-way (a second evacuation of B meanwhile is refused): the guests in
// flight stay on B and no guest runs twice. Links are capped at 40 MB/s, so each 32 MiB guest is
// in flight for about a second.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { EvacuationInfo } from '../dist/agent/control-types.js';
import {
  evacuateWithCli,
  expectRunsOnlyOn,
  parseReport,
  placesOfGuests,
  startEvacuation,
  startMixedGuests,
  startPool,
  until,
  type Pool,
} from './helpers/pool-processes.js';

const CAP = ['--max-bandwidth', '40MB/s'];
let pool: Pool;
let ids: string[] = [];

beforeAll(async () => {
  pool = await startPool({ A: '256MiB', B: '256MiB', C: '256MiB' });
  ids = await startMixedGuests(pool, 'A');
});

afterAll(async () => {
  await pool?.stop();
});

/** Expects each guest either on exactly one of `live` (true to its oracle), or reported indeterminate with its migration id. */
async function expectEachGuestOnce(info: EvacuationInfo, live: string[]): Promise<void> {
  const places = await placesOfGuests(pool, live);
  for (const id of ids) {
    const reported = info.guests.find((g) => g.guestId === id);
    expect(reported, `guest ${id} in the report`).toBeDefined();
    if (reported!.outcome === 'indeterminate') {
      expect(reported!.migrationIds.length).toBeGreaterThan(0);
      expect(reported!.error?.code).toBeDefined();
      expect((places.get(id) ?? []).filter((p) => p.guest.state === 'running')).toEqual([]);
      continue;
    }
    expect(reported!.runsOn, `where ${reported!.guestName} runs`).toBeDefined();
    await expectRunsOnlyOn(pool, id, reported!.runsOn!, live);
  }
}

test("C's agent dies with a guest in flight to it: each guest is on one host or indeterminate, those left on A are reported, and a rerun moves them to B", async () => {
  const { A, C } = pool.hosts;
  const run = startEvacuation(pool, ['A', '--to', 'B,C', '--parallel', '2', ...CAP]);
  // Kill C as soon as a migration into it is copying memory.
  await until('a migration from A to C in pre-copy', async () =>
    (await A!.client.migrations()).find((m) => m.direction === 'out' && m.to === C!.url && m.phase === 'precopy'),
  );
  C!.child.kill('SIGKILL');
  const first = await run.done;
  const info = parseReport(first.stdout, first.stderr);

  expect(first.status).toBe(1);
  expect(info).toMatchObject({ state: 'failed', hostEmpty: false });
  expect(info.guests.map((g) => g.guestId).sort()).toEqual([...ids].sort());
  expect(info.guests.filter((g) => g.runsOn === 'C')).toEqual([]);
  await expectEachGuestOnce(info, ['A', 'B']);
  // The report names exactly the guests left on A.
  const onA = (await A!.client.guests()).filter((g) => g.state === 'running').map((g) => g.id);
  expect(onA.length).toBeGreaterThan(0);
  expect(info.guests.filter((g) => g.runsOn === 'A').map((g) => g.guestId).sort()).toEqual([...onA].sort());
  const lost = info.guests.filter((g) => g.outcome === 'indeterminate').map((g) => g.guestId);

  // A rerun, to B only, resumes the same evacuation from its ledger and moves what was left.
  const second = await evacuateWithCli(pool, ['A', '--to', 'B', ...CAP]);
  expect(second.info.evacuationId).toBe(info.evacuationId);
  for (const id of ids.filter((i) => !lost.includes(i))) {
    expect(second.info.guests.find((g) => g.guestId === id)).toMatchObject({ outcome: 'completed', runsOn: 'B' });
    await expectRunsOnlyOn(pool, id, 'B', ['A', 'B']);
  }
  expect(second.status).toBe(lost.length === 0 ? 0 : 1);
  expect(second.info.hostEmpty).toBe(lost.length === 0);
});

test('Ctrl-C mid-way cancels the evacuation of B: the guests in flight stay on B and no guest runs twice', async () => {
  const { A, B } = pool.hosts;
  await A!.client.setMaintenance(false);
  const onB = (await B!.client.guests()).map((g) => g.id);
  expect(onB.length).toBeGreaterThan(2);
  const before = new Set((await B!.client.migrations()).map((m) => m.migrationId));
  const run = startEvacuation(pool, ['B', '--to', 'A', '--parallel', '2', '--per-target', '2', ...CAP]);
  const inFlight = await until('two migrations out of B in pre-copy', async () => {
    const copying = (await B!.client.migrations()).filter((m) => !before.has(m.migrationId) && m.direction === 'out' && m.phase === 'precopy');
    return copying.length === 2 ? copying : undefined;
  });
  // B takes part in one evacuation of itself at a time.
  await expect(B!.client.evacuate({ to: ['A'] })).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
  run.child.kill('SIGINT');
  const ended = await run.done;
  const info = parseReport(ended.stdout, ended.stderr);

  expect(ended.status).toBe(1);
  expect(info).toMatchObject({ state: 'cancelled', cancelRequested: true, hostEmpty: false });
  // The two in flight were cancelled and run on B; the rest never started and run on B too.
  for (const m of inFlight) {
    const g = info.guests.find((x) => x.guestId === m.guestId);
    expect(g, m.guestName).toMatchObject({ outcome: 'cancelled', runsOn: 'B', migrationIds: [m.migrationId] });
    expect(await B!.client.migration(m.migrationId)).toMatchObject({ state: 'cancelled', guestRunningOn: 'source' });
  }
  for (const g of info.guests.filter((x) => !inFlight.some((m) => m.guestId === x.guestId))) {
    expect(g, g.guestName).toMatchObject({ outcome: 'pending', runsOn: 'B', migrationIds: [] });
  }
  // Nothing runs twice: each guest of B is on exactly one host (still B), true to its oracle.
  expect(info.guests.map((g) => g.guestId).sort()).toEqual([...onB].sort());
  for (const id of onB) await expectRunsOnlyOn(pool, id, 'B', ['A', 'B']);
  expect(await A!.client.guests()).toEqual([]);
  expect(await A!.client.host()).toMatchObject({ reservedBytes: 0, migrationsIn: 0 });
});
