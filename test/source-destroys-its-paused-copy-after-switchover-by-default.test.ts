// Once the target confirms the guest runs there, the source destroys its paused copy unless told
// to keep it (`destroySource`, default true; protocol.md §8: "destroy the source copy").
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { type MigrateOptions } from '../dist/precopy/migrate-options.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 2 * MiB, seed: 8 };
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function migrateOnce(options: MigrateOptions) {
  const guest = await SimulatedGuest.boot(config, 'retired-after-switchover');
  cleanups.push(() => guest.destroy());
  const source = watched(guest);
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends, collectGarbage: null });
  const report = await migrate(source.domain, a, { collectGarbage: null, ...options });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  expect(result.outcome).toBe('resumed');
  return { guest, calls: source.calls, report };
}

test('with no destroySource option, the source destroys its copy once the guest runs on the target', async () => {
  const { guest, calls, report } = await migrateOnce({});
  expect(calls.destroy).toBe(1);
  expect(report.sourceCleanupError).toBeUndefined();
  // A destroyed simulated guest refuses every further use.
  await expect(guest.resume()).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
});

test('destroySource: false keeps the paused copy', async () => {
  const { guest, calls } = await migrateOnce({ destroySource: false });
  expect(calls.destroy).toBeUndefined();
  expect(guest.paused).toBe(true);
});
