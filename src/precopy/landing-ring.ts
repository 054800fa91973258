/**
 * Slots in the page hasher's memory that incoming page batches land in, as a transport's
 * FrameLanding: a batch is then hashed where it landed, with no copy into the hasher and no
 * buffer of the transport's to collect afterwards. Slots are handed out in turn and come back in
 * the same order, once the frame in one has been dealt with (or a later one has: a frame the
 * transport dropped never comes back by itself). A frame that arrives with every slot taken, or
 * that is larger than a slot, lands in a buffer of the transport's, as without a ring.
 */

import type { FrameLanding } from '../transport/transport.js';

/** Frames smaller than this are never landed: control records, and batches of a few pages. */
export const LANDING_MIN_BYTES = 64 * 1024;

/** Room in a slot for a batch's frame prefix and header (its page lists), besides its pages. */
export const LANDING_HEADER_BYTES = 64 * 1024;

/**
 * Slots of a target's ring: a transport's default queue (32 MiB) of default batches (1 MiB of
 * pages and their header), plus the frame being read and the one being written.
 */
export const LANDING_SLOTS = 8;

export class LandingRing implements FrameLanding {
  readonly minBytes = LANDING_MIN_BYTES;
  readonly #slots: Uint8Array[];
  readonly #memory: ArrayBufferLike;
  /** The oldest slot still taken, and how many are taken from it on. */
  #head = 0;
  #taken = 0;
  /** Frames that landed in a slot, and frames offered when none was free. */
  landed = 0;
  missed = 0;

  /**
   * @param region Memory for the slots, at least `slots × slotBytes` long.
   * @param slotBytes Largest frame a slot holds.
   * @param slots How many frames may be landed and not yet dealt with at once.
   */
  constructor(region: Uint8Array, slotBytes: number, slots = LANDING_SLOTS) {
    this.#memory = region.buffer;
    this.#slots = Array.from({ length: slots }, (_, i) => region.subarray(i * slotBytes, (i + 1) * slotBytes));
  }

  /** Room a ring of `slots` slots of `slotBytes` needs. */
  static bytes(slotBytes: number, slots = LANDING_SLOTS): number {
    return slotBytes * slots;
  }

  claim(bytes: number): Uint8Array | undefined {
    const slots = this.#slots;
    if (bytes > slots[0]!.length) return undefined;
    if (this.#taken === slots.length) {
      this.missed++;
      return undefined;
    }
    const slot = slots[(this.#head + this.#taken) % slots.length]!;
    this.#taken++;
    this.landed++;
    return slot.subarray(0, bytes);
  }

  /**
   * Gives back the slot `frame` landed in, and every slot taken before it; a frame that did not
   * land here changes nothing.
   */
  release(frame: Uint8Array): void {
    if (frame.buffer !== this.#memory || this.#taken === 0) return;
    const slots = this.#slots;
    const first = slots[0]!;
    const index = Math.floor((frame.byteOffset - first.byteOffset) / first.length);
    if (index < 0 || index >= slots.length) return;
    const through = (index - this.#head + slots.length) % slots.length;
    if (through >= this.#taken) return;
    this.#head = (index + 1) % slots.length;
    this.#taken -= through + 1;
  }
}
