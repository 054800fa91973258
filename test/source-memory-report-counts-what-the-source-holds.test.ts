// The report's `memory` section: what the source held beyond the guest, part by part, checked
// against what the structures hold (the page-hash table of a 64 MiB guest, the batch buffers the
// frames on the wire were built in), and within a tenth of guest RAM with the default settings.
import { afterEach, describe, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { DEFAULT_MAX_IN_FLIGHT_BATCHES } from '../dist/precopy/page-sender.js';
import { batchPagesWithin, DEFAULT_SOURCE_MEMORY_SHARE, SourceMemoryLedger } from '../dist/precopy/source-memory.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { PAGES_HEADER_RESERVE_BYTES, decodeFrame } from '../dist/protocol/codec.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { tamperingTransport } from './helpers/faulty-transport.js';

const MiB = 1024 * 1024;
const PAGE = 4096;
const backends = new Map([['sim', new SimTargetBackend()]]);
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

describe('SourceMemoryLedger', () => {
  test('keeps the peak of the sum and what each part held then', () => {
    const ledger = new SourceMemoryLedger(1000 * MiB);
    ledger.set('pageHashes', 100);
    ledger.set('pageLists', 400);
    ledger.set('sendBuffers', 50);
    ledger.set('pageLists', 10);
    const r = ledger.report();
    expect(r.peakBytes).toBe(550);
    expect(r.atPeak).toEqual({ pageHashes: 100, pageLists: 400, sendBuffers: 50 });
    expect(ledger.bytes).toBe(160);
    expect(r.boundBytes).toBe(100 * MiB);
  });

  test('batches shrink to fit their share of the bound, in steps of 16 pages, never below 16', () => {
    expect(batchPagesWithin(64 * MiB, 4, 2, PAGE, 256)).toBe(256);
    expect(batchPagesWithin(3.2 * MiB, 4, 2, PAGE, 256)).toBe(96);
    expect(batchPagesWithin(1000, 4, 2, PAGE, 256)).toBe(16);
  });
});

for (const codec of ['auto', 'lz4', 'none'] as const) {
  test(`a 64 MiB guest with codec ${codec}: the parts are what the source holds, and the peak stays within a tenth of guest RAM`, async () => {
    const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 30e6, hotSetBytes: 4 * MiB, seed: 3 };
    const guest = await SimulatedGuest.boot(config, 'memory-report');
    cleanups.push(() => guest.destroy());
    const [a, b] = createMemoryTransportPair();
    let largestBatch = 0;
    const watched = tamperingTransport(a, (frame) => {
      const record = decodeFrame(frame);
      if (record.type === 'pages') largestBatch = Math.max(largestBatch, record.rawLength);
      return frame;
    });
    const incoming = acceptMigration(b, { backends });
    const report = await migrate(guest, watched, { codec, destroySource: false });
    const result = await incoming;
    cleanups.push(async () => result.domain?.destroy());
    expect(report.outcome).toBe('completed');

    const memory = report.memory!;
    const pages = config.memoryBytes / PAGE;
    expect(memory.guestBytes).toBe(config.memoryBytes);
    expect(memory.boundBytes).toBe(Math.floor(config.memoryBytes * DEFAULT_SOURCE_MEMORY_SHARE));
    // The hash table: one u32 a page. Round 0's list of every page is held at the peak too.
    expect(memory.atPeak.pageHashes).toBe(pages * 4);
    expect(memory.atPeak.pageLists).toBeGreaterThanOrEqual(pages * 4);
    // Every one of the sender's batch buffers holds a batch as large as the largest one sent.
    const buffers = memory.atPeak.sendBuffers!;
    expect(buffers).toBeGreaterThanOrEqual(DEFAULT_MAX_IN_FLIGHT_BATCHES * (PAGES_HEADER_RESERVE_BYTES + largestBatch));
    const sum = Object.values(memory.atPeak).reduce((s, n) => s + n, 0);
    expect(memory.peakBytes).toBe(sum);
    expect(memory.peakShare).toBeCloseTo(memory.peakBytes / config.memoryBytes, 5);
    expect(memory.peakBytes).toBeLessThanOrEqual(memory.boundBytes);
  }, 60_000);
}
