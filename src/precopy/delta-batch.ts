/**
 * Turns a gathered batch into a `delta` payload against the {@link DeltaCache}'s slots, and
 * keeps the slots equal to what was sent. Used on the main thread (page-sender.ts) and in the
 * page channels' workers (channel-worker.ts) alike.
 */

import { writeDeltaEntry, writeFullEntry } from '../protocol/page-codec-delta.js';
import { type DeltaSlots, hasBase, NO_SLOT, slotOf } from './delta-cache.js';

/** What {@link encodeDeltaBatch} wrote. */
export interface DeltaBatch {
  /** Payload bytes. */
  length: number;
  /** Pages sent as deltas (the rest of the batch went whole). */
  deltas: number;
}

/** Whether any of the first `count` codes has a base: only then is a batch worth a `delta` payload. */
export function anyBase(codes: Int32Array, count: number): boolean {
  for (let i = 0; i < count; i++) if (hasBase(codes[i]!)) return true;
  return false;
}

/**
 * Writes the `delta` payload of `count` pages gathered back to back at `pagesOffset` of `pages`
 * into `out` at `outOffset`: each page with a base as a delta against its slot when that is
 * small enough, every other page whole. Every page with a slot is then copied into it with its
 * hash, so the slot holds what the target will hold.
 *
 * @param codes slot codes of the pages, in order ({@link DeltaCache.assign})
 * @param hashes the pages' hashes, in order
 * @param out room for `deltaMaxPayloadBytes(count * pageSize)` bytes from `outOffset`
 */
export function encodeDeltaBatch(
  pages: Uint8Array,
  pagesOffset: number,
  count: number,
  codes: Int32Array,
  hashes: Uint32Array,
  slots: DeltaSlots,
  out: Uint8Array,
  outOffset: number,
  pageSize: number,
): DeltaBatch {
  let at = outOffset;
  let deltas = 0;
  for (let i = 0; i < count; i++) {
    const code = codes[i]!;
    const from = pagesOffset + i * pageSize;
    if (hasBase(code)) {
      const base = slotOf(code) * pageSize;
      const next = writeDeltaEntry(slots.data, base, slots.hashes[slotOf(code)]!, pages, from, out, at, pageSize);
      if (next >= 0) {
        at = next;
        deltas++;
      } else at = writeFullEntry(pages, from, out, at, pageSize);
    } else at = writeFullEntry(pages, from, out, at, pageSize);
  }
  storeInSlots(pages, pagesOffset, count, codes, hashes, slots, pageSize);
  return { length: at - outOffset, deltas };
}

/**
 * Copies each of `count` gathered pages that has a slot into it, and its hash beside it: what
 * was sent, for the next delta. The copy is `Buffer.prototype.fill`'s memcpy (the slots are
 * shared memory, which `set` copies element by element).
 */
export function storeInSlots(pages: Uint8Array, pagesOffset: number, count: number, codes: Int32Array, hashes: Uint32Array, slots: DeltaSlots, pageSize: number): void {
  for (let i = 0; i < count; i++) {
    const code = codes[i]!;
    if (code === NO_SLOT) continue;
    const from = pagesOffset + i * pageSize;
    const to = slotOf(code) * pageSize;
    slots.data.fill(pages.subarray(from, from + pageSize), to, to + pageSize);
    slots.hashes[slotOf(code)] = hashes[i]!;
  }
}
