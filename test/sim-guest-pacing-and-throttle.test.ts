import { afterEach, describe, expect, it } from 'vitest';
import { DirtyRateMeter } from '../dist/dirtylog/dirty-rate.js';
import { SimulatedGuest, type SimGuestConfig } from '../dist/domain/sim/index.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const guests: SimulatedGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((guest) => guest.destroy()));
});

const total = (steps: number[]) => steps.reduce((a, b) => a + b, 0);

/** Steps per second over `ms` of running time. */
async function measureStepRate(guest: SimulatedGuest, ms: number): Promise<number> {
  const start = total(guest.stepCounts());
  const t0 = performance.now();
  await sleep(ms);
  const steps = total(guest.stepCounts()) - start;
  return (steps * 1000) / (performance.now() - t0);
}

// Loose bounds only: the machine is shared, and pacing is best effort.
describe('pacing', () => {
  it('dirties pages at roughly the configured rate, split across vCPUs', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 32 * MiB,
      vcpus: 2,
      workload: 'sequential',
      dirtyRateBytesPerSec: 40e6,
      hotSetBytes: 0,
      seed: 3,
    };
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    guest.enableDirtyLog();
    const meter = new DirtyRateMeter({ startMs: performance.now() });
    const expectedPagesPerSecond = config.dirtyRateBytesPerSec / 4096;
    const stepRate = await measureStepRate(guest, 400);
    meter.sample(guest.readDirtyLog().length, performance.now());
    expect(stepRate).toBeGreaterThan(expectedPagesPerSecond * 0.5);
    expect(stepRate).toBeLessThan(expectedPagesPerSecond * 2);
    // A sequential writer dirties a new page every step (the partitions are far from wrapping).
    expect(meter.bytesPerSecond(4096)).toBeGreaterThan(config.dirtyRateBytesPerSec * 0.5);
    expect(meter.bytesPerSecond(4096)).toBeLessThan(config.dirtyRateBytesPerSec * 2);
  });

  it('does not make up for time spent paused with a burst', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 16 * MiB,
      vcpus: 1,
      workload: 'uniform',
      dirtyRateBytesPerSec: 20e6,
      hotSetBytes: 0,
      seed: 4,
    };
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    await sleep(50);
    await guest.pause();
    await sleep(500);
    const before = total(guest.stepCounts());
    await guest.resume();
    await sleep(50);
    const after = total(guest.stepCounts());
    const perSecond = config.dirtyRateBytesPerSec / 4096;
    // 500 ms of backlog would be ~2400 steps; 50 ms of running is ~240.
    expect(after - before).toBeLessThan(perSecond * 0.25);
  });

  it('runs an idle guest at a trickle whatever the configured rate', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 16 * MiB,
      vcpus: 1,
      workload: 'idle',
      dirtyRateBytesPerSec: 1e9,
      hotSetBytes: 0,
      seed: 6,
    };
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    await sleep(300);
    const steps = total(guest.stepCounts());
    expect(steps).toBeGreaterThanOrEqual(1);
    expect(steps).toBeLessThanOrEqual(10);
  });
});

describe('throttle', () => {
  it('slows the vCPUs down, and lifting it restores the pace', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 16 * MiB,
      vcpus: 1,
      workload: 'uniform',
      dirtyRateBytesPerSec: 80e6,
      hotSetBytes: 0,
      seed: 8,
    };
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    const full = await measureStepRate(guest, 300);
    guest.setThrottle(0.8);
    const throttled = await measureStepRate(guest, 300);
    guest.setThrottle(0);
    const lifted = await measureStepRate(guest, 300);
    expect(throttled).toBeLessThan(full * 0.5);
    expect(lifted).toBeGreaterThan(throttled * 2);
    expect(() => guest.setThrottle(-0.1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => guest.setThrottle(Number.NaN)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
