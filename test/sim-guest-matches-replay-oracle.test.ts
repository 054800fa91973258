import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedGuest, oracleDigest, type SimGuestConfig, type Workload } from '../dist/domain/sim/index.js';
import { digestMemory } from '../dist/protocol/page-digest.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const guests: SimulatedGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((guest) => guest.destroy()));
});

function guestDigest(guest: SimulatedGuest): Promise<string> {
  return digestMemory(guest.pageCount, 4096, (pfns, dst) => guest.readPages(pfns, dst));
}

async function expectMatchesOracle(guest: SimulatedGuest, config: SimGuestConfig): Promise<number[]> {
  expect(guest.paused).toBe(true);
  const steps = guest.stepCounts();
  const states = guest.vcpuStates();
  expect(states.map((s) => s.steps)).toEqual(steps);
  const oracle = oracleDigest(config, steps);
  expect(await guestDigest(guest)).toBe(oracle.digest);
  expect(states).toEqual(oracle.vcpus);
  return steps;
}

const cases: Array<{ workload: Workload; vcpus: number }> = [
  { workload: 'uniform', vcpus: 2 },
  { workload: 'hotset', vcpus: 1 },
  { workload: 'sequential', vcpus: 2 },
  { workload: 'idle', vcpus: 1 },
];

describe.each(cases)('a $workload guest with $vcpus vCPU(s)', ({ workload, vcpus }) => {
  const config: SimGuestConfig = {
    memoryBytes: 16 * MiB,
    vcpus,
    workload,
    dirtyRateBytesPerSec: 40e6,
    hotSetBytes: 2 * MiB,
    seed: 11 + vcpus,
  };

  it('holds exactly the memory and registers the replay oracle computes, across pauses', async () => {
    const guest = await SimulatedGuest.boot(config, `oracle-${workload}`);
    guests.push(guest);
    expect(guest.paused).toBe(false);
    await sleep(200);
    await guest.pause();
    const first = await expectMatchesOracle(guest, config);
    expect(first.every((n) => n > 0)).toBe(true);

    // Paused means paused: nothing moves.
    await sleep(60);
    expect(guest.stepCounts()).toEqual(first);

    await guest.resume();
    expect(guest.paused).toBe(false);
    await sleep(workload === 'idle' ? 250 : 120);
    await guest.pause();
    const second = await expectMatchesOracle(guest, config);
    second.forEach((n, i) => expect(n).toBeGreaterThan(first[i]!));

    // pause and resume are idempotent.
    await guest.pause();
    expect(guest.stepCounts()).toEqual(second);
    await guest.resume();
    await guest.resume();
    await sleep(30);
    await guest.pause();
    await expectMatchesOracle(guest, config);
  });
});

describe('pausing a guest caught between slices or inside one', () => {
  // At 40 MB/s a vCPU sleeps between short slices and is mostly held where it is; at 2 GB/s it
  // steps without rest and each pause waits for its slice to end. Either way it must stop dead.
  it.each([40e6, 2e9])('stops every vCPU dead and keeps the oracle, over many quick cycles at %d B/s', async (rate) => {
    const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 2, workload: 'uniform', dirtyRateBytesPerSec: rate, hotSetBytes: 0, seed: 23 };
    const guest = await SimulatedGuest.boot(config, 'quick-cycles');
    guests.push(guest);
    let last = guest.stepCounts();
    for (let cycle = 0; cycle < 150; cycle++) {
      await sleep(cycle % 3);
      await guest.pause();
      const steps = guest.stepCounts();
      expect(guest.vcpuStates().map((s) => s.steps)).toEqual(steps);
      // Spin a little: a vCPU that was not really stopped would move its count meanwhile.
      const until = performance.now() + 0.3;
      while (performance.now() < until);
      expect(guest.stepCounts()).toEqual(steps);
      steps.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(last[i]!));
      last = steps;
      await guest.resume();
    }
    await sleep(20);
    await guest.pause();
    const steps = await expectMatchesOracle(guest, config);
    steps.forEach((n) => expect(n).toBeGreaterThan(0));
  });
});

describe('the dirty log of a running guest', () => {
  it('names exactly the pages that changed since it was enabled', async () => {
    const config: SimGuestConfig = {
      memoryBytes: 16 * MiB,
      vcpus: 2,
      workload: 'uniform',
      dirtyRateBytesPerSec: 20e6,
      hotSetBytes: 0,
      seed: 5,
    };
    const guest = await SimulatedGuest.boot(config);
    guests.push(guest);
    await guest.pause();
    const before = guest.bytes.slice();
    guest.enableDirtyLog();
    await guest.resume();
    await sleep(100);
    await guest.pause();
    const dirty = [...guest.readDirtyLog()];
    const changed: number[] = [];
    for (let pfn = 0; pfn < guest.pageCount; pfn++) {
      const at = pfn * 4096;
      if (!Buffer.from(before.subarray(at, at + 4096)).equals(Buffer.from(guest.bytes.subarray(at, at + 4096)))) changed.push(pfn);
    }
    expect(changed.length).toBeGreaterThan(0);
    // Every step writes fresh values, so a page written is a page changed: the two lists agree.
    expect(dirty).toEqual(changed);
    expect(guest.readDirtyLog()).toHaveLength(0);
  });
});
