import { compressSync } from 'lz4-napi';
import { describe, expect, it } from 'vitest';
import { fillImage, fillPage, pageKind } from '../dist/domain/sim/index.js';

const MiB = 1024 * 1024;
const PAGE = 4096;

describe('the initial memory image', () => {
  const seed = 1;
  const memory = new Uint8Array(new SharedArrayBuffer(32 * MiB));
  fillImage(memory, seed);
  const pageCount = memory.length / PAGE;
  const page = (pfn: number) => memory.subarray(pfn * PAGE, pfn * PAGE + PAGE);

  it('is about 40% zero, 40% text and 20% random pages', () => {
    const counts = { zero: 0, text: 0, random: 0 };
    for (let pfn = 0; pfn < pageCount; pfn++) counts[pageKind(seed, pfn)]++;
    expect(counts.zero / pageCount).toBeCloseTo(0.4, 1);
    expect(Math.abs(counts.zero / pageCount - 0.4)).toBeLessThan(0.02);
    expect(Math.abs(counts.text / pageCount - 0.4)).toBeLessThan(0.02);
    expect(Math.abs(counts.random / pageCount - 0.2)).toBeLessThan(0.02);
  });

  it('has zero pages exactly where pageKind says, and no others', () => {
    const zero = Buffer.alloc(PAGE);
    for (let pfn = 0; pfn < pageCount; pfn++) {
      const isZero = zero.equals(page(pfn));
      expect(isZero).toBe(pageKind(seed, pfn) === 'zero');
    }
  });

  it('compresses text pages 2-3x with lz4, and random pages not at all', () => {
    let textIn = 0;
    let textOut = 0;
    let randomIn = 0;
    let randomOut = 0;
    for (let pfn = 0; pfn < 4000; pfn++) {
      const kind = pageKind(seed, pfn);
      if (kind === 'zero') continue;
      const compressed = compressSync(Buffer.from(memory.buffer, pfn * PAGE, PAGE)).length;
      if (kind === 'text') {
        textIn += PAGE;
        textOut += compressed;
      } else {
        randomIn += PAGE;
        randomOut += compressed;
      }
    }
    expect(textIn / textOut).toBeGreaterThan(1.8);
    expect(textIn / textOut).toBeLessThan(3.2);
    expect(randomIn / randomOut).toBeLessThan(1.01);
  });

  it('builds any single page the same as the whole image, at any offset', () => {
    const dst = new Uint8Array(PAGE + 3).fill(0xee);
    for (let pfn = 0; pfn < 600; pfn++) {
      fillPage(seed, pfn, dst, 3);
      expect(Buffer.from(dst.subarray(3)).equals(Buffer.from(page(pfn)))).toBe(true);
      fillPage(seed, pfn, dst, 0);
      expect(Buffer.from(dst.subarray(0, PAGE)).equals(Buffer.from(page(pfn)))).toBe(true);
    }
  });

  it('depends on the seed alone', () => {
    const again = new Uint8Array(4 * MiB);
    fillImage(again, seed);
    expect(Buffer.from(again).equals(Buffer.from(memory.subarray(0, 4 * MiB)))).toBe(true);
    const other = new Uint8Array(4 * MiB);
    fillImage(other, seed + 1);
    expect(Buffer.from(other).equals(Buffer.from(again))).toBe(false);
  });

  it('refuses a memory that is not whole pages', () => {
    expect(() => fillImage(new Uint8Array(PAGE + 1), seed)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });
});
