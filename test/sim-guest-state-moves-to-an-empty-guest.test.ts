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
    // Memory moves in batches of 64 pages, zero pages as page numbers only, as the engine moves it.
    const batch = 64;
    const pages = new Uint8Array(batch * 4096);
    const zero = Buffer.alloc(4096);
    for (let first = 0; first < source.pageCount; first += batch) {
      const pfns = Uint32Array.from({ length: batch }, (_, i) => first + i);
      source.readPages(pfns, pages);
      const isZero = (i: number) => zero.equals(pages.subarray(i * 4096, (i + 1) * 4096));
      const data = [...pfns.keys()].filter((i) => !isZero(i));
      const packed = new Uint8Array(data.length * 4096);
      data.forEach((i, k) => packed.set(pages.subarray(i * 4096, (i + 1) * 4096), k * 4096));
      target.writePages(Uint32Array.from(data, (i) => pfns[i]!), packed);
      target.zeroPages(pfns.filter((_, i) => isZero(i)));
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
    expect(digestBuffer(target.bytes, 4096)).toBe(oracle.digest);
    expect(target.vcpuStates()).toEqual(oracle.vcpus);

    // The source, untouched by all this, still matches the oracle at its own step counts.
    expect(digestBuffer(source.bytes, 4096)).toBe(oracleDigest(config, atPause).digest);
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
    expect(Buffer.alloc(target.bytes.length).equals(target.bytes)).toBe(true);
  });
});
