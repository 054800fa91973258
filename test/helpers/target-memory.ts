// What a guest received in this process holds in its memory, checked against the replay oracle.
// The receiver's digest is built from the pages as they arrived, so it cannot see a backend that
// wrote them to the wrong place; this reads the guest's memory itself.
import { expect } from 'vitest';
import type { TargetDomain } from '../../dist/domain/backend.js';
import { SimulatedGuest } from '../../dist/domain/sim/guest.js';
import { oracleDigest } from '../../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../../dist/domain/sim/config.js';
import { digestBuffer } from '../../dist/protocol/page-digest.js';

/**
 * Pauses the simulated guest `domain`, expects its memory and registers to be what replaying
 * `config` for the steps it has run gives, and resumes it if it was running. Each vCPU must have
 * run at least `atLeastSteps[i]` steps (the source's count at its pause). Returns the steps.
 */
export async function expectGuestMatchesOracle(
  domain: TargetDomain | undefined,
  config: SimGuestConfig,
  atLeastSteps: readonly number[] = [],
): Promise<number[]> {
  expect(domain).toBeInstanceOf(SimulatedGuest);
  const guest = domain as SimulatedGuest;
  const wasRunning = !guest.paused;
  await guest.pause();
  try {
    const vcpus = guest.vcpuStates();
    const steps = vcpus.map((v) => v.steps);
    steps.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(atLeastSteps[i] ?? 0));
    const oracle = oracleDigest(config, steps);
    expect(digestBuffer(guest.bytes, 4096), 'the memory of the guest on the target').toBe(oracle.digest);
    expect(vcpus).toEqual(oracle.vcpus);
    return steps;
  } finally {
    if (wasRunning) await guest.resume();
  }
}
