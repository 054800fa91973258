/**
 * What the pre-fault thread shares with the thread that started it: a control block of two Int32
 * slots, and the memory it walks.
 */

/** Slot the starter sets to 1 to make the walk stop at its next look (every 64 pages). */
export const PREFAULT_STOP = 0;
/** Slot where the walk stores how far it has got: the page after the last one it faulted in. */
export const PREFAULT_PROGRESS = 1;
/**
 * Slot where the starter stores the page after the last one the engine wrote: where pages land
 * now. A walk that finds itself behind it jumps ahead rather than fault pages beside the writer.
 */
export const PREFAULT_WRITTEN = 2;
/** Int32 slots in the control block. */
export const PREFAULT_CONTROL_SLOTS = 3;

/** What the pre-fault thread is started with (its first message). */
export interface PrefaultWorkerData {
  /** The memory to walk. */
  memory: SharedArrayBuffer;
  /** Where in `memory` the walk starts, in bytes; a multiple of 4. */
  byteOffset: number;
  /** Bytes to walk: a whole number of pages. */
  byteLength: number;
  /** Bytes per page; a multiple of 4. */
  pageSize: number;
  /** The control block, {@link PREFAULT_CONTROL_SLOTS} Int32 slots. */
  control: SharedArrayBuffer;
}
