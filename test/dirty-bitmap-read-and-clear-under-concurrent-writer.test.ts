import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { DirtyBitmap } from '../dist/dirtylog/dirty-bitmap.js';

describe('DirtyBitmap.readAndClear', () => {
  it('returns marked pages ascending, each once, across word boundaries', () => {
    const bitmap = DirtyBitmap.create(100); // last word holds pages 96..99 only
    for (const pfn of [99, 32, 31, 0, 63, 64, 32, 31, 96, 1]) bitmap.mark(pfn);
    expect(bitmap.count()).toBe(8);
    expect(bitmap.isDirty(31)).toBe(true);
    expect(bitmap.isDirty(30)).toBe(false);
    expect(Array.from(bitmap.readAndClear())).toEqual([0, 1, 31, 32, 63, 64, 96, 99]);
    expect(bitmap.readAndClear()).toHaveLength(0);
    expect(bitmap.count()).toBe(0);
  });

  it('markAll marks exactly the pages that exist, also in a partial last word', () => {
    const bitmap = DirtyBitmap.create(70);
    bitmap.markAll();
    expect(bitmap.count()).toBe(70);
    const pages = bitmap.readAndClear();
    expect(Array.from(pages)).toEqual(Array.from({ length: 70 }, (_, i) => i));
    expect(bitmap.isDirty(70)).toBe(false);
  });

  it('count finds marks at the edges of the spans it skips when clean, and nothing past the log', () => {
    // 8,192 pages a span; the log ends in a partial span, inside a larger buffer.
    const pageCount = 3 * 8192 + 100;
    const buffer = new SharedArrayBuffer(Math.ceil(pageCount / 32) * 4 + 64);
    new Uint8Array(buffer).fill(0xff, Math.ceil(pageCount / 32) * 4);
    const bitmap = DirtyBitmap.attach(buffer, pageCount);
    expect(bitmap.count()).toBe(0);
    const marks = [0, 8191, 8192, 16383, 2 * 8192 + 31, 3 * 8192, pageCount - 1];
    marks.forEach((pfn, i) => {
      bitmap.mark(pfn);
      expect(bitmap.count(), `after marking page ${pfn}`).toBe(i + 1);
    });
    expect(Array.from(bitmap.readAndClear())).toEqual(marks);
    expect(bitmap.count()).toBe(0);
  });

  it('handles bit 31 of a word (the sign bit of an Int32)', () => {
    const bitmap = DirtyBitmap.create(64);
    bitmap.mark(31);
    bitmap.mark(63);
    expect(Array.from(bitmap.readAndClear())).toEqual([31, 63]);
  });

  it('shares its marks with a bitmap attached to the same buffer', () => {
    const owner = DirtyBitmap.create(1000);
    const attached = DirtyBitmap.attach(owner.buffer, 1000);
    attached.mark(999);
    attached.mark(500);
    expect(Array.from(owner.readAndClear())).toEqual([500, 999]);
    expect(attached.count()).toBe(0);
    expect(() => DirtyBitmap.attach(new SharedArrayBuffer(4), 1000)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('agrees with a plain set for random marks', () => {
    const pageCount = 262144 - 5;
    const bitmap = DirtyBitmap.create(pageCount);
    const expected = new Set<number>();
    let x = 2463534242;
    for (let i = 0; i < 20000; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const pfn = (x >>> 0) % pageCount;
      expected.add(pfn);
      bitmap.mark(pfn);
    }
    const pages = bitmap.readAndClear();
    expect(Array.from(pages)).toEqual([...expected].sort((a, b) => a - b));
  });
});

// The writer runs as plain JavaScript in its own thread; it loads the compiled bitmap module.
const WRITER_SOURCE = `
const { workerData } = require('node:worker_threads');
import(workerData.bitmapUrl).then(({ DirtyBitmap }) => {
  const { pageCount } = workerData;
  const mem32 = new Int32Array(workerData.memory);
  const bitmap = DirtyBitmap.attach(workerData.dirty, pageCount);
  const control = new Int32Array(workerData.control);
  let x = 88172645;
  let writes = 0;
  while (Atomics.load(control, 0) === 0) {
    for (let k = 0; k < 64; k++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      // Half the writes go to 16 hot pages, so pages are often rewritten while being copied.
      const pfn = (x & 1) === 0 ? (x >>> 1) % 16 : (x >>> 1) % pageCount;
      writes++;
      mem32.fill(writes, pfn * 1024, pfn * 1024 + 1024);
      bitmap.mark(pfn);
    }
  }
  Atomics.store(control, 1, writes);
  Atomics.notify(control, 1);
});
`;

describe('read-and-clear while another thread writes then marks', () => {
  it('leaves a mirror equal to memory after a final read', async () => {
    const pageCount = 1000;
    const memory = new SharedArrayBuffer(pageCount * 4096);
    const mem = new Uint8Array(memory);
    const mirror = new Uint8Array(pageCount * 4096);
    const bitmap = DirtyBitmap.create(pageCount);
    const control = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(WRITER_SOURCE, {
      eval: true,
      workerData: {
        bitmapUrl: new URL('../dist/dirtylog/dirty-bitmap.js', import.meta.url).href,
        memory,
        dirty: bitmap.buffer,
        pageCount,
        control: control.buffer,
      },
    });
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    const copyDirty = (): number => {
      const pages = bitmap.readAndClear();
      for (const pfn of pages) mirror.set(mem.subarray(pfn * 4096, pfn * 4096 + 4096), pfn * 4096);
      return pages.length;
    };

    // Wait for the writer to start, then copy rounds for a while.
    while (bitmap.count() === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    let rounds = 0;
    let copied = 0;
    const until = performance.now() + 300;
    while (performance.now() < until) {
      copied += copyDirty();
      rounds++;
      if (rounds % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
    }

    Atomics.store(control, 0, 1);
    while (Atomics.load(control, 1) === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    await exited;
    const writes = Atomics.load(control, 1);
    copyDirty();

    expect(writes).toBeGreaterThan(10_000);
    expect(copied).toBeGreaterThan(100);
    expect(Buffer.compare(Buffer.from(mirror.buffer), Buffer.from(memory))).toBe(0);
  });
});
