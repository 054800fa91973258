// migrate() calls onProgress at each phase and round change and, between them, every
// `progressIntervalMs`. Counted against the migration's own elapsed time, the calls between
// changes must be at least one and at most one per interval (plus slack for the first and last),
// whatever the machine's speed: a slow machine makes fewer, never more. The samples drawn on a
// terminal redraw one line throughout.
import { afterEach, expect, test } from 'vitest';
import { progressLine, terminalProgress } from '../dist/cli/render.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { migrate } from '../dist/precopy/migration.js';
import type { MigrationProgress } from '../dist/precopy/report.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';

const MiB = 1024 * 1024;
// About 19 MiB of non-zero pages; sent uncompressed under an 8 MB/s cap, the first round alone
// takes more than two seconds on any machine.
const GUEST: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 2e6, hotSetBytes: MiB, seed: 8 };
const CAP_BYTES_PER_SEC = 8e6;
/** Longer than the engine's default (250 ms): a build that ignored the option would call four times as often. */
const INTERVAL_MS = 1000;

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The calls made because time passed: those where phase, round and round size had not changed since the call before. */
function tickCalls(calls: MigrationProgress[]): MigrationProgress[] {
  return calls.filter((p, i) => {
    const before = calls[i - 1];
    return before !== undefined && before.phase === p.phase && before.round === p.round && before.roundPages === p.roundPages;
  });
}

test('onProgress is called every progressIntervalMs between changes, never more often; the terminal shows one redrawn line', async () => {
  const guest = await SimulatedGuest.boot(GUEST, 'progress');
  cleanups.push(() => guest.destroy());
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([['sim', new SimTargetBackend()]]) });

  const writes: string[] = [];
  const terminal = { isTTY: true, columns: 200, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream;
  const show = terminalProgress(terminal);
  const calls: MigrationProgress[] = [];
  const report = await migrate(guest, source, {
    codec: 'none',
    maxBandwidthBytesPerSec: CAP_BYTES_PER_SEC,
    progressIntervalMs: INTERVAL_MS,
    destroySource: false,
    onProgress: (p) => {
      calls.push(p);
      show(p);
    },
  });
  show.done();
  const result = await incoming;
  cleanups.push(() => result.domain?.destroy());
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');

  // Every phase is reported as it begins, in order, ending with `done`.
  const phases = calls.map((p) => p.phase).filter((phase, i, all) => phase !== all[i - 1]);
  expect(phases).toEqual(['handshake', 'precopy', 'stop-and-copy', 'switchover', 'verify', 'done']);

  const elapsedMs = calls.at(-1)!.elapsedMs;
  expect(elapsedMs).toBeGreaterThan(2 * INTERVAL_MS);
  const ticks = tickCalls(calls);
  expect(ticks.length).toBeGreaterThanOrEqual(1);
  expect(ticks.length).toBeLessThanOrEqual(elapsedMs / INTERVAL_MS + 2);
  // The samples' own clock never runs backwards.
  expect(calls.every((p, i) => i === 0 || p.elapsedMs >= calls[i - 1]!.elapsedMs)).toBe(true);

  // Drawn on a terminal: one redraw per call, the same line throughout, cleared at the end.
  expect(writes).toEqual([...calls.map((p) => `\r\x1b[2K${progressLine(p)}`), '\r\x1b[2K']);
  expect(writes.join('')).not.toContain('\n');
});
