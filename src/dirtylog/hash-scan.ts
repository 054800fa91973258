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
import { PageHasher } from '../protocol/page-hasher.js';
import type { PageRunReader } from '../util/guest-memory-types.js';

/** Pages read per call of the reader: 1 MiB of 4 KiB pages, one positioned read from a file. */
export const SCAN_RUN_PAGES = 256;

/** Compares guest pages with per-page hashes. */
export class HashScanner {
  /** Where a scan collects what it finds; as long as the largest range scanned so far. */
  private found = new Uint32Array(0);
  /** Hashes a run's pages in one go, and where it puts them. */
  private readonly hasher: PageHasher;
  private readonly runHashes = new Uint32Array(SCAN_RUN_PAGES);

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
    this.hasher = new PageHasher(reader.pageSize, { copyPages: SCAN_RUN_PAGES });
  }

  /**
   * The pages among `first` to `first + count - 1` whose contents hash differently from their
   * entry in `hashes`, ascending, in a new array. `hashes` is left as it is.
   */
  changedPages(first = 0, count = this.reader.pageCount - first): Uint32Array {
    if (this.found.length < count) this.found = new Uint32Array(count);
    const found = this.found;
    const hashes = this.hashes;
    let n = 0;
    for (let run = first; run < first + count; run += SCAN_RUN_PAGES) {
      const pages = Math.min(SCAN_RUN_PAGES, first + count - run);
      this.hasher.hashPages(this.reader.readRun(run, pages), 0, pages, this.runHashes);
      for (let i = 0; i < pages; i++) {
        if (this.runHashes[i] !== hashes[run + i]) found[n++] = run + i;
      }
    }
    return found.slice(0, n);
  }

  /** Records the current hash of pages `first` to `first + count - 1` in `hashes`. */
  record(first = 0, count = this.reader.pageCount - first): void {
    for (let run = first; run < first + count; run += SCAN_RUN_PAGES) {
      const pages = Math.min(SCAN_RUN_PAGES, first + count - run);
      this.hasher.hashPages(this.reader.readRun(run, pages), 0, pages, this.hashes, run);
    }
  }
}
