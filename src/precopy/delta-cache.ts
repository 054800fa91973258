/**
 * The source's cache of pages as last sent, which `delta` pages are encoded against
 * (docs/protocol.md §5): a fixed number of page slots in one SharedArrayBuffer, so that the page
 * channels' workers read and write the slots of the pages they are given while this thread alone
 * decides which page holds which slot.
 *
 * Why a base is always what the target holds: a slot is assigned to a page only when the page is
 * about to be sent, and the sender writes into it the very bytes that go out. Rounds do not
 * overlap (the next starts once the target has acknowledged every batch of the previous one, on
 * every channel), and a round names each page once, so a delta sent in round R is against
 * contents the target wrote in an earlier round. A slot assigned in the current round is never
 * taken from its page in that round, so no two senders touch one slot at once. Pages are cached
 * only from round 1 on: pages sent again are the ones worth keeping, and round 0 would copy all
 * of memory through the cache.
 */

import { InvalidArgumentError } from '../errors.js';

/** {@link DeltaCache.assign}'s answer for a page it gave no slot: the page goes whole. */
export const NO_SLOT = -1;

/** The fewest slots a cache worth having holds: 1 MiB of 4 KiB pages. */
export const MIN_DELTA_CACHE_PAGES = 256;

/** What a slot code says: the slot, and whether it holds the page's last-sent contents. */
export function slotOf(code: number): number {
  return code >> 1;
}

/** Whether a slot code (from {@link DeltaCache.assign}) has a base to encode against. */
export function hasBase(code: number): boolean {
  return code >= 0 && (code & 1) === 1;
}

/** Bytes of a slot's tables besides its page: its page, the round it was assigned in, its hash. */
const SLOT_TABLE_BYTES = 3 * 4;
/** Bytes of the table of each guest page's slot. */
const PAGE_TABLE_BYTES = 4;

/** Bytes a cache of `slots` slots holds for a guest of `pageCount` pages: slots and tables. */
export function deltaCacheBytes(slots: number, pageSize: number, pageCount: number): number {
  return slots * (pageSize + SLOT_TABLE_BYTES) + pageCount * PAGE_TABLE_BYTES;
}

/** Most slots a cache for a guest of `pageCount` pages may have within `bytes`, tables included. */
export function deltaCacheSlotsWithin(bytes: number, pageSize: number, pageCount: number): number {
  return Math.floor((bytes - pageCount * PAGE_TABLE_BYTES) / (pageSize + SLOT_TABLE_BYTES));
}

/** A cache's slots as one thread reads and writes them: their bytes, and the hash of each. */
export interface DeltaSlots {
  readonly data: Buffer;
  readonly hashes: Uint32Array;
}

/** Views of the slots of a cache (`DeltaCache.data` and `DeltaCache.hashes`), in this thread. */
export function deltaSlots(data: SharedArrayBuffer, hashes: SharedArrayBuffer): DeltaSlots {
  return { data: Buffer.from(data), hashes: new Uint32Array(hashes) };
}

/** A cache of `slots` pages of `pageSize` bytes for a guest of `pageCount` pages. */
export class DeltaCache {
  /** The slots' bytes: slot `s` is `pageSize` bytes at `s * pageSize`; readable from any thread. */
  readonly data: SharedArrayBuffer;
  /**
   * Per slot, the page hash of what it holds (a Uint32 each), written beside the bytes: a delta
   * names its base by this hash, which so costs no hashing of the slot.
   */
  readonly hashes: SharedArrayBuffer;
  readonly slots: number;
  /** Per page, its slot or -1. */
  private readonly slotOfPage: Int32Array;
  /** Per slot, its page or -1. */
  private readonly pageOfSlot: Int32Array;
  /** Per slot, the round it was last assigned in: not taken from its page in that round. */
  private readonly roundOfSlot: Int32Array;
  /** Where the search for a slot to reuse goes on (a clock hand over the slots). */
  private hand = 0;
  /** The round of the latest {@link assign}, and how many slots it has assigned: once all are, the search is skipped. */
  private round = -1;
  private assignedInRound = 0;

  constructor(
    slots: number,
    readonly pageSize: number,
    pageCount: number,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new InvalidArgumentError(`a delta cache needs at least one slot, got ${slots}`);
    this.slots = slots;
    this.data = new SharedArrayBuffer(slots * pageSize);
    this.hashes = new SharedArrayBuffer(slots * Uint32Array.BYTES_PER_ELEMENT);
    this.slotOfPage = new Int32Array(pageCount).fill(-1);
    this.pageOfSlot = new Int32Array(slots).fill(-1);
    this.roundOfSlot = new Int32Array(slots).fill(-1);
  }

  /** Bytes the cache holds: its slots and its tables. */
  get bytes(): number {
    return deltaCacheBytes(this.slots, this.pageSize, this.slotOfPage.length);
  }

  /**
   * Slot codes for `pfns`, about to be sent in `round`: `2 * slot + 1` for a page whose slot holds
   * what was last sent of it (encode against it, then write the new contents there), `2 * slot`
   * for a page given a fresh slot (send it whole and write it there), {@link NO_SLOT} for a page
   * left out (round 0, or every slot taken this round). Whoever sends the page must write the
   * bytes sent into its slot, or {@link drop} it.
   */
  assign(round: number, pfns: Uint32Array): Int32Array {
    const codes = new Int32Array(pfns.length).fill(NO_SLOT);
    if (round < 1) return codes;
    if (round !== this.round) {
      this.round = round;
      this.assignedInRound = 0;
    }
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      const held = this.slotOfPage[pfn]!;
      if (held >= 0) {
        if (this.roundOfSlot[held] !== round) this.assignedInRound++;
        this.roundOfSlot[held] = round;
        codes[i] = held * 2 + 1;
        continue;
      }
      // Every slot taken this round: the search would pass over all of them for nothing.
      if (this.assignedInRound >= this.slots) continue;
      const slot = this.freeSlot(round);
      if (slot < 0) continue;
      const old = this.pageOfSlot[slot]!;
      if (old >= 0) this.slotOfPage[old] = -1;
      this.slotOfPage[pfn] = slot;
      this.pageOfSlot[slot] = pfn;
      this.roundOfSlot[slot] = round;
      this.assignedInRound++;
      codes[i] = slot * 2;
    }
    return codes;
  }

  /** Forgets page `pfn` (it went as a zero page, or its slot was not written). */
  drop(pfn: number): void {
    const slot = this.slotOfPage[pfn]!;
    if (slot < 0) return;
    this.slotOfPage[pfn] = -1;
    this.pageOfSlot[slot] = -1;
  }

  /** Whether page `pfn` has a slot. */
  holds(pfn: number): boolean {
    return this.slotOfPage[pfn]! >= 0;
  }

  /** Page `pfn`'s slot, holding what was last sent of it, or -1. */
  slotFor(pfn: number): number {
    return this.slotOfPage[pfn]!;
  }

  /** A slot not assigned in `round`, found from the hand on, or -1 if every one was. */
  private freeSlot(round: number): number {
    for (let tried = 0; tried < this.slots; tried++) {
      const slot = this.hand;
      this.hand = (this.hand + 1) % this.slots;
      if (this.roundOfSlot[slot]! < round) return slot;
    }
    return -1;
  }
}
