/**
 * How a thread other than a guest's own reaches the guest's memory. `GuestMemory` is a plain
 * description that survives structured cloning, so it can be handed to a worker thread in
 * `workerData` or `postMessage`; `PageRunReader` is what a scanner reads pages through, in any
 * thread. The reader and writer over a description are in src/domain/guest-memory.ts; these types
 * sit below both the domain and the dirty-page scanner (src/dirtylog/hash-scan.ts), which must not
 * import a backend.
 */

/**
 * Where a guest's memory lives, for a thread that wants to read or write it directly.
 *
 * - `shared`: `byteLength` bytes at `byteOffset` of a SharedArrayBuffer (the simulated guest).
 * - `file`: `byteLength` bytes at `byteOffset` of a file that another process maps as guest RAM
 *   (QEMU's `memory-backend-file,share=on` under /dev/shm); read and written with positioned I/O.
 * - `none`: only the domain's own page hooks reach the memory.
 *
 * Guest page `pfn` is the `pageSize` bytes at `byteOffset + pfn * pageSize`.
 */
export type GuestMemory =
  | { readonly kind: 'shared'; readonly buffer: SharedArrayBuffer; readonly byteOffset: number; readonly byteLength: number }
  | { readonly kind: 'file'; readonly path: string; readonly byteOffset: number; readonly byteLength: number }
  | { readonly kind: 'none' };

/** Reads runs of consecutive guest pages; what a dirty-page scanner needs of guest memory. */
export interface PageRunReader {
  /** Bytes per page. */
  readonly pageSize: number;
  /** Pages in the memory. */
  readonly pageCount: number;
  /**
   * Pages `first` to `first + count - 1`, back to back: a view of guest memory itself where the
   * memory is in this process, otherwise a buffer of the reader's own filled by one read. Valid
   * until the next call on this reader; the caller must not keep or write it.
   */
  readRun(first: number, count: number): Uint8Array;
}
