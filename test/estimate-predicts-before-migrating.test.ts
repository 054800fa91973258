// The pre-flight estimate: what it reads off a running guest, and what it predicts.
import { spawnSync } from 'node:child_process';
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { DEFAULT_SWITCHOVER_OVERHEAD_MS } from '../dist/precopy/switchover-calibration.js';
import { dirtyCurve, estimateMigration } from '../dist/precopy/preflight.js';
import { BIN } from './helpers/agent-process.js';

const MiB = 1024 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('an idle guest: zero pages found, converges after the full pass', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 64 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: MiB, seed: 2 });
  cleanups.push(() => guest.destroy());
  const e = await estimateMigration(guest, { bandwidthBytesPerSec: 1e9, sampleMs: 300 });
  const pages = (64 * MiB) / 4096;
  expect(e.zeroPages / pages).toBeGreaterThan(0.35);
  expect(e.zeroPages / pages).toBeLessThan(0.45);
  expect(e.dataBytes).toBe((pages - e.zeroPages) * 4096);
  expect(e.converges).toBe(true);
  expect(e.rounds[0]!.bytes).toBe(e.dataBytes);
  expect(e.rounds).toHaveLength(2);
  expect(e.predictedDowntimeMs).toBeLessThan(e.downtimeBudgetMs);
  // The idle workload writes a page ten times a second, so the last round holds a page or two at
  // most: the engine's assumed overhead, half the 1 ms round trip, and the 1 ms a round costs.
  expect(e.rounds[1]!.bytes).toBeLessThanOrEqual(4 * 4096);
  expect(e.predictedDowntimeMs).toBeGreaterThanOrEqual(DEFAULT_SWITCHOVER_OVERHEAD_MS + 0.5);
  expect(e.predictedDowntimeMs).toBeLessThan(DEFAULT_SWITCHOVER_OVERHEAD_MS + 0.5 + 1.1);
  // Paused, the guest dirties nothing: the pause is exactly the overhead and half the round trip,
  // the engine's assumed one or the one a caller has learnt.
  await guest.pause();
  const still = await estimateMigration(guest, { bandwidthBytesPerSec: 1e9, sampleMs: 100 });
  expect(still.rounds[1]!.bytes).toBe(0);
  expect(still.predictedDowntimeMs).toBeCloseTo(DEFAULT_SWITCHOVER_OVERHEAD_MS + 0.5, 5);
  const learnt = await estimateMigration(guest, { bandwidthBytesPerSec: 1e9, sampleMs: 100, switchoverOverheadMs: 1.5 });
  expect(learnt.predictedDowntimeMs).toBeCloseTo(2, 5);
  await guest.resume();
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    await expect(estimateMigration(guest, { bandwidthBytesPerSec: 1e9, sampleMs: 100, switchoverOverheadMs: bad })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  }
  expect(guest.paused).toBe(false);
});

test('a guest that outruns the link: does not converge, and says what to do', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 200e6, hotSetBytes: 32 * MiB, seed: 2 });
  cleanups.push(() => guest.destroy());
  const e = await estimateMigration(guest, { bandwidthBytesPerSec: 20e6, sampleMs: 400, downtimeBudgetMs: 100, maxRounds: 10 });
  expect(e.converges).toBe(false);
  expect(e.rounds).toHaveLength(11);
  expect(e.workingSetBytes).toBeLessThanOrEqual(32 * MiB + 16 * 4096);
  expect(e.dirtyRateBytesPerSec).toBeGreaterThan(20e6);
  expect(e.predictedDowntimeMs).toBeGreaterThan(100);
  expect(e.advice).toMatch(/auto-converge/);
});

test('the dirty curve interpolates within the sample and extrapolates its last slope, up to all memory', () => {
  const f = dirtyCurve([[0, 0], [100, 50], [200, 80], [300, 90]], 1000);
  expect(f(50)).toBeCloseTo(25);
  expect(f(150)).toBeCloseTo(65);
  expect(f(300)).toBeCloseTo(90);
  expect(f(400)).toBeCloseTo(100);
  expect(f(1e9)).toBe(1000);
  const flat = dirtyCurve([[0, 0], [100, 40], [200, 40]], 1000);
  expect(flat(5000)).toBe(40);
});

test('livemig estimate --json, as a user runs it', () => {
  const r = spawnSync(process.execPath, [BIN, 'estimate', '--memory', '64MiB', '--workload', 'uniform', '--dirty-rate', '10MB/s', '--sample', '200ms', '--warmup', '0ms', '--json'], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status).toBe(0);
  const e = JSON.parse(r.stdout);
  expect(e.guest.workload).toBe('uniform');
  expect(e.converges).toBe(true);
  expect(e.bandwidthBytesPerSec).toBe(1.25e9);
});
