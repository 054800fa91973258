/**
 * Entry point of the pre-fault thread (see `prefault.ts`): walks guest memory from the first page
 * to the last, making the kernel back each page, jumping ahead of the writer when it falls behind,
 * and ends when it reaches the end or is told to stop.
 *
 * Each page is faulted in by an atomic compare-exchange of its first 32-bit word from 0 to 0. On
 * a fresh page the word is 0, the exchange stores, and so the kernel allocates the page (a load
 * would only map the shared zero page); x86's locked cmpxchg stores even when the compare fails.
 * Yet it never changes a byte: it stores only the value it read, and no other store to the word
 * can land between its read and its store (a locked instruction on x86; on ARM a compare-and-swap,
 * or a store-exclusive that fails and retries if the word was written meanwhile), so a page the engine or a channel
 * worker wrote keeps its contents whichever comes first.
 */

import { threadInput } from '../../util/spare-threads.js';
import { PREFAULT_PROGRESS, PREFAULT_STOP, PREFAULT_WRITTEN, type PrefaultWorkerData } from './prefault-control.js';

/** Pages faulted between two looks at the control block: about 0.1 ms of work. */
const CHECK_EVERY_PAGES = 64;

/**
 * How far ahead of the writer a walk that fell behind it starts again, in pages: 8 MiB, some
 * 5 ms of round 0. Faulting pages right beside the writer would only contend with it for the same
 * page-table lock; the pages jumped over are faulted by the writer, as without a walk.
 */
const LEAD_PAGES = 2048;

const { memory, byteOffset, byteLength, pageSize, control } = await threadInput<PrefaultWorkerData>();
const words = new Int32Array(memory, byteOffset, byteLength / 4);
const flags = new Int32Array(control);
const wordsPerPage = pageSize / 4;
const pageCount = byteLength / pageSize;

let first = 0;
while (first < pageCount && Atomics.load(flags, PREFAULT_STOP) === 0) {
  const written = Atomics.load(flags, PREFAULT_WRITTEN);
  if (first < written) first = Math.min(pageCount, written + LEAD_PAGES);
  const end = Math.min(pageCount, first + CHECK_EVERY_PAGES);
  for (let page = first; page < end; page++) Atomics.compareExchange(words, page * wordsPerPage, 0, 0);
  first = end;
  Atomics.store(flags, PREFAULT_PROGRESS, end);
}
