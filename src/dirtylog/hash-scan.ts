/**
 * Finding changed pages without help from the hypervisor: hash every page and compare the hash
 * with the one recorded for it (for the migration engine, the hash of what it last sent). This is
 * how a backend that keeps no dirty log is tracked, QEMU's RAM files read from outside QEMU for
 * one; it costs a read and an XXH32 of all of memory per scan, about 130 ms per GiB in memory.
 *
 * A page counts as changed when its hash differs, so a page written back to what was sent is not
 * sent again, and a change that keeps the hash (one chance in 2^32 per changed page) is missed;
 * the memory digest, built from the same hashes, cannot see such a miss either.
 *
 * The scanner touches memory only through a {@link PageRunReader}, so the same code runs in a
 * worker thread over a range of pages, each worker with its own reader.
 */

import { InvalidArgumentError } from '../errors.js';
import { hashPage } from '../protocol/page-digest.js';
import type { PageRunReader } from '../util/guest-memory-types.js';

/** Pages read per call of the reader: 1 MiB of 4 KiB pages, one positioned read from a file. */
export const SCAN_RUN_PAGES = 256;

/** Compares guest pages with per-page hashes. */
export class HashScanner {
  /** Where a scan collects what it finds; as long as the largest range scanned so far. */
  private found = new Uint32Array(0);

  /**
   * @param reader the guest memory
   * @param hashes the recorded hash of every page (`hashPage`), indexed by page number; read by
   *   `changedPages`, written by `record`. The scanner keeps the reference.
   */
  constructor(
    private readonly reader: PageRunReader,
    readonly hashes: Uint32Array,
  ) {
    if (hashes.length !== reader.pageCount) {
      throw new InvalidArgumentError(`a hash table of ${hashes.length} pages does not fit a memory of ${reader.pageCount} pages`);
    }
  }

  /**
   * The pages among `first` to `first + count - 1` whose contents hash differently from their
   * entry in `hashes`, ascending, in a new array. `hashes` is left as it is.
   */
  changedPages(first = 0, count = this.reader.pageCount - first): Uint32Array {
    if (this.found.length < count) this.found = new Uint32Array(count);
    const found = this.found;
    const hashes = this.hashes;
    const pageSize = this.reader.pageSize;
    let n = 0;
    for (let run = first; run < first + count; run += SCAN_RUN_PAGES) {
      const pages = Math.min(SCAN_RUN_PAGES, first + count - run);
      const bytes = this.reader.readRun(run, pages);
      for (let i = 0; i < pages; i++) {
        if (hashPage(bytes, i * pageSize, pageSize) !== hashes[run + i]) found[n++] = run + i;
      }
    }
    return found.slice(0, n);
  }

  /** Records the current hash of pages `first` to `first + count - 1` in `hashes`. */
  record(first = 0, count = this.reader.pageCount - first): void {
    const pageSize = this.reader.pageSize;
    for (let run = first; run < first + count; run += SCAN_RUN_PAGES) {
      const pages = Math.min(SCAN_RUN_PAGES, first + count - run);
      const bytes = this.reader.readRun(run, pages);
      for (let i = 0; i < pages; i++) this.hashes[run + i] = hashPage(bytes, i * pageSize, pageSize);
    }
  }
}
