// A guest that dirties memory faster than the (capped) link sends it, with auto-converge off,
// never converges: the completion deadline (per GiB of guest memory) ends the migration with
// ERR_COMPLETION_TIMEOUT, and the guest runs on at the source, unthrottled.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
// 40 MB/s of writes spread over all of memory, against a link capped at 16 MB/s.
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 40e6, hotSetBytes: 16 * MiB, seed: 6 };
/** The deadline for this guest: 1.5 s. */
const DEADLINE_MS = 1500;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('a guest that outruns the link is given up at the completion deadline with ERR_COMPLETION_TIMEOUT; the guest stays on the source', async () => {
  const guest = await SimulatedGuest.boot(config, 'outruns-the-link');
  cleanups.push(() => guest.destroy());
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends: new Map([['sim', new SimTargetBackend()]]), collectGarbage: null });
  const report = await migrate(guest, a, {
    // Uncompressed, so that the cap holds back the pages themselves.
    codec: 'none',
    maxBandwidthBytesPerSec: 16e6,
    autoConverge: 'off',
    completionTimeoutMsPerGiB: (DEADLINE_MS * GiB) / config.memoryBytes,
    // Far beyond the completion deadline: only that one can end this migration in time.
    stallTimeoutMs: 20 * DEADLINE_MS,
    collectGarbage: null,
  });
  const result = await incoming;

  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_COMPLETION_TIMEOUT');
  expect(report.guestRunningOn).toBe('source');
  expect(report.maxThrottlePercent).toBe(0);
  // The first pass went out whole: the deadline ended rounds that could not catch up.
  expect(report.rounds.length).toBeGreaterThanOrEqual(1);
  expect(report.rounds.every((r) => !r.stopAndCopy)).toBe(true);
  expect(result.outcome).toBe('discarded');
  expect(result.error?.message).toContain('ERR_COMPLETION_TIMEOUT');

  expect(guest.paused).toBe(false);
  expect(guest.throttle).toBe(0);
  await guest.pause();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, guest.vcpuStates().map((s) => s.steps)).digest);
  await guest.resume();
});
