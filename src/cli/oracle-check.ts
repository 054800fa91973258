/**
 * Checks a simulated guest that now runs on a target agent against its replay oracle: the agent
 * pauses it a moment and reports its vCPU state and memory digest; replaying the workload from
 * the seed for the same number of steps must give exactly the same.
 */

import { queryAgent, type ConnectToAgentOptions } from '../agent/agent-client.js';
import type { ControlClient } from '../agent/control-client.js';
import type { SimGuestConfig } from '../domain/sim/config.js';
import { decodeSimState } from '../domain/sim/state-codec.js';
import { oracleDigest } from '../domain/sim/oracle.js';

/** The outcome of an oracle check. */
export interface OracleCheck {
  /** Steps each vCPU had executed when inspected. */
  steps: number[];
  /** The guest's memory digest equals the replay's. */
  memoryMatches: boolean;
  /** Every vCPU's registers and PRNG state equal the replay's. */
  registersMatch: boolean;
  /** Both. */
  matches: boolean;
  /** Agent-side state when asked. */
  state: string;
  /** Why the check could not be made (the agent could not be asked); `matches` is then false. */
  error?: { code: string; message: string };
}

/**
 * Inspects migration `migrationId` on the agent at `url` and replays `config` to compare.
 * `connect` carries the pool key and TLS settings the agent needs.
 */
export async function checkAgainstOracle(
  url: string,
  migrationId: string,
  config: SimGuestConfig,
  connect: ConnectToAgentOptions = {},
): Promise<OracleCheck> {
  const status = await queryAgent(url, migrationId, { ...connect, inspect: true });
  if (status.domainState === undefined || status.digest === undefined) {
    return { steps: [], memoryMatches: false, registersMatch: false, matches: false, state: status.state };
  }
  const vcpus = decodeSimState(status.domainState);
  const steps = vcpus.map((v) => v.steps);
  const oracle = oracleDigest(config, steps);
  const memoryMatches = oracle.digest === status.digest;
  const registersMatch = JSON.stringify(oracle.vcpus) === JSON.stringify(vcpus);
  return { steps, memoryMatches, registersMatch, matches: memoryMatches && registersMatch, state: status.state };
}

/** Inspects guest `guestId` on the host `client` reaches and replays `config` to compare. */
export async function checkHostGuestAgainstOracle(client: ControlClient, guestId: string, config: SimGuestConfig): Promise<OracleCheck> {
  const inspection = await client.inspectGuest(guestId);
  const vcpus = decodeSimState(Buffer.from(inspection.domainState, 'base64'));
  const steps = vcpus.map((v) => v.steps);
  const oracle = oracleDigest(config, steps);
  const memoryMatches = oracle.digest === inspection.digest;
  const registersMatch = JSON.stringify(oracle.vcpus) === JSON.stringify(vcpus);
  return { steps, memoryMatches, registersMatch, matches: memoryMatches && registersMatch, state: 'running' };
}
