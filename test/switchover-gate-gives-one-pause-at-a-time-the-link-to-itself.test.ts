// The switchover gate a host shares across its outgoing migrations: while one guest is paused the
// others hand no page batch to their links, only one guest is paused at a time, the gate is given
// back on every way a migration ends, a wait on it ends with a cancel, a dead link or a deadline
// however long another holds it, and a migration without a gate is as it was. Engines and targets
// back to back over the in-memory transport; real clocks, and no assertion on how long anything took.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import type { SourceDomain } from '../dist/domain/backend.js';
import { migrate } from '../dist/precopy/migration.js';
import type { MigrateOptions } from '../dist/precopy/migrate-options.js';
import type { MigrationReport } from '../dist/precopy/report.js';
import { GateSeat, SwitchoverGate } from '../dist/precopy/switchover-gate.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import type { Transport } from '../dist/transport/transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { watched, WatchedSimBackend } from './helpers/watched-domain.js';

const MiB = 2 ** 20;
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function boot(config: Partial<SimGuestConfig>, name: string): Promise<SimulatedGuest> {
  const guest = await SimulatedGuest.boot({ vcpus: 1, workload: 'idle', hotSetBytes: 2 * MiB, seed: 3, ...config }, name);
  cleanups.push(() => guest.destroy());
  return guest;
}

/** A source guest whose pause is stretched by `extraMs` after the real one, and when it began. */
function slowPause(guest: SimulatedGuest, extraMs: number): { domain: SourceDomain; pausedAt: number[] } {
  const pausedAt: number[] = [];
  const real = guest.pause.bind(guest);
  const { domain } = watched<SourceDomain>(guest, {
    pause: async () => {
      pausedAt.push(performance.now());
      await real();
      await sleep(extraMs);
    },
  });
  return { domain, pausedAt };
}

/** A link to a fresh target, with the time each page batch was handed to it. */
function linkToTarget(targetBackends = backends as ReadonlyMap<string, unknown>, cutAfterGo = false, onFrame?: (type: string) => void): {
  source: Transport;
  target: Transport;
  pageSends: number[];
  incoming: ReturnType<typeof acceptMigration>;
} {
  const [a, b] = createMemoryTransportPair();
  const pageSends: number[] = [];
  const source = tamperingTransport(a, (frame) => {
    const type = decodeFrame(frame).type;
    if (type === 'pages') pageSends.push(performance.now());
    onFrame?.(type);
    // "go" handed over, then the link cut before any answer can come back.
    if (type === 'go' && cutAfterGo) queueMicrotask(() => a.destroy());
    return frame;
  });
  const incoming = acceptMigration(b, { backends: targetBackends as never });
  void incoming.then((r) => cleanups.push(async () => r.domain?.destroy()));
  return { source, target: b, pageSends, incoming };
}

/** The gate, and who took the pause, in order. */
function spiedGate(): { gate: SwitchoverGate; holders: string[] } {
  const gate = new SwitchoverGate();
  const holders: string[] = [];
  const tryHold = gate.tryHold.bind(gate);
  gate.tryHold = (id) => {
    const was = gate.holder;
    const held = tryHold(id);
    if (held && was !== id) holders.push(id);
    return held;
  };
  return { gate, holders };
}

const heldMs = (report: MigrationReport): number => report.rounds.reduce((sum, r) => sum + (r.heldMs ?? 0), 0);

test('a seat waits while another migration holds the pause, counts that once for all its batches, and gives up with its reason', async () => {
  const gate = new SwitchoverGate();
  expect(gate.tryHold('x')).toBe(true);
  expect(gate.tryHold('y')).toBe(false);
  expect(gate.tryHold('x')).toBe(true);
  let stop: Error | undefined;
  const seat = new GateSeat(gate, 'y', () => stop);
  expect(seat.otherPaused).toBe(true);
  const started = performance.now();
  let passed = 0;
  const takes = [seat.take(), seat.take()].map((p) => p.then(() => passed++));
  await sleep(100);
  expect(passed).toBe(0);
  gate.release('y'); // not the holder: nothing changes
  expect(gate.holder).toBe('x');
  gate.release('x');
  await Promise.all(takes);
  const elapsed = performance.now() - started;
  expect(passed).toBe(2);
  // Two batches waited the same 100 ms or more: counted once.
  expect(seat.heldMs).toBeGreaterThanOrEqual(99);
  expect(seat.heldMs).toBeLessThanOrEqual(elapsed);

  expect(gate.tryHold('x')).toBe(true);
  const waiting = seat.take();
  await sleep(50);
  stop = new Error('cancelled');
  seat.interrupt();
  await expect(waiting).rejects.toBe(stop);
  expect(gate.holder).toBe('x');
});

test('two migrations sharing a gate never pause at once, though both were ready to at the same moment', async () => {
  const { gate, holders } = spiedGate();
  const runs = await Promise.all(
    ['one', 'two'].map(async (name) => {
      const guest = await boot({ memoryBytes: 16 * MiB }, name);
      const { domain, pausedAt } = slowPause(guest, 300);
      const link = linkToTarget();
      const report = await migrate(domain, link.source, { switchoverGate: gate, migrationId: name });
      return { report, pausedAt };
    }),
  );
  const pauses = runs.map(({ report, pausedAt }) => {
    expect(report.outcome).toBe('completed');
    expect(pausedAt).toHaveLength(1);
    return { from: pausedAt[0]!, to: pausedAt[0]! + report.downtimeUpperBoundMs! };
  });
  pauses.sort((a, b) => a.from - b.from);
  expect(pauses[1]!.from).toBeGreaterThanOrEqual(pauses[0]!.to);
  expect(holders.sort()).toEqual(['one', 'two']);
  expect(gate.holder).toBeUndefined();
});

test('a migration ready to stop while another is paused waits for the end of that pause, and iterates once more', async () => {
  const gate = new SwitchoverGate();
  const guest = await boot({ memoryBytes: 8 * MiB }, 'ready');
  const { domain, pausedAt } = slowPause(guest, 0);
  let releasedAt = Number.POSITIVE_INFINITY;
  let held = false;
  // Another guest pauses for 400 ms from the moment this one's first pass is sent.
  const link = linkToTarget(backends, false, (type) => {
    if (type !== 'round-end' || held) return;
    held = gate.tryHold('other');
    setTimeout(() => {
      releasedAt = performance.now();
      gate.release('other');
    }, 400);
  });
  // A policy that stops at its first chance: the decision after the first pass meets the other pause.
  const report = await migrate(domain, link.source, { switchoverGate: gate, policy: () => 'stop-and-copy' });
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(pausedAt[0]).toBeGreaterThanOrEqual(releasedAt);
  // The first pass, and one more round for what the guest dirtied while it waited.
  expect(report.rounds.filter((r) => !r.stopAndCopy).length).toBe(2);
});

test('while one guest is paused, the migration beside it hands no page batch to its link, and goes on after', async () => {
  const { gate } = spiedGate();
  // A big guest whose first pass the cap stretches over seconds, and a small one that pauses meanwhile.
  const big = await boot({ memoryBytes: 64 * MiB, workload: 'hotset', dirtyRateBytesPerSec: 2e6, hotSetBytes: 2 * MiB }, 'big');
  const bigLink = linkToTarget();
  const bigDone = migrate(big, bigLink.source, { switchoverGate: gate, codec: 'none', maxBandwidthBytesPerSec: 24e6, migrationId: 'big' });
  while (bigLink.pageSends.length < 4) await sleep(10);
  const small = await boot({ memoryBytes: 4 * MiB }, 'small');
  const { domain, pausedAt } = slowPause(small, 400);
  const smallReport = await migrate(domain, linkToTarget().source, { switchoverGate: gate, migrationId: 'small' });
  const bigReport = await bigDone;
  expect(smallReport.outcome).toBe('completed');
  expect(bigReport.outcome).toBe('completed');
  const from = pausedAt[0]!;
  const to = from + smallReport.downtimeUpperBoundMs!;
  // Batches already past the gate when the pause began may still be handed over in that moment.
  const during = bigLink.pageSends.filter((t) => t > from + 20 && t < to);
  expect(during).toEqual([]);
  expect(bigLink.pageSends.filter((t) => t < from).length).toBeGreaterThan(0);
  expect(bigLink.pageSends.filter((t) => t > to).length).toBeGreaterThan(0);
  expect(heldMs(bigReport)).toBeGreaterThan(0);
  expect(heldMs(smallReport)).toBe(0);
});

/** Runs a migration whose guest, once paused, meets `duringPause`; returns its report and whether it held the gate. */
async function pauseAndThen(
  duringPause: (ctx: { controller: AbortController; link: ReturnType<typeof linkToTarget> }) => void,
  targetBackends?: ReadonlyMap<string, unknown>,
  options: MigrateOptions = {},
  cutAfterGo = false,
) {
  const { gate, holders } = spiedGate();
  const guest = await boot({ memoryBytes: 8 * MiB }, 'paths');
  const controller = new AbortController();
  const link = linkToTarget(targetBackends, cutAfterGo);
  const real = guest.pause.bind(guest);
  const { domain } = watched<SourceDomain>(guest, {
    pause: async () => {
      await real();
      duringPause({ controller, link });
    },
  });
  const report = await migrate(domain, link.source, { switchoverGate: gate, signal: controller.signal, ...options });
  return { report, gate, holders, guest };
}

test('the gate is given back on every way a migration ends: completed, undone, cancelled, link cut before or after "go"', async () => {
  const completed = await pauseAndThen(() => undefined);
  expect(completed.report.outcome).toBe('completed');

  // The target cannot resume after "go": the paused copy here runs again.
  const noResume = new WatchedSimBackend({ resume: () => Promise.reject(new Error('cannot resume here')) });
  const undone = await pauseAndThen(() => undefined, new Map([['sim', noResume]]));
  expect(undone.report).toMatchObject({ outcome: 'failed', guestRunningOn: 'source' });

  const cancelled = await pauseAndThen(({ controller }) => controller.abort(new Error('operator')));
  expect(cancelled.report).toMatchObject({ outcome: 'cancelled', guestRunningOn: 'source' });
  expect(cancelled.report.error?.code).toBe('ERR_CANCELLED');

  const cutBeforeGo = await pauseAndThen(({ link }) => link.target.destroy());
  expect(cutBeforeGo.report).toMatchObject({ outcome: 'failed', guestRunningOn: 'source' });

  // Cut once "go" is on its way; with no way to ask the target, the outcome is indeterminate.
  const cutAfterGo = await pauseAndThen(() => undefined, backends, { resolveTimeoutMs: 200 }, true);
  expect(cutAfterGo.report.outcome).toBe('indeterminate');

  for (const run of [completed, undone, cancelled, cutBeforeGo, cutAfterGo]) {
    expect(run.holders).toHaveLength(1);
    expect(run.gate.holder).toBeUndefined();
  }
  expect(undone.guest.paused).toBe(false);
  expect(cancelled.guest.paused).toBe(false);
  expect(cutBeforeGo.guest.paused).toBe(false);
});

/** A migration that starts while another holds the pause for good; `end` is what should free it. */
async function heldForGood(end: (ctx: { controller: AbortController; target: Transport }) => void, options: MigrateOptions = {}) {
  const gate = new SwitchoverGate();
  gate.tryHold('stuck');
  const guest = await boot({ memoryBytes: 16 * MiB }, 'held');
  const controller = new AbortController();
  const link = linkToTarget();
  const done = migrate(guest, link.source, { switchoverGate: gate, signal: controller.signal, ...options });
  // Held at its first batch: nothing goes out.
  await sleep(300);
  expect(link.pageSends).toEqual([]);
  end({ controller, target: link.target });
  const report = await done;
  expect(report.guestRunningOn).toBe('source');
  expect(guest.paused).toBe(false);
  expect(gate.holder).toBe('stuck');
  return report;
}

test('a migration held back by another pause ends when cancelled, when its link dies, or at its deadline', async () => {
  const cancelled = await heldForGood(({ controller }) => controller.abort(new Error('operator')));
  expect(cancelled).toMatchObject({ outcome: 'cancelled', error: { code: 'ERR_CANCELLED' } });

  const cut = await heldForGood(({ target }) => target.destroy());
  expect(cut.outcome).toBe('failed');
  expect(cut.error?.code).toMatch(/^ERR_(CONNECTION_CLOSED|PEER_ABORTED)$/);

  const stalled = await heldForGood(() => undefined, { stallTimeoutMs: 600 });
  expect(stalled).toMatchObject({ outcome: 'failed', error: { code: 'ERR_NO_PROGRESS' } });
});

test('a migration without a gate does not wait on one, and its rounds say nothing of it', async () => {
  const gate = new SwitchoverGate();
  gate.tryHold('someone else');
  const guest = await boot({ memoryBytes: 8 * MiB }, 'alone');
  const report = await migrate(guest, linkToTarget().source, {});
  expect(report.outcome).toBe('completed');
  for (const round of report.rounds) expect(round).not.toHaveProperty('heldMs');
});
