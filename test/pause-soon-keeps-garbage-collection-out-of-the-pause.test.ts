import { unpack } from 'msgpackr';
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { receiverTransition, sourceTransition } from '../dist/protocol/receiver-state.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
const backends = new Map([['sim', new SimTargetBackend()]]);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function boot(config: SimGuestConfig): Promise<InstanceType<typeof SimulatedGuest>> {
  const guest = await SimulatedGuest.boot(config, 'pause-soon');
  cleanups.push(() => guest.destroy());
  return guest;
}

/** Busy for `ms`, as a collection is. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

test('"pause-soon" is sent as an optional record, so a target from before it skips it', () => {
  const frame = encodeRecord({ type: 'pause-soon' });
  const headerLength = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24);
  expect(unpack(Buffer.from(frame.subarray(4, 4 + headerLength)))).toEqual({ type: 'pause-soon', optional: true });
  expect(decodeFrame(frame)).toEqual({ type: 'pause-soon' });
  // A peer that does not know a record marked optional returns it as ignored: shown with another name.
  const unknown = Buffer.from(frame);
  const at = unknown.indexOf('pause-soon');
  unknown.write('pause-sooo', at);
  expect(decodeFrame(unknown)).toEqual({ type: 'ignored', recordType: 'pause-sooo' });
});

test('"collected" is optional too, and its duration must be a finite number of milliseconds, at least 0', () => {
  const frame = encodeRecord({ type: 'collected', ms: 4.5 });
  const headerLength = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24);
  expect(unpack(Buffer.from(frame.subarray(4, 4 + headerLength)))).toEqual({ type: 'collected', ms: 4.5, optional: true });
  expect(decodeFrame(frame)).toEqual({ type: 'collected', ms: 4.5 });
  for (const ms of [-1, Number.NaN, Number.POSITIVE_INFINITY, '3']) {
    expect(() => encodeRecord({ type: 'collected', ms: ms as number })).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
  }
});

test('a target accepts "pause-soon" while receiving pages, and nowhere else', () => {
  expect(receiverTransition('receiving', 'pause-soon')).toBe('receiving');
  expect(() => receiverTransition('state-received', 'pause-soon')).toThrow(expect.objectContaining({ code: 'ERR_UNEXPECTED_RECORD' }));
  expect(() => receiverTransition('prepared', 'pause-soon')).toThrow(expect.objectContaining({ code: 'ERR_UNEXPECTED_RECORD' }));
});

test('a source accepts "collected" while streaming, not once the pause began', () => {
  expect(sourceTransition('streaming', 'collected')).toBe('streaming');
  expect(() => sourceTransition('complete-sent', 'collected')).toThrow(expect.objectContaining({ code: 'ERR_UNEXPECTED_RECORD' }));
});

test('both sides collect garbage before the guest pauses, not during the pause, and the guest matches its oracle', async () => {
  const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 4 * MiB, seed: 11 };
  const guest = await boot(config);
  const collections: Array<{ side: string; sourcePaused: boolean }> = [];
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, {
    backends,
    collectGarbage: () => {
      collections.push({ side: 'target', sourcePaused: guest.paused });
      busy(5);
    },
  });
  // First-fit: the round that fits is the last, so the hint before it is certain. Under the best
  // switchover the hint is a guess at whether the next decision stops (see the policy's wouldStop).
  // lz4, as when this was written: with none (and so auto, in one process) the target can ack
  // before the source has noted when the round was handed over, and ackMs undercounts.
  const report = await migrate(guest, a, {
    destroySource: false,
    codec: 'lz4',
    switchover: 'first-fit',
    collectGarbage: () => {
      collections.push({ side: 'source', sourcePaused: guest.paused });
      busy(5);
    },
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  const atPause = await expectGuestMatchesOracle(guest, config);
  await expectGuestMatchesOracle(result.domain, config, atPause);
  // The round before the pause was announced: each side collected, with the guest still running.
  expect(collections.filter((c) => c.side === 'target').length).toBeGreaterThanOrEqual(1);
  expect(collections.filter((c) => c.side === 'source').length).toBeGreaterThanOrEqual(1);
  expect(collections.every((c) => !c.sourcePaused)).toBe(true);
  const lastPrecopy = report.rounds.filter((r) => !r.stopAndCopy).at(-1)!;
  expect(lastPrecopy.gcMs).toBeGreaterThanOrEqual(5);
  // The target said how long it collected; its acknowledgement waited that long.
  expect(lastPrecopy.targetGcMs).toBeGreaterThanOrEqual(5);
  expect(lastPrecopy.ackMs).toBeGreaterThanOrEqual(lastPrecopy.targetGcMs);
  expect(report.rounds.find((r) => r.stopAndCopy)!.gcMs).toBe(0);
});

test('the hint goes out only when the pause is likely: with an unreachable budget, only before the last allowed round ends', async () => {
  const config: SimGuestConfig = { memoryBytes: 8 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 50e6, hotSetBytes: 0, seed: 3 };
  const guest = await boot(config);
  let targetCollections = 0;
  let sourceCollections = 0;
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends, collectGarbage: () => void targetCollections++ });
  const report = await migrate(guest, a, {
    destroySource: false,
    // No pause fits 1 µs: the switchover comes from the round limit alone.
    downtimeBudgetMs: 0.001,
    maxRounds: 4,
    // Rounds of about 0.1 s, so the guest has written pages in each before the engine guesses
    // whether the pause follows it: a round the guest happened not to write in would look like
    // one with nothing left dirty, a pause as likely as can be, and get the hint too.
    maxBandwidthBytesPerSec: 50e6,
    autoConverge: 'off',
    collectGarbage: () => void sourceCollections++,
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(report.rounds.filter((r) => !r.stopAndCopy)).toHaveLength(4);
  expect(targetCollections).toBe(1);
  expect(sourceCollections).toBe(1);
});

test('by default the collector of a Node run with --expose-gc is used; null turns it off', async () => {
  const config: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: 0, seed: 4 };
  const g = globalThis as { gc?: unknown };
  const saved = g.gc;
  let calls = 0;
  g.gc = () => void calls++;
  try {
    for (const collectGarbage of [undefined, null]) {
      calls = 0;
      const guest = await boot(config);
      const [a, b] = createMemoryTransportPair();
      const incoming = acceptMigration(b, { backends, collectGarbage });
      // First-fit: exactly one round is announced (see above).
      const report = await migrate(guest, a, { destroySource: false, collectGarbage, switchover: 'first-fit' });
      const result = await incoming;
      cleanups.push(async () => result.domain?.destroy());
      expect(report.outcome).toBe('completed');
      // Both ends run in this process: the default calls the exposed collector once on each side.
      expect(calls).toBe(collectGarbage === null ? 0 : 2);
    }
  } finally {
    g.gc = saved;
  }
});
