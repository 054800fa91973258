/**
 * Pre-faulting a target's fresh guest memory from a worker thread, while round 0 arrives.
 *
 * A page of fresh memory costs the thread that first writes it a kernel page fault (allocating
 * and zeroing the page): most of what writing received pages costs the target's engine thread.
 * A second thread that touches every page first moves that work off the engine's thread. It walks
 * memory in page order, as round 0 sends it, ahead of where pages land: told where the engine
 * writes, a walk that falls behind jumps ahead. A page it reaches after the engine wrote it is
 * left as it is (see `prefault-worker.ts` for why a page is never altered).
 *
 * The cost: every page is backed, zero pages included, which the engine would otherwise leave
 * unbacked (`zeroPages` skips pages that read as zeros).
 */

import type { Worker } from 'node:worker_threads';
import { InvalidArgumentError } from '../../errors.js';
import { ThreadKind } from '../../util/spare-threads.js';
import { PREFAULT_CONTROL_SLOTS, PREFAULT_PROGRESS, PREFAULT_STOP, PREFAULT_WRITTEN, type PrefaultWorkerData } from './prefault-control.js';

/**
 * Smallest guest memory worth a pre-fault thread, in bytes. Starting a thread costs the process
 * some 10-30 ms of CPU; faults cost about 0.45 ms per MiB, so below this it does not pay.
 */
export const PREFAULT_MIN_MEMORY_BYTES = 64 * 1024 * 1024;

/** Pre-fault threads started when asked for, with no spare. */
export const PREFAULT_THREADS = new ThreadKind(new URL('./prefault-worker.js', import.meta.url));

/** A running (or finished) walk over one memory. */
export class Prefault {
  /** Settles when the thread has ended, however it ended (never rejects). */
  readonly ended: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    private readonly flags: Int32Array,
    /** Pages in the memory walked. */
    readonly pageCount: number,
  ) {
    this.ended = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  }

  /**
   * Starts a thread that faults in the `byteLength` bytes at `byteOffset` of `memory`, one
   * `pageSize` page after the other from the first, and then ends. Returns at once. Throws
   * InvalidArgumentError if the range is not a whole number of 4-byte-aligned pages inside
   * `memory`. A thread that fails only leaves pages to be faulted where they are written. The
   * thread comes from `threads` (a spare, if it keeps one).
   */
  static start(memory: SharedArrayBuffer, byteOffset: number, byteLength: number, pageSize: number, threads = PREFAULT_THREADS): Prefault {
    const aligned = (n: number): boolean => Number.isSafeInteger(n) && n >= 0 && n % 4 === 0;
    if (!(aligned(byteOffset) && aligned(pageSize) && pageSize > 0 && aligned(byteLength) && byteLength % pageSize === 0 && byteOffset + byteLength <= memory.byteLength)) {
      throw new InvalidArgumentError(
        `cannot pre-fault ${byteLength} bytes at offset ${byteOffset} of a ${memory.byteLength}-byte memory in ${pageSize}-byte pages`,
      );
    }
    const control = new SharedArrayBuffer(PREFAULT_CONTROL_SLOTS * 4);
    const input: PrefaultWorkerData = { memory, byteOffset, byteLength, pageSize, control };
    const worker = threads.start(input);
    // A walk nobody stopped must not keep the process alive, nor take it down if it fails.
    worker.unref();
    worker.on('error', () => {});
    return new Prefault(worker, new Int32Array(control), byteLength / pageSize);
  }

  /** How far the walk has got: the page after the last one it faulted in (`pageCount` at the end). */
  get progress(): number {
    return Atomics.load(this.flags, PREFAULT_PROGRESS);
  }

  /**
   * Tells the walk that pages up to `end` (exclusive) were written: a walk behind that jumps
   * ahead of it. Costs one store; call it after each batch written in page order.
   */
  wrote(end: number): void {
    Atomics.store(this.flags, PREFAULT_WRITTEN, end);
  }

  /**
   * Tells the walk to stop at its next look at the flag (within about 0.1 ms of work). Returns at
   * once, costing the caller nothing; `ended` settles when the thread is gone. Idempotent.
   */
  stop(): void {
    Atomics.store(this.flags, PREFAULT_STOP, 1);
  }

  /** Stops the walk and resolves once its thread has ended. Idempotent. */
  async close(): Promise<void> {
    this.stop();
    await this.worker.terminate();
    await this.ended;
  }
}
