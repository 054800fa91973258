// The memory digest and the batch checksum, recomputed from docs/protocol.md §5-§6 alone and
// compared with the engine's, plus the properties the spec promises of them.
import { xxh32 } from '@node-rs/xxhash';
import { describe, expect, it } from 'vitest';
import { batchChecksum, digestBuffer, hashPage, PageDigest, switchoverDigest } from '../dist/protocol/page-digest.js';
import { specChecksum } from './helpers/spec-checksum.js';

const PAGE = 4096;

function fmix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Number((BigInt(x) * 0x85ebca6bn) % 2n ** 32n);
  x = (x ^ (x >>> 13)) >>> 0;
  x = Number((BigInt(x) * 0xc2b2ae35n) % 2n ** 32n);
  return (x ^ (x >>> 16)) >>> 0;
}

/** §6 step by step, in BigInt arithmetic so that no shortcut of the engine's is shared. */
function specDigest(memory: Uint8Array): string {
  const zero = xxh32(new Uint8Array(PAGE), 0);
  let a = 0n;
  let b = 0n;
  for (let p = 0; p < memory.length / PAGE; p++) {
    const h = xxh32(memory.subarray(p * PAGE, (p + 1) * PAGE), 0);
    if (h === zero) continue;
    a += BigInt(fmix32((h ^ fmix32((p ^ 0x9e3779b9) >>> 0)) >>> 0));
    b += BigInt(fmix32(Number((BigInt(h) * 0x9e3779b1n + BigInt(fmix32((p ^ 0x7f4a7c15) >>> 0))) % 2n ** 32n)));
  }
  const hex = (v: bigint) => (v % 2n ** 32n).toString(16).padStart(8, '0');
  return hex(a) + hex(b);
}

/** Memory of `pages` pages: every third page zero, the others filled from a simple generator. */
function memoryOf(pages: number, salt: number): Uint8Array {
  const mem = new Uint8Array(pages * PAGE);
  let x = salt >>> 0 || 1;
  for (let p = 0; p < pages; p++) {
    if (p % 3 === 0) continue;
    for (let i = p * PAGE; i < (p + 1) * PAGE; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      mem[i] = x & 0xff;
      mem[i + 2] = (x >>> 16) & 0xff;
    }
  }
  return mem;
}

describe('memory digest', () => {
  it('is what the spec computes, and 0 for all-zero memory', () => {
    const mem = memoryOf(300, 7);
    expect(digestBuffer(mem, PAGE)).toBe(specDigest(mem));
    expect(digestBuffer(new Uint8Array(64 * PAGE), PAGE)).toBe('0000000000000000');
  });

  it('kept up to date page by page, equals the digest taken afresh', () => {
    const pages = 200;
    const mem = new Uint8Array(pages * PAGE);
    const digest = new PageDigest(pages, PAGE);
    const donor = memoryOf(pages, 3);
    // Writes, rewrites, back to zero, and a page written with the same contents twice.
    const script = [5, 9, 5, 150, 9, 199, 0, 5, 42, 42];
    script.forEach((pfn, step) => {
      const from = ((pfn + step * 17) % pages) * PAGE;
      if (step === 6) {
        mem.fill(0, 9 * PAGE, 10 * PAGE);
        digest.zero(9);
      } else {
        mem.set(donor.subarray(from, from + PAGE), pfn * PAGE);
        digest.update(pfn, mem, pfn * PAGE);
      }
      expect(digest.digest()).toBe(specDigest(mem));
    });
  });

  it('changes when one byte changes, and when two pages trade places', () => {
    const mem = memoryOf(64, 11);
    const before = digestBuffer(mem, PAGE);
    const flipped = mem.slice();
    flipped[20 * PAGE + 100]! ^= 1;
    expect(digestBuffer(flipped, PAGE)).not.toBe(before);

    const swapped = mem.slice();
    swapped.set(mem.subarray(1 * PAGE, 2 * PAGE), 2 * PAGE);
    swapped.set(mem.subarray(2 * PAGE, 3 * PAGE), 1 * PAGE);
    expect(digestBuffer(swapped, PAGE)).not.toBe(before);
  });
});

describe('batch checksum', () => {
  it('is XXH64 of the page hashes seeded with seq, as the spec computes it', () => {
    const raw = memoryOf(8, 5).subarray(PAGE, 7 * PAGE);
    const hashes = new Uint32Array(6).map((_, i) => hashPage(raw, i * PAGE, PAGE));
    expect(batchChecksum(hashes, 12)).toBe(specChecksum(raw, 12));
    expect(batchChecksum(new Uint32Array(0), 3)).toBe(specChecksum(new Uint8Array(0), 3));
  });

  it('catches a damaged page, a reordering and a replay under another seq', () => {
    const raw = memoryOf(5, 9).subarray(PAGE, 5 * PAGE);
    const sum = specChecksum(raw, 4);
    const damaged = raw.slice();
    damaged[2 * PAGE + 7]! ^= 0x80;
    expect(specChecksum(damaged, 4)).not.toBe(sum);
    const reordered = new Uint8Array(raw.length);
    reordered.set(raw.subarray(PAGE, 2 * PAGE), 0);
    reordered.set(raw.subarray(0, PAGE), PAGE);
    reordered.set(raw.subarray(2 * PAGE), 2 * PAGE);
    expect(specChecksum(reordered, 4)).not.toBe(sum);
    expect(specChecksum(raw, 5)).not.toBe(sum);
  });
});

it('the switchover digest folds the device state into the memory digest', () => {
  const state = new Uint8Array([1, 2, 3, 4]);
  const a = switchoverDigest('0123456789abcdef', state);
  expect(a).toMatch(/^[0-9a-f]{16}$/);
  expect(switchoverDigest('0123456789abcdee', state)).not.toBe(a);
  expect(switchoverDigest('0123456789abcdef', new Uint8Array([1, 2, 3, 5]))).not.toBe(a);
});
