import { afterEach, describe, expect, it } from 'vitest';
import {
  SimTargetBackend,
  SimulatedGuest,
  oracleDigest,
  initialVcpuState,
  simDescriptor,
  type SimGuestConfig,
} from '../dist/domain/sim/index.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const guests: SimulatedGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((guest) => guest.destroy()));
});

/** The ids of a guest's vCPU threads (a private field, read for this one check). */
function vcpuThreadIds(guest: SimulatedGuest): number[] {
  return (guest as unknown as { vcpus: Array<{ worker: { threadId: number } }> }).vcpus.map((v) => v.worker.threadId);
}

const config: SimGuestConfig = {
  memoryBytes: 16 * MiB,
  vcpus: 2,
  workload: 'hotset',
  dirtyRateBytesPerSec: 30e6,
  hotSetBytes: 1 * MiB,
  seed: 21,
};

describe('saveState and loadState', () => {
  it('let an empty guest, given the memory and state, continue exactly as the source would', async () => {
    const source = await SimulatedGuest.boot(config, 'round-trip');
    guests.push(source);
    await sleep(150);
    await source.pause();
    const atPause = source.stepCounts();
    const blob = source.saveState();

    const target = (await new SimTargetBackend().create(source.descriptor)) as SimulatedGuest;
    guests.push(target);
    expect(target.paused).toBe(true);
    expect(target.descriptor).toEqual(source.descriptor);
    const page = new Uint8Array(4096);
    const zero = Buffer.alloc(4096);
    for (let pfn = 0; pfn < source.pageCount; pfn++) {
      source.copyPage(pfn, page, 0);
      if (zero.equals(page)) target.zeroPage(pfn);
      else target.writePage(pfn, page, 0);
    }
    await target.loadState(blob);
    expect(target.vcpuStates()).toEqual(source.vcpuStates());
    expect(target.saveState()).toEqual(blob);

    // Resuming only signals the vCPU threads the empty guest started with: no new ones.
    const threadsBefore = vcpuThreadIds(target);
    expect(threadsBefore).toHaveLength(config.vcpus);
    await target.resume();
    expect(vcpuThreadIds(target)).toEqual(threadsBefore);
    await sleep(150);
    await target.pause();
    const later = target.stepCounts();
    later.forEach((n, i) => expect(n).toBeGreaterThan(atPause[i]!));
    const oracle = oracleDigest(config, later);
    expect(digestBuffer(target.memory, 4096)).toBe(oracle.digest);
    expect(target.vcpuStates()).toEqual(oracle.vcpus);

    // The source, untouched by all this, still matches the oracle at its own step counts.
    expect(digestBuffer(source.memory, 4096)).toBe(oracleDigest(config, atPause).digest);
  });

  it('refuses a state with another number of vCPUs, or while running', async () => {
    const one = await SimulatedGuest.boot({ ...config, vcpus: 1 });
    guests.push(one);
    await one.pause();
    const blob = one.saveState();
    const target = await SimulatedGuest.createEmpty(simDescriptor(config));
    guests.push(target);
    await expect(target.loadState(blob)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await one.resume();
    expect(() => one.saveState()).toThrow(expect.objectContaining({ code: 'ERR_DOMAIN_FAILED' }));
    await expect(one.loadState(blob)).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
  });

  it('builds an empty guest paused, with zeroed memory and boot registers', async () => {
    const shape = { ...config, vcpus: 1, workload: 'uniform' as const };
    const target = await SimulatedGuest.createEmpty(simDescriptor(shape));
    guests.push(target);
    expect(target.paused).toBe(true);
    expect(target.stepCounts()).toEqual([0]);
    expect(target.vcpuStates()).toEqual([initialVcpuState(shape.seed, 0)]);
    expect(Buffer.alloc(target.memory.length).equals(target.memory)).toBe(true);
  });
});
