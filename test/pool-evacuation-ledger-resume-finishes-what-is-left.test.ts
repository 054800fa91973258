// A coordinator that dies leaves its ledger, its claim and the host in maintenance. A rerun
// given the ledger takes the same evacuation id, asks the source about every recorded
// migration, watches those still running rather than starting them again, adopts one started
// but never recorded, and moves what is left.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { evacuate } from '../dist/pool/evacuation.js';
import { EvacuationLedger, type LedgerFile } from '../dist/pool/evacuation-ledger.js';
import { FakePool } from './helpers/fake-pool.js';

const dirs: string[] = [];
afterEach(async () => {
  while (dirs.length) await rm(dirs.pop()!, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'livemig-ledger-'));
  dirs.push(dir);
  return dir;
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setTimeout(resolve, 1));
}

test('a rerun picks up a dead coordinator\'s evacuation: nothing starts twice and A ends empty', async () => {
  const dir = await tempDir();
  const ledgerPath = join(dir, 'evacuate-A.json');
  const p = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  const running = p.addGuest('A', { name: 'running', memoryMiB: 256, durationMs: 80 });
  const done = p.addGuest('A', { name: 'done', memoryMiB: 256, durationMs: 1 });
  const failed = p.addGuest('A', { name: 'failed', memoryMiB: 256, durationMs: 1 });
  // Still migrating when the rerun starts, however slow the machine: that is how the rerun finds it.
  const unrecorded = p.addGuest('A', { name: 'unrecorded', memoryMiB: 256, durationMs: 1500 });
  const untouched = p.addGuest('A', { name: 'untouched', memoryMiB: 256 });

  // What the dead coordinator did: claimed A, entered maintenance, started four migrations and
  // recorded three of them before it died.
  const ledger = await EvacuationLedger.open(ledgerPath, 'A', 'evac-1');
  p.setClaim('A', 'evac-1');
  await p.setMaintenance('A', true);
  let failOnce = true;
  p.failWhen = ({ guestName }) => (guestName === 'failed' && failOnce ? ((failOnce = false), 'ERR_NO_PROGRESS') : undefined);
  const record = async (guestId: string, guestName: string, to: string): Promise<string> => {
    const info = await p.startForeign('A', guestId, to);
    await ledger.recordStart({ migrationId: info.migrationId, guestId, guestName, to, attempt: 1, startedAt: info.startedAt });
    return info.migrationId;
  };
  const mRunning = await record(running, 'running', 'B');
  const mDone = await record(done, 'done', 'C');
  const mFailed = await record(failed, 'failed', 'B');
  const mUnrecorded = (await p.startForeign('A', unrecorded, 'C')).migrationId;
  await until(() => p.migrationState(mDone)!.state === 'completed' && p.migrationState(mFailed)!.state === 'failed');

  const report = await evacuate(p, 'A', { ledgerPath, pollIntervalMs: 2 });

  expect(report.evacuationId).toBe('evac-1');
  expect(report.state).toBe('completed');
  expect(report.hostEmpty).toBe(true);
  const startsOf = (id: string): number => p.started.filter((m) => m.guestId === id).length;
  expect([running, done, unrecorded, untouched].map(startsOf)).toEqual([1, 1, 1, 1]);
  expect(startsOf(failed)).toBe(2);
  const byName = new Map(report.guests.map((g) => [g.guestName, g]));
  expect(byName.get('running')).toMatchObject({ outcome: 'completed', runsOn: 'B', migrationIds: [mRunning] });
  expect(byName.get('done')).toMatchObject({ outcome: 'completed', runsOn: 'C', migrationIds: [mDone] });
  expect(byName.get('unrecorded')).toMatchObject({ outcome: 'completed', runsOn: 'C', migrationIds: [mUnrecorded] });
  expect(byName.get('failed')!.migrationIds[0]).toBe(mFailed);
  expect(byName.get('failed')!.migrationIds).toHaveLength(2);
  for (const g of report.guests) expect(p.placesOf(g.guestId)).toEqual([g.runsOn]);
  expect(p.claimOf('A')).toBeUndefined();

  // The ledger names every migration there was, with its guest, target and end.
  const saved = JSON.parse(await readFile(ledgerPath, 'utf8')) as LedgerFile;
  expect(saved.migrations.map((m) => m.migrationId).sort()).toEqual(p.started.map((m) => m.migrationId).sort());
  for (const m of saved.migrations) {
    const started = p.started.find((s) => s.migrationId === m.migrationId)!;
    expect([m.guestId, m.to, m.state]).toEqual([started.guestId, started.to, p.migrationState(m.migrationId)!.state]);
  }
  expect(saved.state).toBe('completed');
  expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
});

test('a recorded migration the source has forgotten is settled by where its guest runs', async () => {
  const dir = await tempDir();
  const ledgerPath = join(dir, 'evacuate-A.json');
  const p = new FakePool([{ name: 'A', capacityMiB: 4096 }, { name: 'B', capacityMiB: 4096 }]);
  const moved = p.addGuest('A', { name: 'moved', memoryMiB: 256, durationMs: 1 });
  const ledger = await EvacuationLedger.open(ledgerPath, 'A', 'evac-2');
  const info = await p.startForeign('A', moved, 'B');
  await ledger.recordStart({ migrationId: info.migrationId, guestId: moved, guestName: 'moved', to: 'B', attempt: 1, startedAt: info.startedAt });
  await until(() => p.migrationState(info.migrationId)!.state === 'completed');
  p.forget(info.migrationId);
  const report = await evacuate(p, 'A', { ledgerPath, pollIntervalMs: 2 });
  expect(report.guests).toEqual([expect.objectContaining({ guestName: 'moved', outcome: 'completed', runsOn: 'B', migrationIds: [info.migrationId] })]);
  expect(p.started).toHaveLength(1);
  expect(report.hostEmpty).toBe(true);
});

test('a ledger of another host, or not a ledger at all, is refused before anything moves', async () => {
  const dir = await tempDir();
  const p = new FakePool([{ name: 'A', capacityMiB: 4096 }, { name: 'B', capacityMiB: 4096 }]);
  p.addGuest('A', { name: 'g', memoryMiB: 256 });
  const other = join(dir, 'evacuate-B.json');
  await (await EvacuationLedger.open(other, 'B')).recordPlan([], 'running');
  await expect(evacuate(p, 'A', { ledgerPath: other })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('records an evacuation of B, not of A') });
  const junk = join(dir, 'junk.json');
  await writeFile(junk, '{"hello": 1}');
  await expect(evacuate(p, 'A', { ledgerPath: junk })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  expect(p.started).toEqual([]);
  expect(p.isInMaintenance('A')).toBe(false);
});
