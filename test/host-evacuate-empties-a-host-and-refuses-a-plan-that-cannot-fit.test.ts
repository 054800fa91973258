// `livemig host evacuate` over three `livemig host` processes, the coordinator running in the
// evacuated host's agent: six guests of mixed workloads leave A for B and C two at a time, each
// runs on exactly one host and matches its replay oracle, A is left empty and in maintenance, and
// refuses a new guest. Then a plan that cannot fit is refused before anything moves, with a reason
// for the guest that has no room.
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { MigrationInfo } from '../dist/agent/control-types.js';
import { runLivemig } from './helpers/host-process.js';
import { evacuateWithCli, expectRunsOnlyOn, MiB, startMixedGuests, startPool, type Pool } from './helpers/pool-processes.js';

let pool: Pool;

beforeAll(async () => {
  pool = await startPool({ A: '256MiB', B: '128MiB', C: '128MiB' });
});

afterAll(async () => {
  await pool?.stop();
});

/** The most of `migrations` that ran at the same moment. */
function mostAtOnce(migrations: MigrationInfo[]): number {
  const edges = migrations.flatMap((m) => [
    { at: Date.parse(m.startedAt), step: 1 },
    { at: Date.parse(m.endedAt!), step: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.step - b.step);
  let now = 0;
  let most = 0;
  for (const e of edges) most = Math.max(most, (now += e.step));
  return most;
}

test('six guests leave A for B and C two at a time; each runs on one host and matches its oracle; A is empty and refuses a new guest', async () => {
  const { A, B, C } = pool.hosts as Record<'A' | 'B' | 'C', (typeof pool.hosts)[string]>;
  const ids = await startMixedGuests(pool, 'A');

  const { status, info } = await evacuateWithCli(pool, ['A', '--to', 'B,C', '--parallel', '2']);

  expect(status).toBe(0);
  expect(info).toMatchObject({ host: 'A', state: 'completed', hostEmpty: true });
  expect(info.guests.map((g) => g.guestId).sort()).toEqual([...ids].sort());
  for (const g of info.guests) {
    expect(g, g.guestName).toMatchObject({ outcome: 'completed' });
    expect(['B', 'C']).toContain(g.runsOn);
    expect(g.downtimeMs).toBeGreaterThan(0);
    expect(g.migrationIds).toHaveLength(1);
  }
  // Each guest where the report says, on no other host, true to its replay oracle.
  for (const g of info.guests) await expectRunsOnlyOn(pool, g.guestId, g.runsOn!, ['A', 'B', 'C']);
  expect(await A.client.guests()).toEqual([]);
  // Both targets took a share, and the window held: never more than two migrations at once.
  expect(new Set(info.guests.map((g) => g.runsOn))).toEqual(new Set(['B', 'C']));
  const out = (await A.client.migrations()).filter((m) => m.direction === 'out');
  expect(out).toHaveLength(6);
  expect(mostAtOnce(out)).toBeLessThanOrEqual(2);
  // A stays in maintenance, holds no claim, and refuses a new guest with its code.
  const a = await A.client.host();
  expect(a).toMatchObject({ maintenance: true, guests: 0, usedBytes: 0, reservedBytes: 0 });
  expect(a.evacuationId).toBeUndefined();
  await expect(A.client.startGuest({ name: 'late', memoryBytes: 16 * MiB })).rejects.toMatchObject({ code: 'ERR_HOST_IN_MAINTENANCE' });
  // `livemig pool status` shows the same: A empty in maintenance, three guests on each of B and C.
  const shown = runLivemig(['pool', 'status', '--pool', pool.poolFile, '--key-file', pool.keyFile, '--json']);
  expect(shown.status).toBe(0);
  const hosts = (JSON.parse(shown.stdout) as { hosts: Array<{ name: string; status: { maintenance: boolean }; guests: unknown[] }> }).hosts;
  expect(hosts.map((h) => [h.name, h.status.maintenance, h.guests.length])).toEqual([
    ['A', true, 0],
    ['B', false, 3],
    ['C', false, 3],
  ]);
  expect((await B.client.guests()).length + (await C.client.guests()).length).toBe(6);
});

test('a plan that cannot fit is refused before anything moves, with the reason of the guest that has no room', async () => {
  const { A, B, C } = pool.hosts as Record<'A' | 'B' | 'C', (typeof pool.hosts)[string]>;
  // B and C have 32 MiB free each now; A takes guests again.
  await A.client.setMaintenance(false);
  const big = await A.client.startGuest({ name: 'big', memoryBytes: 48 * MiB, config: { workload: 'idle' } });
  const small = await A.client.startGuest({ name: 'small', memoryBytes: 8 * MiB, config: { workload: 'idle' } });
  const before = (await A.client.migrations()).length;

  const dry = await evacuateWithCli(pool, ['A', '--dry-run']);
  expect(dry.status).toBe(1);
  expect(dry.info.dryRun).toBe(true);
  const bigMove = dry.info.plan.find((m) => m.guestId === big.id);
  expect(bigMove).toMatchObject({ code: 'ERR_INSUFFICIENT_CAPACITY' });
  expect(bigMove?.to).toBeUndefined();
  expect(bigMove?.reason).toMatch(/needs 48 MiB; the most free on any target is 32 MiB/);
  expect(dry.info.plan.find((m) => m.guestId === small.id)?.to).toMatch(/^[BC]$/);

  const run = await evacuateWithCli(pool, ['A']);
  expect(run.status).toBe(1);
  expect(run.info).toMatchObject({ state: 'failed', refused: true, hostEmpty: false });
  expect(run.info.guests.find((g) => g.guestId === big.id)).toMatchObject({ outcome: 'unplaced', runsOn: 'A', error: { code: 'ERR_INSUFFICIENT_CAPACITY' } });
  expect(run.info.guests.find((g) => g.guestId === small.id)).toMatchObject({ outcome: 'pending', runsOn: 'A', migrationIds: [] });
  // Nothing moved: no migration left A, both guests still run there, and A takes guests again.
  expect((await A.client.migrations()).length).toBe(before);
  expect((await A.client.guests()).map((g) => [g.name, g.state]).sort()).toEqual([
    ['big', 'running'],
    ['small', 'running'],
  ]);
  expect(await A.client.host()).toMatchObject({ maintenance: false });
  expect((await B.client.guests()).length + (await C.client.guests()).length).toBe(6);
});
