/**
 * The hosts of a pool as an evacuation coordinator calls them (`PoolHosts`), over each host's
 * control API (`ControlClient`, docs/api.md). Membership comes from a `PoolStore` (host names and
 * control URLs), read afresh on every call, so that a pool file edited while an evacuation runs is
 * seen by its next step.
 *
 * Hosts are named by their pool names: a host's status is reported under the name the pool gives
 * it, and a migration's target, sent to the source as the target's URL, is reported back under
 * the target's pool name. Every call settles: a host that cannot be reached fails it with
 * ERR_CONNECT_FAILED, one that does not answer in time with ERR_TIMEOUT, a name the pool does not
 * know with ERR_NOT_FOUND, and a host's refusal with the host's own code.
 */

import { ControlClient, DEFAULT_CONTROL_TIMEOUT_MS } from '../agent/control-client.js';
import { migrationUrlOf } from '../agent/control-requests.js';
import type { GuestInfo, HostStatus, MigrateGuestRequest, MigrationInfo } from '../agent/control-types.js';
import { NotFoundError } from '../errors.js';
import type { TlsConnectOptions } from '../transport/tls.js';
import type { PoolHosts } from './pool-hosts.js';
import type { PoolMember, PoolStore } from './pool-store.js';

/** Longest wait for one host's status in `hosts()`, in milliseconds: a slower host is left out. */
export const DEFAULT_POOL_STATUS_TIMEOUT_MS = 5_000;

/** Options of {@link ControlPoolHosts}. */
export interface ControlPoolHostsOptions {
  /** The pool key: every request is signed and every answer checked. @default none (hosts without a key) */
  key?: Uint8Array;
  /** Trust for `https://` hosts. @default the system's CAs */
  tls?: TlsConnectOptions;
  /** Deadline of each call. @default DEFAULT_CONTROL_TIMEOUT_MS */
  timeoutMs?: number;
  /** Deadline of each host's status in `hosts()`. @default DEFAULT_POOL_STATUS_TIMEOUT_MS */
  statusTimeoutMs?: number;
}

/** `PoolHosts` over the control API of the hosts a pool store lists. */
export class ControlPoolHosts implements PoolHosts {
  readonly #store: PoolStore;
  readonly #options: ControlPoolHostsOptions;

  constructor(store: PoolStore, options: ControlPoolHostsOptions = {}) {
    this.#store = store;
    this.#options = options;
  }

  async hosts(): Promise<HostStatus[]> {
    const members = await this.#store.list();
    const timeoutMs = this.#options.statusTimeoutMs ?? DEFAULT_POOL_STATUS_TIMEOUT_MS;
    const answers = await Promise.allSettled(members.map((m) => this.#client(m, timeoutMs).host()));
    const statuses: HostStatus[] = [];
    answers.forEach((answer, i) => {
      if (answer.status === 'fulfilled') statuses.push({ ...answer.value, name: members[i]!.name });
    });
    return statuses;
  }

  async guests(host: string): Promise<GuestInfo[]> {
    return (await this.#clientOf(host)).guests();
  }

  async migrate(host: string, guestId: string, req: MigrateGuestRequest): Promise<MigrationInfo> {
    const members = await this.#store.list();
    const source = this.#client(member(members, host));
    const target = members.find((m) => m.name === req.to);
    const info = await source.migrateGuest(guestId, { ...req, to: target?.url ?? req.to });
    return named(info, members);
  }

  async migration(host: string, migrationId: string): Promise<MigrationInfo> {
    const members = await this.#store.list();
    return named(await this.#client(member(members, host)).migration(migrationId), members);
  }

  async cancel(host: string, migrationId: string): Promise<MigrationInfo> {
    const members = await this.#store.list();
    return named(await this.#client(member(members, host)).cancelMigration(migrationId), members);
  }

  async setMaintenance(host: string, on: boolean): Promise<HostStatus> {
    return { ...(await (await this.#clientOf(host)).setMaintenance(on)), name: host };
  }

  async claimEvacuation(host: string, evacuationId: string): Promise<void> {
    await (await this.#clientOf(host)).claimEvacuation(evacuationId);
  }

  async releaseEvacuation(host: string, evacuationId: string): Promise<void> {
    await (await this.#clientOf(host)).releaseEvacuation(evacuationId);
  }

  async #clientOf(host: string): Promise<ControlClient> {
    return this.#client(member(await this.#store.list(), host));
  }

  #client(m: PoolMember, timeoutMs = this.#options.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS): ControlClient {
    return new ControlClient(m.url, { key: this.#options.key, tls: this.#options.tls, timeoutMs });
  }
}

/** @throws NotFoundError if the pool has no host of that name. */
function member(members: readonly PoolMember[], name: string): PoolMember {
  const found = members.find((m) => m.name === name);
  if (found === undefined) throw new NotFoundError(`the pool has no host named "${name}"; it has ${members.map((m) => m.name).join(', ') || 'none'}`);
  return found;
}

/** The migration with its target under its pool name, when the pool knows its URL. */
function named(info: MigrationInfo, members: readonly PoolMember[]): MigrationInfo {
  let url: string;
  try {
    url = migrationUrlOf(info.to);
  } catch {
    return info;
  }
  const target = members.find((m) => migrationUrlOf(m.url) === url);
  return target === undefined ? info : { ...info, to: target.name };
}
