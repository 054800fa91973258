// What the engine does with a guest it holds (dirty log on, maybe throttled, maybe paused) when
// there is nothing left to send, when cleaning up fails, and when the outcome is not known.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import type { SourceDomain } from '../dist/domain/backend.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import type { Transport } from '../dist/transport/transport.js';

const MiB = 1024 * 1024;
const backends = new Map([['sim', new SimTargetBackend()]]);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function boot(config: SimGuestConfig): Promise<InstanceType<typeof SimulatedGuest>> {
  const guest = await SimulatedGuest.boot(config, 'leaves-whole');
  cleanups.push(() => guest.destroy());
  return guest;
}

/** `guest` seen through a proxy that counts calls and may replace methods. */
function watched(guest: InstanceType<typeof SimulatedGuest>, replace: Record<string, (...args: never[]) => unknown> = {}) {
  const calls: Record<string, number> = {};
  const domain = new Proxy(guest, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof key !== 'string' || typeof value !== 'function') return value;
      return (...args: never[]) => {
        calls[key] = (calls[key] ?? 0) + 1;
        return (replace[key] ?? value).apply(target, args);
      };
    },
  }) as unknown as SourceDomain;
  return { domain, calls };
}

const still: SimGuestConfig = { memoryBytes: 8 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: MiB, seed: 3 };

test('a guest that dirties nothing switches over even when the fixed costs alone exceed the budget, unthrottled', async () => {
  const guest = await boot(still);
  await guest.pause(); // writes nothing from here on
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  // 1 ms is under the pause's fixed costs (the assumed overhead alone is 3 ms): waiting cannot help.
  const report = await migrate(guest, a, { downtimeBudgetMs: 1, autoConverge: 'auto', destroySource: false, collectGarbage: null });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(report.rounds).toHaveLength(2); // the full pass, then the empty stop-and-copy
  expect(report.rounds[1]!.pages).toBe(0);
  expect(report.maxThrottlePercent).toBe(0);
  expect(report.verified).toBe(true);
});

test('a policy that keeps asking for empty rounds is stopped by the stall deadline, and the guest stays on the source', async () => {
  const guest = await boot(still);
  await guest.pause();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  let asked = 0;
  const report = await migrate(guest, a, {
    policy: () => {
      asked++;
      return 'continue';
    },
    stallTimeoutMs: 300,
    autoConverge: 'on',
    collectGarbage: null,
  });
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_NO_PROGRESS');
  expect(report.guestRunningOn).toBe('source');
  expect(asked).toBeGreaterThan(1);
  expect(report.maxThrottlePercent).toBe(0);
  expect((await incoming).outcome).toBe('discarded');
  // The engine resumes only what it paused: this guest was paused before, and stays so.
  expect(guest.paused).toBe(true);
  expect(guest.throttle).toBe(0);
});

test('a failing dirty-log shutdown neither keeps the guest paused nor runs twice; the report says what failed', async () => {
  const guest = await boot({ memoryBytes: 8 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 30e6, hotSetBytes: 2 * MiB, seed: 5 });
  const cancel = new AbortController();
  const { domain, calls } = watched(guest, {
    // Cancelled once paused: the engine must resume the guest here.
    pause: async function (this: typeof guest) {
      await this.pause();
      cancel.abort();
    } as never,
    disableDirtyLog: () => {
      throw new Error('the hypervisor refused to end log-dirty mode');
    },
  });
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(domain, a, { policy: () => 'stop-and-copy', signal: cancel.signal, collectGarbage: null });
  expect(report.outcome).toBe('cancelled');
  expect(report.guestRunningOn).toBe('source');
  expect(guest.paused).toBe(false);
  expect(calls.disableDirtyLog).toBe(1);
  expect(calls.resume).toBe(1);
  expect(report.sourceCleanupError?.message).toMatch(/refused to end log-dirty mode/);
  expect((await incoming).outcome).toBe('discarded');
});

test('a migration that never started its dirty log does not end one', async () => {
  const guest = await boot(still);
  const { domain, calls } = watched(guest);
  const [a, b] = createMemoryTransportPair();
  // The target refuses at once: the guest's backend kind is unknown there.
  const incoming = acceptMigration(b, { backends: new Map() });
  const report = await migrate(domain, a, { collectGarbage: null });
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(calls.enableDirtyLog ?? 0).toBe(0);
  expect(calls.disableDirtyLog ?? 0).toBe(0);
  expect((await incoming).outcome).toBe('discarded');
});

test('an indeterminate outcome keeps the copy paused but lifts its throttle and ends its dirty log', async () => {
  const guest = await boot({ memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 200e6, hotSetBytes: 8 * MiB, seed: 5 });
  const { domain, calls } = watched(guest);
  const [a, b] = createMemoryTransportPair();
  // The link breaks right after "go" is handed over, and nobody can be asked what became of it.
  const send = async (frame: Uint8Array) => {
    const type = decodeFrame(new Uint8Array(frame)).type;
    await a.send(frame);
    if (type === 'go') a.destroy();
  };
  const cut = new Proxy(a, {
    get(target, key) {
      if (key === 'send') return send;
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Transport;
  const incoming = acceptMigration(b, { backends });
  // A 50 MB/s cap against 200 MB/s of writes: every round dirties more than half of what it
  // sends, however the machine's load slows the guest or the sender, so the throttle engages.
  const report = await migrate(domain, cut, { autoConverge: 'on', maxRounds: 6, downtimeBudgetMs: 1, collectGarbage: null, resolveTimeoutMs: 1, maxBandwidthBytesPerSec: 50e6 });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('indeterminate');
  expect(report.maxThrottlePercent).toBeGreaterThan(0);
  expect(guest.paused).toBe(true);
  expect(guest.throttle).toBe(0);
  expect(calls.disableDirtyLog).toBe(1);
});
