/**
 * How a host starts a guest of a given backend kind (`POST /v1/guests`). Each kind has a
 * launcher; the simulated guest's is the default. A hypervisor backend adds its own beside it
 * (QEMU's is in qemu-guest-launcher.ts), and an adopter where a guest that arrived by migration
 * must be turned into one that can leave again.
 */

import type { SourceDomain, TargetDomain } from '../domain/backend.js';
import { DEFAULT_SIM_CONFIG, validateSimConfig, type SimGuestConfig } from '../domain/sim/config.js';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { InvalidArgumentError } from '../errors.js';
import type { StartGuestRequest } from './control-types.js';

/** A guest a launcher started: its running domain and the configuration it reports. */
export interface LaunchedGuest {
  domain: SourceDomain;
  config: Record<string, unknown>;
  /** The guest's serial log on this host, a file path, for a backend that writes one. */
  console?: string;
}

/**
 * Starts a guest of one kind from a start request, whose memory the host has already reserved.
 * Rejects with ERR_INVALID_ARGUMENT for a configuration the backend cannot run.
 */
export type GuestLauncher = (request: StartGuestRequest) => Promise<LaunchedGuest>;

/**
 * Turns a guest that arrived by migration and runs here (its target domain) into a source domain
 * the host can migrate onward; the source domain's `destroy()` also ends the target domain. Run
 * once, when the guest is first migrated out; a kind whose target domain is a source domain
 * already (the simulated guest) needs none.
 * @throws a MigrationError if the guest cannot be taken over; it then runs on as it was.
 */
export type GuestAdopter = (domain: TargetDomain) => Promise<SourceDomain>;

/**
 * The simulated guest: `config` may set `workload`, `dirtyRateBytesPerSec`, `hotSetBytes` and
 * `seed` (DEFAULT_SIM_CONFIG for the rest); `memoryBytes` and `vcpus` come from the request. A
 * hot set larger than the guest is cut to its size.
 */
export const launchSimGuest: GuestLauncher = async (request) => {
  const extra = request.config ?? {};
  for (const key of Object.keys(extra)) {
    if (!['workload', 'dirtyRateBytesPerSec', 'hotSetBytes', 'seed'].includes(key)) {
      throw new InvalidArgumentError(`a simulated guest's config has no field "${key}"; known: workload, dirtyRateBytesPerSec, hotSetBytes, seed`);
    }
  }
  const config = { ...DEFAULT_SIM_CONFIG, ...extra, memoryBytes: request.memoryBytes, vcpus: request.vcpus ?? 1 } as SimGuestConfig;
  if (extra.hotSetBytes === undefined) config.hotSetBytes = Math.min(config.hotSetBytes, config.memoryBytes);
  validateSimConfig(config);
  const domain = await SimulatedGuest.boot(config, request.name);
  return { domain, config: { ...domain.config } };
};

/** The launchers a host has when not told: the simulated guest only. */
export function defaultLaunchers(): Map<string, GuestLauncher> {
  return new Map([['sim', launchSimGuest]]);
}
