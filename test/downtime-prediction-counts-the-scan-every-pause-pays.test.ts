// A guest tracked by a scan pays a scan of all memory in every pause, before its last round: the
// tracker measures what a scan costs, and the pause prediction adds it, however few pages are
// dirty, so the policy does not promise a pause the scan alone would overrun.
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
});
