// A guest tracked by a scan pays a scan of all memory in every pause, before its last round: the
// tracker measures what a scan costs, and the pause prediction adds it, however few pages are
// dirty, so the policy does not promise a pause the scan alone would overrun. A scan whose chunks
// are sent as they are found overlaps its last round: the pause pays the longer of the two, and of
// the shorter only the share that cannot overlap.
import { expect, test } from 'vitest';
import type { SourceDomain } from '../dist/domain/backend.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { dirtyTrackerFor } from '../dist/precopy/dirty-tracker.js';
import { DowntimeModel } from '../dist/precopy/downtime-model.js';
import type { RoundReport } from '../dist/precopy/report.js';
import { SwitchoverCalibration } from '../dist/precopy/switchover-calibration.js';

const MiB = 1024 * 1024;

/** `guest` declaring a scan instead of its dirty log. */
function scanTracked(guest: SimulatedGuest): SourceDomain {
  return new Proxy(guest, {
    get: (target, key) => (key === 'dirtyTracking' ? 'scan' : Reflect.get(target, key, target)),
  }) as unknown as SourceDomain;
}

test('a scan tracker reports what its fastest scan took; a dirty log costs nothing to take', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 32 * MiB, workload: 'idle', hotSetBytes: 4 * MiB, seed: 3 }, 'scan-cost');
  try {
    const scan = dirtyTrackerFor(scanTracked(guest), new Uint32Array(guest.pageCount));
    scan.start();
    try {
      expect(scan.takeMs()).toBe(0);
      const started = performance.now();
      const pages = await scan.take();
      const elapsed = performance.now() - started;
      // Against an empty table every page with contents differs.
      expect(pages.length).toBeGreaterThan(0);
      expect(scan.takeMs()).toBeGreaterThan(0);
      expect(scan.takeMs()).toBeLessThanOrEqual(elapsed);
    } finally {
      scan.stop();
    }
    const log = dirtyTrackerFor(guest, new Uint32Array(guest.pageCount));
    log.start();
    await log.take();
    expect(log.takeMs()).toBe(0);
    log.stop();
  } finally {
    await guest.destroy();
  }
});

test('the pause prediction adds the cost of finding the dirty pages, even when none are dirty', () => {
  const round: RoundReport = {
    round: 1,
    stopAndCopy: false,
    pages: 2560,
    zeroPages: 0,
    bytesRaw: 10 * MiB,
    bytesWire: 5 * MiB,
    durationMs: 100,
    dirtyRateBytesPerSec: 0,
    bandwidthBytesPerSec: 100 * MiB,
    sendMs: 95,
    ackMs: 5,
    gcMs: 0,
    targetGcMs: 0,
    throttlePercent: 0,
  };
  const model = new DowntimeModel([round], 4096, new SwitchoverCalibration(), undefined);
  model.observeRoundTrip(2);
  const withoutScan = model.predict(4 * MiB);
  const nothingDirty = model.predict(0);
  model.findDirtyMs = () => 180;
  expect(model.predict(4 * MiB)).toBeCloseTo(withoutScan + 180, 6);
  expect(model.predict(0)).toBeCloseTo(nothingDirty + 180, 6);

  // Streamed: 4 MiB at 10 ms per MiB is a 40 ms round, a tenth of the shorter does not overlap.
  const roundMs = 40;
  model.findDirtyLagShare = () => 0.1;
  expect(model.predict(4 * MiB)).toBeCloseTo(withoutScan - roundMs + 180 + 0.1 * roundMs, 6);
  expect(model.predict(0)).toBeCloseTo(nothingDirty + 180, 6);
  // A scan shorter than the round: the round, and the first chunks' scan before it.
  model.findDirtyMs = () => 10;
  expect(model.predict(4 * MiB)).toBeCloseTo(withoutScan + 0.1 * 10, 6);
});

test('a streamed scan says how little of it cannot overlap the send; a log takes all at once', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 256 * MiB, workload: 'idle', hotSetBytes: 4 * MiB, seed: 3 }, 'scan-lag');
  try {
    const scan = dirtyTrackerFor(scanTracked(guest), new Uint32Array(guest.pageCount));
    scan.start();
    try {
      // 16 chunks of 16 MiB over at most 4 threads.
      expect(scan.takeLagShare()).toBeGreaterThanOrEqual(1 / 16);
      expect(scan.takeLagShare()).toBeLessThanOrEqual(4 / 16);
      let found = 0;
      for await (const run of scan.takeRuns!()) found += run.length;
      expect(found).toBeGreaterThan(0);
      expect(scan.takeMs()).toBeGreaterThan(0);
    } finally {
      scan.stop();
    }
    const log = dirtyTrackerFor(guest, new Uint32Array(guest.pageCount));
    expect(log.takeLagShare()).toBe(1);
    expect(log.takeRuns).toBeUndefined();
  } finally {
    await guest.destroy();
  }
});
