/**
 * Turns a gathered batch into a `delta` payload against the {@link DeltaCache}'s slots, and
 * keeps the slots equal to what was sent. Used on the main thread (page-sender.ts) and in the
 * page channels' workers (channel-worker.ts) alike.
 */

import { writeDeltaEntry, writeFullEntry } from '../protocol/page-codec-delta.js';
import { hashPage } from '../protocol/page-digest.js';
import { hasBase, NO_SLOT, slotOf } from './delta-cache.js';

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
 * small enough, every other page whole. Every page with a slot is then copied into it, so the
 * slot holds what the target will hold.
 *
 * @param codes slot codes of the pages, in order ({@link DeltaCache.assign})
 * @param cache the cache's slots (`DeltaCache.data`)
 * @param out room for `deltaMaxPayloadBytes(count * pageSize)` bytes from `outOffset`
 */
export function encodeDeltaBatch(
  pages: Uint8Array,
  pagesOffset: number,
  count: number,
  codes: Int32Array,
  cache: Uint8Array,
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
      const next = writeDeltaEntry(cache, base, hashPage(cache, base, pageSize), pages, from, out, at, pageSize);
      if (next >= 0) {
        at = next;
        deltas++;
      } else at = writeFullEntry(pages, from, out, at, pageSize);
    } else at = writeFullEntry(pages, from, out, at, pageSize);
  }
  storeInSlots(pages, pagesOffset, count, codes, cache, pageSize);
  return { length: at - outOffset, deltas };
}

/** Copies each of `count` gathered pages that has a slot into it: what was sent, for the next delta. */
export function storeInSlots(pages: Uint8Array, pagesOffset: number, count: number, codes: Int32Array, cache: Uint8Array, pageSize: number): void {
  for (let i = 0; i < count; i++) {
    const code = codes[i]!;
    if (code === NO_SLOT) continue;
    const from = pagesOffset + i * pageSize;
    cache.set(pages.subarray(from, from + pageSize), slotOf(code) * pageSize);
  }
}
