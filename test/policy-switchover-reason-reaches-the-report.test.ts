// Why the engine switched over, from the policy (or a deadline) to the report, the JSON and the
// lines people read; over the in-memory transport, with no timing in what is asserted.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { type MigrateOptions } from '../dist/precopy/migrate-options.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { engineOptionsFromFlags } from '../dist/cli/options.js';
import { formatReport } from '../dist/cli/render.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 30e6, hotSetBytes: 4 * MiB, seed: 9 };
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function migrateWith(options: MigrateOptions) {
  const guest = await SimulatedGuest.boot(config, 'memory-transport');
  cleanups.push(() => guest.destroy());
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, a, { verify: false, ...options });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  return report;
}

test("a policy's reason is the report's, and a bare 'stop-and-copy' is the policy's own choice", async () => {
  const explained = await migrateWith({ policy: () => ({ decision: 'stop-and-copy', reason: 'bound-reached' }) });
  expect(explained.outcome).toBe('completed');
  expect(explained.switchoverReason).toBe('bound-reached');
  const bare = await migrateWith({ policy: () => 'stop-and-copy' });
  expect(bare.outcome).toBe('completed');
  expect(bare.switchoverReason).toBe('policy');
  expect(JSON.parse(JSON.stringify(bare)).switchoverReason).toBe('policy');
});

test('the round limit holds under the best switchover, and says so', async () => {
  // A budget nothing fits: only the round limit ends pre-copy (the hot set is rewritten within a round).
  const report = await migrateWith({ switchover: 'best', maxRounds: 1, downtimeBudgetMs: 1e-6 });
  expect(report.outcome).toBe('completed');
  expect(report.switchoverReason).toBe('max-rounds');
  expect(report.rounds.filter((r) => !r.stopAndCopy)).toHaveLength(1);
});

test('a deadline that forces the switchover is the reason', async () => {
  const report = await migrateWith({ completionTimeoutMsPerGiB: 1, timeoutAction: 'force-switchover' });
  expect(report.outcome).toBe('completed');
  expect(report.forcedSwitchover?.code).toBe('ERR_COMPLETION_TIMEOUT');
  expect(report.switchoverReason).toBe('forced-by-deadline');
});

test('a migration that never reached the switchover gives no reason', async () => {
  const report = await migrateWith({ policy: () => 'abort' });
  expect(report.outcome).toBe('failed');
  expect(report.switchoverReason).toBeUndefined();
});

test('--switchover picks the mode, best by default; an unknown one is refused', async () => {
  expect(engineOptionsFromFlags({}).switchover).toBeUndefined();
  expect(engineOptionsFromFlags({ switchover: 'first-fit' }).switchover).toBe('first-fit');
  expect(engineOptionsFromFlags({ switchover: 'best' }).switchover).toBe('best');
  expect(() => engineOptionsFromFlags({ switchover: 'soonest' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  const guest = await SimulatedGuest.boot(config, 'memory-transport');
  cleanups.push(() => guest.destroy());
  const [a] = createMemoryTransportPair();
  await expect(migrate(guest, a, { switchover: 'soonest' as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
});

test('the report people read says why', async () => {
  const report = await migrateWith({ policy: () => ({ decision: 'stop-and-copy', reason: 'fits-and-stopped-shrinking' }) });
  expect(formatReport(report)).toMatch(/^ {2}switchover {2}.*stopped shrinking \(fits-and-stopped-shrinking\)$/m);
});
