// Each guest on the guest list carries its host's expectation of its next migration: the pause
// the best switchover is likely to end on and the total time, alone on the link, from the dirty
// rate its backend declares or its last migration measured, and the link the host configured or
// measured; or "unknown" and why.
import { afterEach, expect, test } from 'vitest';
import { ControlClient } from '../dist/agent/control-client.js';
import { HostAgent } from '../dist/agent/host-agent.js';
import type { HostGuest } from '../dist/agent/guest-registry.js';
import { declaredDirtying, dirtiedAfter, estimatePause, measuredDirtying } from '../dist/agent/pause-estimate.js';
import { PauseEstimator } from '../dist/agent/pause-estimator.js';
import type { MigrationReport, RoundReport } from '../dist/precopy/report.js';

const MiB = 2 ** 20;
const hosts: HostAgent[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
});

const link = { bytesPerSec: 100e6, source: 'configured' as const };

test('a guest that dirties faster than the link drains is expected to pause longer, and over budget if its hot set outruns the link', () => {
  const memoryBytes = 64 * MiB;
  const idle = estimatePause({ memoryBytes, dirtying: declaredDirtying('sim', { workload: 'idle' }, memoryBytes, 1), link, overheadMs: 3 });
  const busy = estimatePause({ memoryBytes, dirtying: declaredDirtying('sim', { workload: 'hotset', dirtyRateBytesPerSec: 80e6, hotSetBytes: 16 * MiB }, memoryBytes, 1), link, overheadMs: 3 });
  const hopeless = estimatePause({ memoryBytes, downtimeBudgetMs: 50, dirtying: declaredDirtying('sim', { workload: 'uniform', dirtyRateBytesPerSec: 400e6 }, memoryBytes, 1), link, overheadMs: 3 });
  expect(idle).toMatchObject({ state: 'known', fitsBudget: true, dirtySource: 'declared', linkSource: 'configured' });
  expect(idle.bestPauseMs!).toBeLessThan(10);
  // Round 0 alone sends the whole memory: about 0.67 s at 100 MB/s.
  expect(idle.totalMs!).toBeGreaterThan(600);
  expect(busy.bestPauseMs!).toBeGreaterThan(5 * idle.bestPauseMs!);
  expect(busy.totalMs!).toBeGreaterThan(idle.totalMs!);
  expect(hopeless).toMatchObject({ state: 'known', fitsBudget: false, downtimeBudgetMs: 50 });
  expect(hopeless.bestPauseMs!).toBeGreaterThan(50);
});

test('random writes over a set find it all dirty only in the long run; sequential ones at the rate until they wrap', () => {
  const set = 1024 * 4096;
  const random = { dirtyRateBytesPerSec: set, workingSetBytes: set, source: 'declared' as const };
  expect(dirtiedAfter(random, 1000) / set).toBeCloseTo(1 - Math.exp(-1), 2);
  expect(dirtiedAfter({ ...random, sequential: true }, 500)).toBe(set / 2);
  expect(dirtiedAfter({ ...random, sequential: true }, 5000)).toBe(set);
  expect(dirtiedAfter({ ...random, workingSetBytes: 0 }, 1000)).toBe(0);
});

function round(r: Partial<RoundReport>): RoundReport {
  return { round: 0, stopAndCopy: false, pages: 0, zeroPages: 0, bytesRaw: 0, bytesWire: 0, durationMs: 0, dirtyRateBytesPerSec: 0, bandwidthBytesPerSec: 0, sendMs: 0, ackMs: 0, gcMs: 0, targetGcMs: 0, throttlePercent: 0, ...r };
}

test('a migration that ran teaches the host the guest\'s dirtying and the link, which win over the declared and the configured', () => {
  const report = {
    memoryBytes: 64 * MiB,
    rounds: [
      round({ round: 0, pages: 16384, bytesRaw: 64 * MiB, durationMs: 1000, dirtyRateBytesPerSec: 8e6 }),
      round({ round: 1, pages: 2000, bytesRaw: 2000 * 4096, durationMs: 100, dirtyRateBytesPerSec: 30e6 }),
      round({ round: 2, pages: 900, bytesRaw: 900 * 4096, durationMs: 40, dirtyRateBytesPerSec: 90e6, throttlePercent: 20 }),
      round({ round: 3, stopAndCopy: true, pages: 700, bytesRaw: 700 * 4096, durationMs: 30 }),
    ],
  } as MigrationReport;
  // The throttled round understates the guest; the fastest free round and the largest dirty set count.
  expect(measuredDirtying(report)).toEqual({ dirtyRateBytesPerSec: 30e6, workingSetBytes: 2000 * 4096, source: 'measured' });
  const estimator = new PauseEstimator({ configuredLinkBytesPerSec: 1e9, overheadMs: () => 3 });
  const guest = { kind: 'sim', config: { workload: 'idle' }, memoryBytes: 64 * MiB, vcpus: 1 } as unknown as HostGuest;
  expect(estimator.estimate(guest)).toMatchObject({ dirtySource: 'declared', linkSource: 'configured', linkBytesPerSec: 1e9 });
  estimator.observe(guest, report);
  const learnt = estimator.estimate(guest);
  expect(learnt).toMatchObject({ dirtySource: 'measured', dirtyRateBytesPerSec: 30e6, linkSource: 'measured' });
  // (64 MiB + 2000 + 900 pages) over 1.14 s of pre-copy rounds.
  expect(learnt.linkBytesPerSec).toBe(Math.round(((64 * MiB + 2900 * 4096) * 1000) / 1140));
});

test('over the control API: unknown before the host knows its link, then known once a migration from it has measured one', async () => {
  const a = await HostAgent.start({ name: 'A', capacityBytes: 64 * MiB });
  const b = await HostAgent.start({ name: 'B', capacityBytes: 64 * MiB });
  hosts.push(a, b);
  const client = new ControlClient(a.url);
  const calm = await client.startGuest({ name: 'calm', memoryBytes: 8 * MiB, config: { workload: 'idle' } });
  await client.startGuest({ name: 'busy', memoryBytes: 8 * MiB, config: { workload: 'hotset', dirtyRateBytesPerSec: 50e6, hotSetBytes: 2 * MiB } });
  const before = await client.guests();
  for (const g of before) {
    expect(g.pauseEstimate).toMatchObject({ state: 'unknown', dirtySource: 'declared', downtimeBudgetMs: 300 });
    expect(g.pauseEstimate!.reason).toMatch(/no link figure/);
  }
  const moved = a.migrateGuest(calm.id, { to: b.url });
  expect(await a.settled(moved.migrationId)).toMatchObject({ state: 'completed' });
  const [busy] = await client.guests();
  expect(busy!.name).toBe('busy');
  expect(busy!.pauseEstimate).toMatchObject({ state: 'known', dirtySource: 'declared', linkSource: 'measured', dirtyRateBytesPerSec: 50e6 });
  expect(busy!.pauseEstimate!.bestPauseMs!).toBeGreaterThan(0);
  expect(busy!.pauseEstimate!.totalMs!).toBeGreaterThan(busy!.pauseEstimate!.bestPauseMs!);
});

test('a configured bandwidth gives estimates before any migration', async () => {
  const a = await HostAgent.start({ name: 'A', capacityBytes: 64 * MiB, linkBytesPerSec: 200e6 });
  hosts.push(a);
  await a.startGuest({ name: 'calm', memoryBytes: 8 * MiB, config: { workload: 'idle' } });
  expect(a.guests()[0]!.pauseEstimate).toMatchObject({ state: 'known', linkSource: 'configured', linkBytesPerSec: 200e6, fitsBudget: true });
});

test('the link is taken from migrations that ran alone when there are any: a shared link measures a part of it', () => {
  const MB = 1e6;
  const ran = (startMs: number, ms: number, bytesPerSec: number): MigrationReport =>
    ({ memoryBytes: 64 * MiB, startedAt: new Date(startMs).toISOString(), totalMs: ms, rounds: [round({ round: 0, pages: 1, bytesRaw: (bytesPerSec * ms) / 1000, durationMs: ms })] }) as MigrationReport;
  const estimator = new PauseEstimator({ overheadMs: () => 3 });
  const guest = {} as HostGuest;
  estimator.observe(guest, ran(0, 1000, 50 * MB), 1); // another migration still ran as it ended
  estimator.observe(guest, ran(500, 1000, 60 * MB), 0); // overlapped the one before
  expect(estimator.link()).toMatchObject({ bytesPerSec: 55 * MB, source: 'measured' });
  estimator.observe(guest, ran(2000, 1000, 200 * MB), 0);
  expect(estimator.link()!.bytesPerSec).toBe(200 * MB);
});
