// The dirty-page scan spread over worker threads: the pages it names are exactly those whose
// contents changed from the recorded hashes, including the first and last page of every chunk a
// worker takes and the last page of memory, over shared and file memory alike; and its record
// writes the same hashes a scan in one thread does. Streamed chunk by chunk, it hands out the
// same pages in ascending runs of one chunk each, and a stream stopped early leaves the pool whole.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { HashScanner } from '../dist/dirtylog/hash-scan.js';
import { openGuestMemory, type GuestMemoryAccess } from '../dist/domain/guest-memory.js';
import { ScanPool } from '../dist/precopy/scan-pool.js';
import type { GuestMemory } from '../dist/util/guest-memory-types.js';

const PAGE = 4096;
/** Chunks of 64 pages: 15 whole chunks and a short one of 40, over 3 threads. */
const CHUNK = 64;
const PAGES = 15 * CHUNK + 40;

const dir = mkdtempSync(join(tmpdir(), 'livemig-scan-pool-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function memoryOf(kind: 'shared' | 'file', image: Uint8Array, name: string): GuestMemory {
  if (kind === 'shared') {
    const buffer = new SharedArrayBuffer(image.length);
    new Uint8Array(buffer).set(image);
    return { kind, buffer, byteOffset: 0, byteLength: image.length };
  }
  const path = join(dir, name);
  writeFileSync(path, image);
  return { kind, path, byteOffset: 0, byteLength: image.length };
}

/** Flips one byte of page `pfn` (at `at`), through `write`. */
/** Every run `pool.changedRuns` yields, checked to lie within one chunk of `chunkPages`. */
async function runsOf(pool: ScanPool, hashes: Uint32Array, chunkPages: number): Promise<number[][]> {
  const runs: number[][] = [];
  for await (const run of pool.changedRuns(hashes)) {
    expect(run.length).toBeGreaterThan(0);
    expect(Math.floor(run[0]! / chunkPages)).toBe(Math.floor(run[run.length - 1]! / chunkPages));
    runs.push([...run]);
  }
  return runs;
}

function flip(write: GuestMemoryAccess, pfn: number, at: number): void {
  const page = new Uint8Array(PAGE);
  write.readPages(Uint32Array.of(pfn), page);
  page[at] = page[at]! ^ 0x5a;
  write.writePages(Uint32Array.of(pfn), page);
}

describe.each(['shared', 'file'] as const)('over %s memory', (kind) => {
  test('names exactly the changed pages at every chunk boundary and the last page, as one thread would', async () => {
    const memory = memoryOf(kind, randomBytes(PAGES * PAGE), 'boundaries');
    const read = openGuestMemory(memory, PAGE);
    const write = openGuestMemory(memory, PAGE, { writable: true });
    const pool = new ScanPool(memory, PAGE, PAGES, { threads: 3, chunkPages: CHUNK });
    try {
      expect(pool.threads).toBe(3);
      const hashes = new Uint32Array(PAGES);
      await pool.record(hashes);
      const oneThread = new Uint32Array(PAGES);
      new HashScanner(read, oneThread).record();
      expect(hashes).toEqual(oneThread);
      expect([...(await pool.changedPages(hashes))]).toEqual([]);

      // First and last page of every chunk, and the last page of memory (in the short chunk).
      const changed = new Set<number>([PAGES - 1]);
      for (let first = 0; first < PAGES; first += CHUNK) changed.add(first).add(Math.min(first + CHUNK, PAGES) - 1);
      let i = 0;
      for (const pfn of changed) flip(write, pfn, i++ % 2 === 0 ? 0 : PAGE - 1);
      // Changed and changed back: the recorded contents again, so not a changed page.
      flip(write, 100, 7);
      flip(write, 100, 7);
      const expected = [...changed].sort((a, b) => a - b);
      const found = await pool.changedPages(hashes);
      expect([...found]).toEqual(expected);
      expect([...found]).toEqual([...new HashScanner(read, hashes).changedPages()]);
      // Streamed: one run per chunk, in memory order, the same pages in all.
      const runs = await runsOf(pool, hashes, CHUNK);
      expect(runs.length).toBe(Math.ceil(PAGES / CHUNK));
      expect(runs.flat()).toEqual(expected);
      // A stream stopped after its first run leaves the pool whole for the next scan.
      for await (const run of pool.changedRuns(hashes)) {
        expect([...run]).toEqual(runs[0]);
        break;
      }
      // The scan leaves the table as it was: the same pages again.
      expect([...(await pool.changedPages(hashes))]).toEqual(expected);
      await pool.record(hashes);
      expect([...(await pool.changedPages(hashes))]).toEqual([]);
    } finally {
      pool.close();
      read.close();
      write.close();
    }
  });
});

test('any memory size, chunk size, thread count and set of changed pages: exactly those pages', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 300 }).chain((pages) =>
        fc.record({
          pages: fc.constant(pages),
          chunkPages: fc.integer({ min: 1, max: 80 }),
          threads: fc.integer({ min: 1, max: 4 }),
          changed: fc.uniqueArray(fc.integer({ min: 0, max: pages - 1 }), { maxLength: 40 }),
        }),
      ),
      async ({ pages, chunkPages, threads, changed }) => {
        const memory = memoryOf('shared', randomBytes(pages * PAGE), 'unused');
        const write = openGuestMemory(memory, PAGE, { writable: true });
        const pool = new ScanPool(memory, PAGE, pages, { threads, chunkPages });
        try {
          const hashes = new Uint32Array(pages);
          await pool.record(hashes);
          for (const pfn of changed) flip(write, pfn, pfn % PAGE);
          const expected = [...changed].sort((a, b) => a - b);
          expect([...(await pool.changedPages(hashes))]).toEqual(expected);
          expect((await runsOf(pool, hashes, chunkPages)).flat()).toEqual(expected);
        } finally {
          pool.close();
          write.close();
        }
      },
    ),
    { numRuns: 25 },
  );
});

test('refuses a table of another size and use after close', async () => {
  const memory = memoryOf('shared', randomBytes(8 * PAGE), 'unused');
  const pool = new ScanPool(memory, PAGE, 8, { threads: 1 });
  await expect(pool.changedPages(new Uint32Array(7))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  pool.close();
  await expect(pool.changedPages(new Uint32Array(8))).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  expect(() => new ScanPool({ kind: 'none' }, PAGE, 8)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});
