/**
 * The guests a host keeps and the memory it has promised: what runs here (used), what incoming
 * migrations and starting guests have reserved, and what is left of the host's capacity. A guest
 * is counted from the moment it is reserved until it is destroyed here, so that two migrations
 * in flight can never together promise more than the host holds.
 */

import { randomUUID } from 'node:crypto';
import type { SourceDomain, TargetDomain } from '../domain/backend.js';
import { InsufficientCapacityError, NotFoundError } from '../errors.js';
import type { GuestInfo, GuestState, PauseEstimate } from './control-types.js';

/** One guest on this host. */
export interface HostGuest {
  /** Pool-wide id, kept across migrations. */
  readonly id: string;
  readonly name: string;
  readonly kind: string;
  readonly memoryBytes: number;
  readonly vcpus: number;
  readonly priority: number;
  readonly config: Record<string, unknown>;
  /**
   * The running domain: booted here, or received (a target domain that may also be a source).
   * A received guest whose target domain cannot be migrated out is replaced by its adopted
   * source domain when it first leaves (`HostAgentOptions.adopters`).
   */
  domain: SourceDomain | TargetDomain;
  /** Its serial log on this host, a file path, for a backend that writes one. */
  readonly console?: string;
  state: GuestState;
  /** When it started running here (ISO 8601). */
  since: string;
  /** The migration moving it away, while one does. */
  migrationId?: string;
  /**
   * The incoming migration that brought it here, while the target agent still holds it under
   * that id (for queries); released to the host before the guest moves on or stops.
   */
  arrivedBy?: string;
}

/** The guests of one host and its memory account. */
export class GuestRegistry {
  private readonly guests = new Map<string, HostGuest>();
  /**
   * Guests still leaving whose id a returning copy took over (A→B→A before A's first migration
   * reported): counted as used until destroyed, but no longer found by id.
   */
  private readonly leaving = new Set<HostGuest>();
  /** Memory promised and not yet running, by key (an incoming migration, a guest being started). */
  private readonly reservations = new Map<string, number>();

  constructor(readonly capacityBytes: number) {}

  /** Memory held by the guests here, in bytes. */
  get usedBytes(): number {
    let used = 0;
    for (const g of this.guests.values()) used += g.memoryBytes;
    for (const g of this.leaving) used += g.memoryBytes;
    return used;
  }

  /** Memory reserved by incoming migrations and guests being started, in bytes. */
  get reservedBytes(): number {
    let reserved = 0;
    for (const bytes of this.reservations.values()) reserved += bytes;
    return reserved;
  }

  /** Capacity less used and reserved memory, in bytes; never below 0. */
  get freeBytes(): number {
    return Math.max(0, this.capacityBytes - this.usedBytes - this.reservedBytes);
  }

  /** Guests here now. */
  get size(): number {
    return this.guests.size + this.leaving.size;
  }

  /**
   * Reserves `bytes` under `key`.
   * @throws InsufficientCapacityError if they do not fit in the free memory.
   */
  reserve(key: string, bytes: number, what: string): void {
    const free = this.freeBytes;
    if (bytes > free) {
      throw new InsufficientCapacityError(
        `this host cannot hold ${what} of ${bytes} bytes: ${free} of its ${this.capacityBytes} bytes are free ` +
          `(${this.usedBytes} used by guests, ${this.reservedBytes} reserved by migrations and starts in flight); ` +
          'choose another host, or free memory here',
      );
    }
    this.reservations.set(key, bytes);
  }

  /** Releases the reservation under `key`, if any. */
  unreserve(key: string): void {
    this.reservations.delete(key);
  }

  /** Adds a guest that runs here now. A returning guest whose older copy is still leaving takes its id over. */
  add(guest: HostGuest): HostGuest {
    const older = this.guests.get(guest.id);
    if (older !== undefined) {
      if (older.state !== 'migrating-out') {
        // The same id running twice would make every answer about it ambiguous: keep both, apart.
        return this.add({ ...guest, id: randomUUID() });
      }
      this.leaving.add(older);
    }
    this.guests.set(guest.id, guest);
    return guest;
  }

  /** Forgets `guest` (destroyed here, or gone to another host). */
  remove(guest: HostGuest): void {
    if (this.guests.get(guest.id) === guest) this.guests.delete(guest.id);
    this.leaving.delete(guest);
  }

  /** The guest with `id`, if it runs here. */
  find(id: string): HostGuest | undefined {
    return this.guests.get(id);
  }

  /**
   * The guest with `id`.
   * @throws NotFoundError if no guest here has it.
   */
  get(id: string): HostGuest {
    const guest = this.guests.get(id);
    if (guest === undefined) throw new NotFoundError(`no guest with id ${id} runs on this host`);
    return guest;
  }

  /** Every guest here, by id. */
  list(): HostGuest[] {
    return [...this.guests.values()];
  }

  /** Every guest here, those whose id a returning copy took over included. */
  all(): HostGuest[] {
    return [...this.guests.values(), ...this.leaving];
  }
}

/** A guest as the control API reports it, with its host's pause estimate if given. */
export function guestInfo(g: HostGuest, pauseEstimate?: PauseEstimate): GuestInfo {
  const info: GuestInfo = {
    id: g.id,
    name: g.name,
    kind: g.kind,
    memoryBytes: g.memoryBytes,
    vcpus: g.vcpus,
    state: g.state,
    since: g.since,
    priority: g.priority,
    config: g.config,
  };
  if (g.migrationId !== undefined) info.migrationId = g.migrationId;
  if (g.console !== undefined) info.console = g.console;
  if (pauseEstimate !== undefined) info.pauseEstimate = pauseEstimate;
  return info;
}

/** True if `domain` can also be migrated out (every source hook is there). */
export function isSourceDomain(domain: SourceDomain | TargetDomain): domain is SourceDomain {
  const d = domain as Partial<SourceDomain>;
  return (
    typeof d.enableDirtyLog === 'function' &&
    typeof d.disableDirtyLog === 'function' &&
    typeof d.readDirtyLog === 'function' &&
    typeof d.peekDirtyCount === 'function' &&
    typeof d.vcpuTimeMs === 'function' &&
    typeof d.setThrottle === 'function'
  );
}
