import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { SimulatedGuest, type SimGuestConfig } from '../dist/domain/sim/index.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = {
  memoryBytes: 16 * MiB,
  vcpus: 2,
  workload: 'uniform',
  dirtyRateBytesPerSec: 10e6,
  hotSetBytes: 0,
  seed: 2,
};

describe('the simulated guest lifecycle', () => {
  it('destroys cleanly, twice, and refuses use afterwards', async () => {
    const guest = await SimulatedGuest.boot(config);
    const page = new Uint8Array(4096);
    guest.readPages(Uint32Array.of(0), page);
    await guest.destroy();
    await guest.destroy();
    expect(() => guest.readPages(Uint32Array.of(0), page)).toThrow(expect.objectContaining({ code: 'ERR_DOMAIN_FAILED' }));
    expect(guest.memory()).toEqual({ kind: 'none' });
    await expect(guest.pause()).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
    await expect(guest.resume()).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
  });

  it('counts its vCPUs\' run time while they run, and not while paused', async () => {
    const guest = await SimulatedGuest.boot(config);
    try {
      await new Promise((r) => setTimeout(r, 200));
      const running = guest.vcpuTimeMs();
      expect(running).toBeGreaterThan(0);
      await guest.pause();
      const atPause = guest.vcpuTimeMs();
      expect(atPause).toBeGreaterThanOrEqual(running);
      await new Promise((r) => setTimeout(r, 100));
      expect(guest.vcpuTimeMs()).toBe(atPause);
      await guest.resume();
      await new Promise((r) => setTimeout(r, 100));
      expect(guest.vcpuTimeMs()).toBeGreaterThan(atPause);
    } finally {
      await guest.destroy();
    }
  });

  it('checks page numbers and buffer room', async () => {
    const guest = await SimulatedGuest.boot(config);
    try {
      const page = new Uint8Array(4096);
      const two = new Uint8Array(2 * 4096);
      const outside = { code: 'ERR_PAGE_OUT_OF_RANGE' };
      expect(() => guest.readPages(Uint32Array.of(guest.pageCount), page)).toThrow(expect.objectContaining(outside));
      // A run that starts inside memory and ends beyond it.
      expect(() => guest.readPages(Uint32Array.of(guest.pageCount - 1, guest.pageCount), two)).toThrow(expect.objectContaining(outside));
      expect(() => guest.writePages(Uint32Array.of(guest.pageCount), page)).toThrow(expect.objectContaining(outside));
      expect(() => guest.zeroPages(Uint32Array.of(0, guest.pageCount))).toThrow(expect.objectContaining(outside));
      expect(() => guest.readPages(Uint32Array.of(0, 1), page)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
      expect(() => guest.writePages(Uint32Array.of(0), page.subarray(1))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    } finally {
      await guest.destroy();
    }
  });

  it('reports a vCPU thread that died as ERR_DOMAIN_FAILED on the next pause', async () => {
    const guest = await SimulatedGuest.boot(config);
    try {
      // Reach into the guest to kill one vCPU thread, as a crash would.
      const vcpus = (guest as unknown as { vcpus: Array<{ worker: { terminate(): Promise<number> } }> }).vcpus;
      await vcpus[0]!.worker.terminate();
      await new Promise((resolve) => setTimeout(resolve, 20));
      await expect(guest.pause()).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
      await expect(guest.resume()).rejects.toMatchObject({ code: 'ERR_DOMAIN_FAILED' });
    } finally {
      await guest.destroy();
    }
  });

  it('boots whatever Node options the process was started with', () => {
    const url = new URL('../dist/domain/sim/index.js', import.meta.url).href;
    const script = `
      const { SimulatedGuest } = await import(${JSON.stringify(url)});
      const guest = await SimulatedGuest.boot(${JSON.stringify(config)});
      await guest.destroy();
      console.log('booted');
    `;
    const child = spawnSync(process.execPath, ['--trace-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 });
    expect(child.status).toBe(0);
    expect(child.stdout).toMatch(/^booted$/m);
  });

  it('never keeps the process alive, even when not destroyed', () => {
    const url = new URL('../dist/domain/sim/index.js', import.meta.url).href;
    const script = `
      const { SimulatedGuest } = await import(${JSON.stringify(url)});
      const guest = await SimulatedGuest.boot(${JSON.stringify(config)});
      await new Promise((resolve) => setTimeout(resolve, 50));
      await guest.pause();
      await guest.resume();
      console.log('steps', guest.stepCounts().join(','));
    `;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 });
    expect(child.error).toBeUndefined();
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout).toMatch(/^steps \d+,\d+/);
  });
});
