// totalMs ends when the guest runs on the target and the source released it; the check of the
// paused copy comes after, timed on its own (verifyMs), and the copy is destroyed only once the
// check is done. The check here is held up on purpose, so that a totalMs counting it would end
// after the verify phase began, whatever the machine's speed.
import { afterEach, expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const HOLD_MS = 300;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 5e6, hotSetBytes: 4 * MiB, seed: 4 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('totalMs ends before the verify phase begins; the held-up check is in verifyMs, and the copy is destroyed after it', async () => {
  const guest = await SimulatedGuest.boot(config, 'total-time');
  cleanups.push(() => guest.destroy());
  let verifyAtMs: number | undefined;
  let held = false;
  const events: string[] = [];
  // Memory reachable only through readPages, so the check reads it here, where it can be held.
  const { domain } = watched<SourceDomain>(guest, {
    memory: () => ({ kind: 'none' }),
    readPages: (pfns: Uint32Array, dst: Uint8Array) => {
      if (verifyAtMs === undefined || held) return guest.readPages(pfns, dst);
      held = true;
      events.push('check held');
      return new Promise<void>((resolve) => setTimeout(resolve, HOLD_MS)).then(() => guest.readPages(pfns, dst));
    },
    destroy: () => {
      events.push('destroyed');
      return guest.destroy();
    },
  } as never);
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends: new Map([['sim', new SimTargetBackend()]]) });
  const report = await migrate(domain, a, {
    onProgress: (p) => {
      if (p.phase === 'verify') verifyAtMs ??= p.elapsedMs;
    },
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report).toMatchObject({ outcome: 'completed', guestRunningOn: 'target', verified: true });
  expect(verifyAtMs).toBeDefined();
  expect(held).toBe(true);
  // Structural: the report's clock stopped before the verify phase started.
  expect(report.totalMs).toBeLessThanOrEqual(verifyAtMs!);
  // The hold is inside the check's own time (a lower bound only, safe on a loaded machine).
  expect(report.verifyMs).toBeGreaterThanOrEqual(HOLD_MS - 20);
  expect(events).toEqual(['check held', 'destroyed']);
});
