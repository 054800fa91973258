import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedGuest, type SimGuestConfig } from '../dist/domain/sim/index.js';
import { IDLE_STEPS_PER_SECOND } from '../dist/domain/sim/config.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const guests: SimulatedGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((guest) => guest.destroy()));
});

const total = (steps: number[]) => steps.reduce((a, b) => a + b, 0);

/**
 * Runs `guests` (paused, or running) for about `ms` from a common start and pauses them again;
 * returns the steps each vCPU took meanwhile, and when the window ended (`performance.now()`).
 */
async function runFor(guests: SimulatedGuest[], ms: number): Promise<{ steps: number[][]; elapsedMs: number; endMs: number }> {
  await Promise.all(guests.map((g) => g.pause()));
  const before = guests.map((g) => g.stepCounts());
  const t0 = performance.now();
  await Promise.all(guests.map((g) => g.resume()));
  await sleep(ms);
  await Promise.all(guests.map((g) => g.pause()));
  const endMs = performance.now();
  const steps = guests.map((g, i) => g.stepCounts().map((n, v) => n - before[i]![v]!));
  return { steps, elapsedMs: endMs - t0, endMs };
}

/**
 * The most steps a vCPU paced at `perSecond` may take in `elapsedMs`. Each vCPU's pacing clock
 * only ever holds it back, so this holds however slow or loaded the machine.
 */
const mostSteps = (perSecond: number, elapsedMs: number) => Math.floor((perSecond * elapsedMs) / 1000) + 1;

/**
 * The most steps a vCPU may owe and run at once, behind its pace (see vcpu-worker.ts): 2048, or
 * 20 ms of its rate. A vCPU further behind forgets the rest rather than burst.
 */
const mostOwed = (perSecond: number) => Math.max(2048, (perSecond * 20) / 1000);

// What a slow machine could upset (how close a vCPU comes to its pace) is asserted as a ratio
// between guests or windows that share the machine at the same time.
describe('pacing', () => {
  it('dirties pages at the configured rate, never faster, in proportion to it, split across vCPUs', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 64 * MiB,
      vcpus: 2,
      workload: 'sequential',
      dirtyRateBytesPerSec: 40e6,
      hotSetBytes: 0,
      seed: 3,
    };
    const booted = performance.now();
    const guest = await SimulatedGuest.boot(config);
    const half = await SimulatedGuest.boot({ ...config, dirtyRateBytesPerSec: config.dirtyRateBytesPerSec / 2 });
    guests.push(guest, half);
    await guest.pause();
    guest.enableDirtyLog();
    const { steps, endMs } = await runFor([guest, half], 1000);
    // Since boot, each vCPU took at most its rate times the time since.
    const perVcpuPerSecond = config.dirtyRateBytesPerSec / 4096 / config.vcpus;
    for (const n of guest.stepCounts()) expect(n).toBeLessThanOrEqual(mostSteps(perVcpuPerSecond, endMs - booted));
    for (const n of half.stepCounts()) expect(n).toBeLessThanOrEqual(mostSteps(perVcpuPerSecond / 2, endMs - booted));
    // Side by side, twice the rate took about twice the steps; each vCPU about half of its guest's.
    const ratio = total(steps[0]!) / total(steps[1]!);
    expect(ratio).toBeGreaterThan(1.4);
    expect(ratio).toBeLessThan(2.8);
    for (const n of steps[0]!) expect(n / total(steps[0]!)).toBeGreaterThan(0.3);
    // A sequential writer dirties a new page every step (its 8192-page partitions do not wrap
    // within a second): the dirty log holds exactly one page per step.
    expect(guest.readDirtyLog().length).toBe(total(steps[0]!));
  });

  it('does not make up for time spent paused with a burst', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 16 * MiB,
      vcpus: 1,
      workload: 'uniform',
      dirtyRateBytesPerSec: 200e6,
      hotSetBytes: 0,
      seed: 4,
    };
    const perSecond = config.dirtyRateBytesPerSec / 4096;
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    await sleep(50);
    await guest.pause();
    // Half a second paused: about 24,000 steps that a vCPU making up for it would run at once.
    await sleep(500);
    const { steps, elapsedMs } = await runFor([guest], 50);
    expect(steps[0]![0]!).toBeLessThanOrEqual(mostSteps(perSecond, elapsedMs) + mostOwed(perSecond));
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
    const booted = performance.now();
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    // It does run, at IDLE_STEPS_PER_SECOND (10), where 1 GB/s would be 244,140 steps a second.
    await expect.poll(() => total(guest.stepCounts()), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    await sleep(300);
    await guest.pause();
    expect(total(guest.stepCounts())).toBeLessThanOrEqual(mostSteps(IDLE_STEPS_PER_SECOND, performance.now() - booted));
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
    const perSecond = config.dirtyRateBytesPerSec / 4096;
    const rate = ({ steps, elapsedMs }: { steps: number[][]; elapsedMs: number }) => (steps[0]![0]! * 1000) / elapsedMs;
    const full = await runFor([guest], 300);
    const throttledFrom = performance.now();
    guest.setThrottle(0.8);
    const throttled = await runFor([guest], 300);
    guest.setThrottle(0);
    const lifted = await runFor([guest], 300);
    // Throttled by 80%, the vCPU is paced at a fifth of its rate from the moment it was told.
    expect(throttled.steps[0]![0]!).toBeLessThanOrEqual(mostSteps(perSecond * 0.2, throttled.endMs - throttledFrom));
    expect(rate(throttled)).toBeLessThan(rate(full) * 0.5);
    expect(rate(lifted)).toBeGreaterThan(rate(throttled) * 2);
    expect(() => guest.setThrottle(-0.1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => guest.setThrottle(Number.NaN)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
