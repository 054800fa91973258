/**
 * The dirty log of a guest: one bit per page in shared memory, set by the vCPU threads after they
 * write a page and read-and-cleared by the migration engine once per round.
 *
 * Correctness rests on one ordering rule, kept by every writer: write the page first, mark it
 * second. The engine clears a word's bits (Atomics.exchange) before it copies the pages they
 * name, so a write that lands after the copy has started either is caught by the copy or sets its
 * bit again after the clear, and the page goes out once more in the next round. A writer that
 * marked first could have its bit cleared and its page copied before the data arrived, and the
 * update would be lost for good (see `test/dirty-write-before-mark-is-required.test.ts`).
 */

import { InvalidArgumentError } from '../errors.js';

const BITS_PER_WORD = 32;

/** Words of the log `count` compares with zeros at once: 1 KiB, 8,192 pages. */
const COUNT_SPAN_WORDS = 256;
const COUNT_CLEAN_SPAN = Buffer.alloc(COUNT_SPAN_WORDS * 4);

/** Largest page count a bitmap covers: page numbers travel as u32. */
const MAX_PAGE_COUNT = 2 ** 32 - 1;

/** Number of set bits in a 32-bit word. */
function popcount32(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

function checkPageCount(pageCount: number): void {
  if (!Number.isInteger(pageCount) || pageCount < 1 || pageCount > MAX_PAGE_COUNT) {
    throw new InvalidArgumentError(
      `dirty bitmap page count must be an integer from 1 to ${MAX_PAGE_COUNT}, got ${pageCount}`,
    );
  }
}

/** Bytes of shared memory a bitmap of `pageCount` pages needs (whole 32-bit words). */
export function dirtyBitmapBytes(pageCount: number): number {
  return Math.ceil(pageCount / BITS_PER_WORD) * 4;
}

/**
 * A dirty-page bitmap over a SharedArrayBuffer, usable from any number of threads at once.
 * Marking is lock-free (Atomics.or); reading is an atomic read-and-clear per 32-page word, so no
 * mark is ever lost between a read and a clear.
 */
export class DirtyBitmap {
  /** The shared memory holding the bits; hand it to a worker and `attach` there. */
  readonly buffer: SharedArrayBuffer;
  /** Pages covered; valid page numbers run from 0 to `pageCount - 1`. */
  readonly pageCount: number;

  private readonly words: Int32Array;
  /** The log as bytes, for `count`'s comparisons; made on first use. */
  private bytes: Buffer | undefined;
  /** Scratch for `readAndClear`: the words taken in the first pass, and their indices. */
  private readonly takenWords: Int32Array;
  private readonly takenIndices: Int32Array;

  private constructor(buffer: SharedArrayBuffer, pageCount: number) {
    this.buffer = buffer;
    this.pageCount = pageCount;
    const wordCount = dirtyBitmapBytes(pageCount) / 4;
    this.words = new Int32Array(buffer, 0, wordCount);
    this.takenWords = new Int32Array(wordCount);
    this.takenIndices = new Int32Array(wordCount);
  }

  /** A new bitmap with every page clean. */
  static create(pageCount: number): DirtyBitmap {
    checkPageCount(pageCount);
    return new DirtyBitmap(new SharedArrayBuffer(dirtyBitmapBytes(pageCount)), pageCount);
  }

  /** A view of an existing bitmap's shared memory, e.g. in a worker thread. */
  static attach(buffer: SharedArrayBuffer, pageCount: number): DirtyBitmap {
    checkPageCount(pageCount);
    if (buffer.byteLength < dirtyBitmapBytes(pageCount)) {
      throw new InvalidArgumentError(
        `dirty bitmap buffer of ${buffer.byteLength} bytes is too small for ${pageCount} pages ` +
          `(needs ${dirtyBitmapBytes(pageCount)})`,
      );
    }
    return new DirtyBitmap(buffer, pageCount);
  }

  /**
   * Marks page `pfn` dirty. Call it after the write to the page has completed, never before.
   * `pfn` must lie in `[0, pageCount)`; it is not checked, because this runs once per guest write.
   */
  mark(pfn: number): void {
    Atomics.or(this.words, pfn >>> 5, 1 << (pfn & 31));
  }

  /** Marks every page dirty. */
  markAll(): void {
    const words = this.words;
    const full = Math.floor(this.pageCount / BITS_PER_WORD);
    for (let i = 0; i < full; i++) Atomics.store(words, i, -1);
    const rest = this.pageCount % BITS_PER_WORD;
    if (rest !== 0) Atomics.or(words, full, (1 << rest) - 1);
  }

  /** Whether page `pfn` is marked, without clearing it. */
  isDirty(pfn: number): boolean {
    if (!(pfn >= 0 && pfn < this.pageCount)) return false;
    return (Atomics.load(this.words, pfn >>> 5) & (1 << (pfn & 31))) !== 0;
  }

  /**
   * Takes every mark: clears the bitmap word by word with Atomics.exchange and returns the page
   * numbers that were marked, ascending, each once. A mark set while this runs is either in the
   * result or stays set for the next call. The returned array belongs to the caller.
   *
   * Clean words are skipped with a plain read (a racing mark it misses stays set for next time),
   * so scanning a mostly clean 1 GiB guest (8192 words) costs a few microseconds.
   *
   * One reader per instance at a time (it reuses scratch arrays); other threads may mark freely.
   */
  readAndClear(): Uint32Array {
    const words = this.words;
    const takenWords = this.takenWords;
    const takenIndices = this.takenIndices;
    const wordCount = words.length;
    let taken = 0;
    let total = 0;
    for (let i = 0; i < wordCount; i++) {
      if (words[i] === 0) continue;
      const word = Atomics.exchange(words, i, 0);
      if (word === 0) continue;
      takenWords[taken] = word;
      takenIndices[taken] = i;
      taken++;
      total += popcount32(word);
    }
    const pages = new Uint32Array(total);
    let n = 0;
    for (let k = 0; k < taken; k++) {
      let word = takenWords[k]!;
      const base = takenIndices[k]! * BITS_PER_WORD;
      while (word !== 0) {
        const lowest = word & -word;
        pages[n++] = base + 31 - Math.clz32(lowest);
        word ^= lowest;
      }
    }
    return pages;
  }

  /**
   * Number of pages marked now, without clearing them; an estimate while writers mark. The engine
   * asks every few batches, so it must be cheap before the compiler has optimised it: clean spans
   * of the log are skipped by one native comparison each, and only the words of the others are
   * read (plain loads, each word whole).
   */
  count(): number {
    const words = this.words;
    const bytes = (this.bytes ??= Buffer.from(this.buffer, 0, words.length * 4));
    const clean = COUNT_CLEAN_SPAN;
    let total = 0;
    for (let from = 0; from < words.length; from += COUNT_SPAN_WORDS) {
      const to = Math.min(words.length, from + COUNT_SPAN_WORDS);
      const span = (to - from) * 4;
      if (bytes.compare(clean, 0, span, from * 4, from * 4 + span) === 0) continue;
      for (let i = from; i < to; i++) {
        const word = words[i]!;
        if (word !== 0) total += popcount32(word);
      }
    }
    return total;
  }

  /** Clears every mark. */
  clear(): void {
    const words = this.words;
    for (let i = 0; i < words.length; i++) Atomics.store(words, i, 0);
  }
}
