// The pre-fault walk over a target's fresh memory races the engine's writes of received pages and
// never alters one: here it walks a large shared memory while this thread writes known patterns
// into its pages in a scrambled order, as the engine and page-channel workers do, and afterwards
// every byte of every page is what was written (or still zero where nothing was).
import { expect, test } from 'vitest';
import { Prefault } from '../dist/domain/sim/prefault.js';

const PAGE = 4096;
const MiB = 1024 * 1024;

/** Byte `i` of page `pfn`'s pattern; byte 0 (the word the walk exchanges) is never zero. */
function patternByte(pfn: number, i: number): number {
  return i === 0 ? (pfn % 255) + 1 : (pfn * 31 + i * 7 + (i >> 8)) & 0xff;
}

function pattern(pfn: number): Uint8Array {
  const page = new Uint8Array(PAGE);
  for (let i = 0; i < PAGE; i++) page[i] = patternByte(pfn, i);
  return page;
}

/** A permutation of 0..n-1 from a small seeded generator, so that a failure replays. */
function scrambled(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let x = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const j = x % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}

test('pages written while the walk runs keep every byte, and pages never written stay zero', async () => {
  const bytes = 256 * MiB;
  const pageCount = bytes / PAGE;
  const memory = new SharedArrayBuffer(bytes);
  const mem = Buffer.from(memory);
  // Three pages in four are written, as a guest whose zero pages are never written.
  const order = scrambled(pageCount, 19);
  const written = order.subarray(0, (pageCount * 3) >> 2);
  const patterns = Array.from({ length: 251 }, (_, k) => pattern(k));

  const walk = Prefault.start(memory, 0, bytes, PAGE);
  let aheadOfWalk = 0;
  for (let k = 0; k < written.length; k++) {
    const pfn = written[k]!;
    if (pfn >= walk.progress) aheadOfWalk++;
    mem.set(patterns[pfn % 251]!, pfn * PAGE);
    // A page keyed by its own number too, so that a page landing on the wrong page shows.
    mem.writeUInt32LE(pfn, pfn * PAGE + 4);
  }
  await walk.ended;

  // The walk covered all memory, and raced the writes: many pages were written before it came.
  expect(walk.progress).toBe(pageCount);
  expect(aheadOfWalk).toBeGreaterThan(1000);

  const isWritten = new Uint8Array(pageCount);
  for (const pfn of written) isWritten[pfn] = 1;
  const zero = Buffer.alloc(PAGE);
  let wrong = 0;
  let firstWrong = -1;
  for (let pfn = 0; pfn < pageCount; pfn++) {
    const want = Buffer.from(isWritten[pfn] ? patterns[pfn % 251]! : zero);
    if (isWritten[pfn]) want.writeUInt32LE(pfn, 4);
    if (mem.compare(want, 0, PAGE, pfn * PAGE, (pfn + 1) * PAGE) !== 0) {
      wrong++;
      if (firstWrong < 0) firstWrong = pfn;
    }
  }
  expect({ wrong, firstWrong }).toEqual({ wrong: 0, firstWrong: -1 });
});

test('a walk closed midway ends its thread, and a range outside the memory is refused', async () => {
  const memory = new SharedArrayBuffer(512 * MiB);
  const walk = Prefault.start(memory, 0, memory.byteLength, PAGE);
  let ended = false;
  void walk.ended.then(() => (ended = true));
  await walk.close();
  expect(ended).toBe(true);
  await walk.close();
  expect(() => Prefault.start(memory, 4096, memory.byteLength, PAGE)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  expect(() => Prefault.start(memory, 0, 4096 * 3 + 4, PAGE)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});
