// What a guest on the target holds in its memory, checked against the replay oracle: in this
// process by reading the guest itself, or in an agent process by asking the agent to read it.
// The receiver's digest is built from the pages as they arrived, so it cannot see a backend that
// wrote them to the wrong place; these read the guest's memory itself.
import { expect } from 'vitest';
import { checkAgainstOracle, type OracleCheck } from '../../dist/cli/oracle-check.js';
import type { TargetDomain } from '../../dist/domain/backend.js';
import { SimulatedGuest } from '../../dist/domain/sim/guest.js';
import { oracleDigest } from '../../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../../dist/domain/sim/config.js';
import type { VcpuState } from '../../dist/domain/sim/workload.js';
import type { MigrationReport } from '../../dist/precopy/report.js';
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

/** The source's vCPU states at its pause, and what the oracle says for the steps they ran. */
export interface SourceAtPause {
  atPause: VcpuState[];
  oracle: ReturnType<typeof oracleDigest>;
}

/**
 * Expects the digest the target reported for a completed migration to be what the oracle gives
 * for the steps `source` ran before it paused (the source stayed paused: `destroySource: false`).
 */
export function expectTargetDigestAtPause(report: MigrationReport, source: SimulatedGuest, config: SimGuestConfig): SourceAtPause {
  const atPause = source.vcpuStates();
  const oracle = oracleDigest(config, atPause.map((v) => v.steps));
  expect(report.targetDigest).toBe(oracle.digest);
  return { atPause, oracle };
}

/**
 * `expectTargetDigestAtPause`, then, after `settleMs` of running on, expects the guest the agent at
 * `agentUrl` resumed to have the memory and registers the oracle gives for the steps it has run.
 * Returns the source at its pause and the agent's check, for the caller's own expectations.
 */
export async function expectAgentGuestMatchesOracle(
  agentUrl: string,
  report: MigrationReport,
  source: SimulatedGuest,
  config: SimGuestConfig,
  settleMs = 200,
): Promise<SourceAtPause & { later: OracleCheck }> {
  const atPause = expectTargetDigestAtPause(report, source, config);
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const later = await checkAgainstOracle(agentUrl, report.migrationId, config);
  expect(later.memoryMatches).toBe(true);
  expect(later.registersMatch).toBe(true);
  return { ...atPause, later };
}
