// The source sorts each gathered batch in the page hasher's module: every page is flagged zero or
// not, exactly, and the data pages end up together, in order, byte for byte, whatever the page
// size, the count, the offset and where in a page its one non-zero byte lies.
import { expect, test } from 'vitest';
import { PageHasher } from '../dist/protocol/page-hasher.js';

/** Page i of a batch: zero, or zero but for one byte at a position that varies with i. */
function fillBatch(region: Buffer, offset: number, count: number, pageSize: number, seed: number): boolean[] {
  const zero: boolean[] = [];
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const isZero = x % 3 === 0;
    zero.push(isZero);
    region.fill(0, offset + i * pageSize, offset + (i + 1) * pageSize);
    if (isZero) continue;
    // First byte, last byte, the last 16 bytes, or anywhere.
    const at = [0, pageSize - 1, pageSize - 16 + (x % 16), (x >>> 8) % pageSize][i % 4]!;
    region[offset + i * pageSize + at] = 1 + (x % 255);
  }
  return zero;
}

test.each([16, 64, 4096])('pages of %i bytes: each count from 1 to 40, at odd offsets, are flagged and packed exactly', (pageSize) => {
  const hasher = new PageHasher(pageSize, { regionBytes: 48 * pageSize });
  expect(hasher.simd).toBe(true);
  const region = hasher.region;
  for (let count = 1; count <= 40; count++) {
    const offset = (count % 5) * 16;
    region.fill(0xee, 0, offset);
    const zero = fillBatch(region, offset, count, pageSize, count * 7919);
    const before = Buffer.from(region);
    const sorted = hasher.compactRegion(offset, count)!;
    const data = zero.map((z, i) => (z ? -1 : i)).filter((i) => i >= 0);
    expect(sorted.data, `count ${count}`).toBe(data.length);
    expect([...sorted.zeroFlags], `count ${count}`).toEqual(zero.map((z) => (z ? 1 : 0)));
    data.forEach((from, k) => {
      const moved = region.subarray(offset + k * pageSize, offset + (k + 1) * pageSize);
      expect(Buffer.compare(moved, before.subarray(offset + from * pageSize, offset + (from + 1) * pageSize)), `count ${count}, page ${from}`).toBe(0);
    });
    expect(region.subarray(0, offset).every((b) => b === 0xee)).toBe(true);
  }
});

test('a native hasher leaves the sorting to its caller, and pages outside the region are refused', () => {
  expect(new PageHasher(4096, { regionBytes: 8 * 4096, native: true }).compactRegion(0, 4)).toBeUndefined();
  const hasher = new PageHasher(4096, { regionBytes: 8 * 4096 });
  expect(hasher.compactRegion(0, 0)).toBeUndefined();
  expect(() => hasher.compactRegion(4096, 8)).toThrow(RangeError);
  expect(() => hasher.compactRegion(-16, 1)).toThrow(RangeError);
});
