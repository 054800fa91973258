/**
 * Whether a migration sends pages again as deltas (docs/protocol.md §5), and with how large a
 * cache: decided before `hello`, since the source offers versions 4 and 5 only when it may.
 *
 * `auto` turns deltas on behind a bandwidth cap only, and off again before round 1 if the pages
 * it sends again outnumber the cache's slots (the guest's working set does not fit): there the link sets the pace, and a page
 * that changed in a few places goes in a few dozen bytes instead of 4096. Without a cap the CPU
 * sets the pace on loopback, and the encoding's copies would cost more than the bytes saved
 * (docs/bench/README.md, "Delta encoding"). The cache takes what the memory bound leaves of a
 * tenth of guest RAM once everything else the source holds is counted; a cache that does not
 * fit, or would be too small to be worth it, turns deltas off.
 */

import { PAGES_HEADER_RESERVE_BYTES } from '../protocol/codec.js';
import { deltaCacheBytes, deltaCacheSlotsWithin, MIN_DELTA_CACHE_PAGES } from './delta-cache.js';

/** How `migrate()` decides on deltas: `auto` is on behind a bandwidth cap, off without. */
export type DeltaMode = 'auto' | 'on' | 'off';

/** Every {@link DeltaMode}, in the order a user is offered them. */
export const DELTA_MODES: readonly DeltaMode[] = ['auto', 'on', 'off'];

/** @see DeltaMode */
export const DEFAULT_DELTA_MODE: DeltaMode = 'auto';

/** Why deltas are off, when they are. */
export type DeltaOffReason =
  /** `delta: 'off'`, or `auto` without a bandwidth cap. */
  | 'not-asked'
  /** The cache asked for, or the smallest worth having, does not fit the memory bound. */
  | 'memory-bound'
  /** The target did not choose a version with deltas (it is older, or turned them off). */
  | 'target'
  /**
   * Under `auto`, the pages round 1 sends again (those the guest wrote during the full pass: its
   * working set) outnumbered the cache's slots: most pages would go whole after paying for the
   * encoding, and the cache would churn, so deltas were turned off then.
   */
  | 'cache-too-small';

/** The decision, before the target's answer. */
export type DeltaPlan = { on: true; slots: number } | { on: false; why: DeltaOffReason };

/** What the plan weighs. */
export interface DeltaPlanInput {
  mode: DeltaMode;
  /** The bandwidth cap, if any, in bytes per second. */
  capBytesPerSec: number | undefined;
  /** The cache asked for, in bytes; undefined for what the bound leaves. */
  cacheBytes: number | undefined;
  pageSize: number;
  pageCount: number;
  /** The memory bound in bytes. */
  boundBytes: number;
  /** What the source holds besides the cache at its peak (round 0's page list included), in bytes. */
  otherBytes: number;
  /** Bytes the senders add for deltas besides the cache (their encoding buffers). */
  bufferBytes: number;
}

/** Decides whether to send deltas and with how many cache slots. */
export function planDelta(input: DeltaPlanInput): DeltaPlan {
  const wanted = input.mode === 'on' || (input.mode === 'auto' && input.capBytesPerSec !== undefined);
  if (!wanted) return { on: false, why: 'not-asked' };
  const room = input.boundBytes - input.otherBytes - input.bufferBytes;
  const asked = input.cacheBytes === undefined ? undefined : Math.floor(input.cacheBytes / input.pageSize);
  const slots = asked ?? deltaCacheSlotsWithin(room, input.pageSize, input.pageCount);
  if (slots < MIN_DELTA_CACHE_PAGES || deltaCacheBytes(slots, input.pageSize, input.pageCount) > room) return { on: false, why: 'memory-bound' };
  return { on: true, slots: Math.min(slots, input.pageCount) };
}

/** What a page sender adds for deltas: a `delta` payload is a byte a page larger than the pages. */
export function deltaBufferBytes(buffers: number, dataPagesPerBatch: number, pageSize: number): number {
  return buffers * (PAGES_HEADER_RESERVE_BYTES + dataPagesPerBatch * (pageSize + 1));
}
