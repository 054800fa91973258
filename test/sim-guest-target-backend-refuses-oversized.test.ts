import { describe, expect, it } from 'vitest';
import { SimTargetBackend, SimulatedGuest, simDescriptor, DEFAULT_SIM_CONFIG } from '../dist/domain/sim/index.js';

const MiB = 1024 * 1024;

describe('SimTargetBackend', () => {
  it('refuses a guest larger than its allowance before allocating it', async () => {
    const backend = new SimTargetBackend({ maxMemoryBytes: 64 * MiB });
    expect(backend.kind).toBe('sim');
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 128 * MiB, hotSetBytes: 0 });
    await expect(backend.create(descriptor)).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    // Even a size the simulator itself could never build is refused as too big, not as invalid.
    await expect(backend.create({ ...descriptor, memoryBytes: 2 ** 50 })).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
  });

  it('defaults to the protocol limit of 16 GiB', async () => {
    const backend = new SimTargetBackend();
    expect(backend.maxMemoryBytes).toBe(16 * 1024 * MiB);
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 17 * 1024 * MiB });
    await expect(backend.create(descriptor)).rejects.toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
  });

  it('rejects a malformed descriptor with ERR_INVALID_ARGUMENT', async () => {
    const backend = new SimTargetBackend({ maxMemoryBytes: 64 * MiB });
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 16 * MiB, hotSetBytes: 0 });
    await expect(backend.create({ ...descriptor, config: { ...descriptor.config, workload: 'nope' } })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
  });

  it('builds an empty, paused guest of the announced shape', async () => {
    const backend = new SimTargetBackend({ maxMemoryBytes: 64 * MiB });
    const descriptor = simDescriptor({ ...DEFAULT_SIM_CONFIG, memoryBytes: 16 * MiB, hotSetBytes: 0, vcpus: 2 }, 'incoming');
    const guest = (await backend.create(descriptor)) as SimulatedGuest;
    try {
      expect(guest).toBeInstanceOf(SimulatedGuest);
      expect(guest.paused).toBe(true);
      expect(guest.pageCount).toBe(4096);
      expect(guest.descriptor.name).toBe('incoming');
      expect(guest.stepCounts()).toEqual([0, 0]);
    } finally {
      await guest.destroy();
    }
  });
});
