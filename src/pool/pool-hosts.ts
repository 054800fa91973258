/**
 * What an evacuation coordinator needs from the hosts of a pool, and nothing more. The host
 * agents' control API answers all of it (docs/api.md); an adapter over its client implements this
 * interface, and the tests use an in-memory pool. Keeping the coordinator on this seam lets it be
 * tested without processes and keeps `src/pool` free of HTTP.
 *
 * Hosts are named by their pool names (as `HostStatus.name` gives them).
 *
 * Contract for every implementation:
 * - every call settles: a host that does not answer within the implementation's deadline fails
 *   the call with `ERR_TIMEOUT`, one that cannot be reached with `ERR_CONNECT_FAILED`;
 * - failures are `MigrationError`s (src/errors.ts) with their codes: `ERR_NOT_FOUND` (no such host, guest or
 *   migration), `ERR_CONFLICT` (a guest already migrating, a second evacuation), and whatever
 *   code the host answered with.
 */

import type { GuestInfo, HostStatus, MigrateGuestRequest, MigrationInfo } from '../agent/control-types.js';

/** The hosts of a pool, as an evacuation coordinator calls them. */
export interface PoolHosts {
  /**
   * Every host of the pool that answered, with its capacity and reservations now. A host that
   * does not answer is left out: it can take no guest.
   */
  hosts(): Promise<HostStatus[]>;

  /** The guests on `host`, in every state (running, migrating in or out, paused). */
  guests(host: string): Promise<GuestInfo[]>;

  /**
   * Asks `host` to migrate its guest `guestId` to `req.to`. Answers as soon as the migration has
   * an id (usually `queued` or `running`); its end is learnt with {@link migration}.
   */
  migrate(host: string, guestId: string, req: MigrateGuestRequest): Promise<MigrationInfo>;

  /** How the migration `migrationId`, whose source is `host`, stands now. */
  migration(host: string, migrationId: string): Promise<MigrationInfo>;

  /**
   * Asks `host` to cancel its outgoing migration. A migration past its switchover decision
   * completes anyway (the engine's rule); the answer and later {@link migration} calls say how
   * it ended.
   */
  cancel(host: string, migrationId: string): Promise<MigrationInfo>;

  /** Enters (`on`) or leaves maintenance: a host in maintenance takes no new guests. */
  setMaintenance(host: string, on: boolean): Promise<HostStatus>;

  /**
   * Records on `host` that evacuation `evacuationId` is under way. Claiming again with the same
   * id succeeds (a coordinator resuming from its ledger); another id fails with `ERR_CONFLICT`
   * while the claim is held, so one host has one evacuation at a time.
   */
  claimEvacuation(host: string, evacuationId: string): Promise<void>;

  /** Drops the claim of `evacuationId` on `host`; `ERR_CONFLICT` if another id holds it. */
  releaseEvacuation(host: string, evacuationId: string): Promise<void>;

  /**
   * Optional: settles once the migration `migrationId` out of `host` has ended (a completed one
   * as soon as the guest runs on its target, before the source's check of its copy), for an
   * implementation that can tell without being asked (the coordinator running in the source's
   * own process). The coordinator then asks {@link migration} at once instead of at its next
   * poll; what that answers stays the outcome.
   */
  settled?(host: string, migrationId: string): Promise<void>;
}
