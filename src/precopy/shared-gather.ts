/**
 * Gathering a batch straight out of guest memory that lies in this process (a SharedArrayBuffer):
 * each page is tested for zero where it lies, and only data pages are copied, back to back, into
 * the batch buffer, a run of consecutive pages in one copy. Through `readPages` every page, zero
 * pages included, is copied first, tested in the batch buffer and the data pages moved down over
 * the zero ones: up to three passes over a page where this makes one.
 *
 * A page tested while the guest writes it may be sent as zero though it no longer is, or its copy
 * may be torn: the write marks it dirty, and a later round sends it again. Its hash is taken from
 * the copy, so batch checksums always describe what is sent.
 */

import { PageOutOfRangeError } from '../errors.js';
import type { GuestMemory } from '../util/guest-memory-types.js';

type SharedMemory = Extract<GuestMemory, { kind: 'shared' }>;

export class SharedPageGather {
  private readonly mem: Buffer;
  private readonly words: Int32Array;
  private readonly zero: Buffer;
  private readonly pageCount: number;
  private readonly wordsPerPage: number;

  private constructor(
    private readonly memory: SharedMemory,
    private readonly pageSize: number,
  ) {
    this.mem = Buffer.from(memory.buffer, memory.byteOffset, memory.byteLength);
    this.words = new Int32Array(memory.buffer, memory.byteOffset, memory.byteLength >>> 2);
    this.zero = Buffer.alloc(pageSize);
    this.pageCount = Math.floor(memory.byteLength / pageSize);
    this.wordsPerPage = pageSize >>> 2;
  }

  /**
   * A gather over `memory` if it is shared memory this thread can test in place (4-byte aligned
   * pages), else undefined. `previous` is returned again when it covers the same memory.
   */
  static over(memory: GuestMemory, pageSize: number, previous?: SharedPageGather): SharedPageGather | undefined {
    if (memory.kind !== 'shared' || pageSize % 4 !== 0 || memory.byteOffset % 4 !== 0) return undefined;
    const m = previous?.memory;
    if (m && m.buffer === memory.buffer && m.byteOffset === memory.byteOffset && m.byteLength === memory.byteLength) return previous;
    return new SharedPageGather(memory, pageSize);
  }

  /**
   * Sorts the pages `pfns`: each zero page's number goes to `zeroPfns` from `zeroAt`; each data
   * page is copied into `dst` from `dstOffset`, back to back, and its number goes to `dataPfns`
   * from `dataAt`. Returns how many data pages were copied (the rest were zero). Throws
   * PageOutOfRangeError for a page beyond the memory; pages before it are sorted already.
   */
  gather(pfns: Uint32Array, dst: Buffer, dstOffset: number, dataPfns: Uint32Array, dataAt: number, zeroPfns: Uint32Array, zeroAt: number): number {
    const { mem, words, zero, pageSize: ps, wordsPerPage: wpp } = this;
    let data = 0;
    let zeros = 0;
    // The run of data pages not copied yet: its first page and length.
    let runFirst = 0;
    let runPages = 0;
    let runTo = dstOffset;
    for (let k = 0; k < pfns.length; k++) {
      const pfn = pfns[k]!;
      if (pfn >= this.pageCount) {
        if (runPages > 0) dst.fill(mem.subarray(runFirst * ps, (runFirst + runPages) * ps), runTo, runTo + runPages * ps);
        throw new PageOutOfRangeError(`page ${pfn} lies outside the guest's ${this.pageCount} pages`);
      }
      const w = pfn * wpp;
      // A data page nearly always shows itself in its first or last word, without a call.
      if (words[w] === 0 && words[w + wpp - 1] === 0 && mem.compare(zero, 0, ps, pfn * ps, pfn * ps + ps) === 0) {
        zeroPfns[zeroAt + zeros++] = pfn;
        continue;
      }
      if (runPages > 0 && pfn === runFirst + runPages) {
        runPages++;
      } else {
        if (runPages > 0) dst.fill(mem.subarray(runFirst * ps, (runFirst + runPages) * ps), runTo, runTo + runPages * ps);
        runFirst = pfn;
        runPages = 1;
        runTo = dstOffset + data * ps;
      }
      dataPfns[dataAt + data++] = pfn;
    }
    if (runPages > 0) dst.fill(mem.subarray(runFirst * ps, (runFirst + runPages) * ps), runTo, runTo + runPages * ps);
    return data;
  }
}
