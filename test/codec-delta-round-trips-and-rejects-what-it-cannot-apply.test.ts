// The `delta` page encoding (docs/protocol.md §5): batches of pages changed in random places
// round-trip through the encoder and the decoder against their bases; pages that changed too much
// go whole; any payload is either a well-formed batch or ERR_MALFORMED_RECORD; a delta whose base
// this side does not hold (other contents, or zeros) is ERR_DELTA_BASE_MISMATCH; and a side that
// did not offer deltas refuses them.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeFrame, encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../dist/protocol/codec.js';
import {
  checkDeltaPayload,
  decodeDeltaPayload,
  deltaMaxPayloadBytes,
  encodeDeltaOps,
  MAX_DELTA_OPS_BYTES,
} from '../dist/protocol/page-codec-delta.js';
import { decodePagesPayload } from '../dist/protocol/page-codecs.js';
import { batchChecksum, hashPage } from '../dist/protocol/page-digest.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import { DeltaCache, hasBase, NO_SLOT } from '../dist/precopy/delta-cache.js';
import { encodeDeltaBatch } from '../dist/precopy/delta-batch.js';

const PAGE = 4096;

/** `count` pages of seeded pseudo-random bytes (a page of zeros never, so every base is data). */
function randomPages(count: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(count * PAGE);
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** A reader of `memory` as a target's `readPages` is, page numbers being indices into it. */
function readerOf(memory: Uint8Array) {
  return (pfns: Uint32Array, dst: Uint8Array): void => {
    for (let i = 0; i < pfns.length; i++) dst.set(memory.subarray(pfns[i]! * PAGE, (pfns[i]! + 1) * PAGE), i * PAGE);
  };
}

async function codeOf(work: () => Promise<unknown> | unknown): Promise<string> {
  try {
    await work();
  } catch (err) {
    return (err as { code?: string }).code ?? `no code: ${String(err)}`;
  }
  return 'no error';
}

/** Encodes `pages` (new contents of pages 0..n-1) against `base` as the sender does: every page cached. */
function encodeAll(base: Uint8Array, pages: Uint8Array): Uint8Array {
  const count = pages.length / PAGE;
  const slots = { data: Buffer.from(base), hashes: Uint32Array.from({ length: count }, (_, i) => hashPage(base, i * PAGE, PAGE)) };
  const codes = Int32Array.from({ length: count }, (_, i) => i * 2 + 1);
  const hashes = Uint32Array.from({ length: count }, (_, i) => hashPage(pages, i * PAGE, PAGE));
  const out = new Uint8Array(deltaMaxPayloadBytes(pages.length));
  const { length } = encodeDeltaBatch(pages, 0, count, codes, hashes, slots, out, 0, PAGE);
  // The cache now holds what was sent, and the hash of each slot what it holds.
  expect(slots.data.equals(Buffer.from(pages))).toBe(true);
  expect([...slots.hashes]).toEqual([...hashes]);
  return out.subarray(0, length);
}

const writes = fc.array(fc.record({ page: fc.nat(7), at: fc.nat(PAGE - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }) }), { maxLength: 40 });

describe('round trips', () => {
  test('pages changed anywhere come back exactly, smaller than whole when they changed little', async () => {
    await fc.assert(
      fc.asyncProperty(writes, fc.integer(), async (changes, seed) => {
        const base = randomPages(8, seed);
        const pages = new Uint8Array(base);
        for (const w of changes) pages.set(w.bytes.subarray(0, PAGE - w.at), w.page * PAGE + w.at);
        const payload = encodeAll(base, pages);
        expect(payload.length).toBeLessThanOrEqual(deltaMaxPayloadBytes(pages.length));
        checkDeltaPayload(payload, pages.length);
        const decoded = await decodeDeltaPayload(payload, pages.length, Uint32Array.of(0, 1, 2, 3, 4, 5, 6, 7), readerOf(base), 0);
        expect(Buffer.from(decoded).equals(Buffer.from(pages))).toBe(true);
        if (changes.length === 0) expect(payload.length).toBe(8 * 7);
      }),
      { numRuns: 150 },
    );
  });

  test('one 64-byte write takes a delta of under 80 bytes; a page changed throughout goes whole', () => {
    const base = randomPages(2, 7);
    const pages = new Uint8Array(base);
    pages.set(randomPages(1, 99).subarray(0, 64), 640);
    pages.set(randomPages(1, 98), PAGE);
    const payload = encodeAll(base, pages);
    expect(payload[0]).toBe(1);
    const opsLength = payload[5]! | (payload[6]! << 8);
    expect(opsLength).toBeLessThan(80);
    expect(payload.length).toBe(7 + opsLength + 1 + PAGE);
    expect(payload[7 + opsLength]).toBe(0);
  });

  test('the ops stop at their bound, and an unaligned page encodes as an aligned one does', () => {
    const base = randomPages(1, 3);
    const page = randomPages(1, 4);
    expect(encodeDeltaOps(base, 0, page, 0, new Uint8Array(PAGE * 2), 0)).toBe(-1);
    const near = new Uint8Array(base);
    near[100] ^= 1;
    near[4000] ^= 1;
    const aligned = new Uint8Array(64);
    const alignedLength = encodeDeltaOps(base, 0, near, 0, aligned, 0);
    const shifted = new Uint8Array(PAGE + 3);
    shifted.set(near, 3);
    const unaligned = new Uint8Array(64);
    expect(encodeDeltaOps(base, 0, shifted, 3, unaligned, 0)).toBe(alignedLength);
    expect(unaligned).toEqual(aligned);
    expect(alignedLength).toBeLessThanOrEqual(MAX_DELTA_OPS_BYTES);
  });

  test('a delta batch travels in a pages frame and decodes through the receiver path', async () => {
    const base = randomPages(4, 11);
    const pages = new Uint8Array(base);
    pages[5] ^= 0xff;
    pages[PAGE * 3 + 7] ^= 0xff;
    const payload = encodeAll(base, pages);
    const buffer = new Uint8Array(PAGES_HEADER_RESERVE_BYTES + payload.length);
    buffer.set(payload, PAGES_HEADER_RESERVE_BYTES);
    const pfns = Uint32Array.of(0, 1, 2, 3);
    const hashes = Uint32Array.from({ length: 4 }, (_, i) => hashPage(pages, i * PAGE, PAGE));
    const header = { round: 2, seq: 9, pages: writePageNumbers(pfns), zeros: new Uint8Array(0), codec: 'delta' as const, rawLength: pages.length, checksum: batchChecksum(hashes, 9) };
    const frame = encodePagesInPlace(header, buffer, PAGES_HEADER_RESERVE_BYTES, payload.length);
    const record = decodeFrame(frame);
    expect(record.type === 'pages' && record.codec).toBe('delta');
    if (record.type !== 'pages') return;
    const raw = await decodePagesPayload(record, { pfns, readPages: readerOf(base) });
    expect(Buffer.from(raw).equals(Buffer.from(pages))).toBe(true);
    // A side that did not offer deltas (version 2 or 3) has no bases to give, and refuses.
    expect(await codeOf(() => decodePagesPayload(record))).toBe('ERR_MALFORMED_RECORD');
  });
});

describe('rejections', () => {
  test('any payload is a well-formed batch or ERR_MALFORMED_RECORD, in the frame decoder too', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 3 * (PAGE + 1) }), fc.integer({ min: 1, max: 3 }), async (payload, count) => {
        const code = await codeOf(() => checkDeltaPayload(payload, count * PAGE));
        expect(['no error', 'ERR_MALFORMED_RECORD']).toContain(code);
        const buffer = new Uint8Array(PAGES_HEADER_RESERVE_BYTES + payload.length);
        buffer.set(payload, PAGES_HEADER_RESERVE_BYTES);
        const pfns = Uint32Array.from({ length: count }, (_, i) => i);
        const header = { round: 1, seq: 0, pages: writePageNumbers(pfns), zeros: new Uint8Array(0), codec: 'delta' as const, rawLength: count * PAGE, checksum: '0000000000000000' };
        const framed = await codeOf(() => decodeFrame(encodePagesInPlace(header, buffer, PAGES_HEADER_RESERVE_BYTES, payload.length)));
        expect(framed).toBe(code);
      }),
      { numRuns: 300 },
    );
  });

  test.each([
    ['an unknown entry tag', [2]],
    ['a whole page cut short', [0, 1, 2, 3]],
    ['a delta header cut short', [1, 0, 0]],
    ['ops longer than the bound', [1, 0, 0, 0, 0, 0x01, 0x08]],
    ['ops past the payload', [1, 0, 0, 0, 0, 3, 0, 0, 1]],
    ['a pair that writes nothing', [1, 0, 0, 0, 0, 2, 0, 0, 0]],
    ['a pair past the page', [1, 0, 0, 0, 0, 5, 0, 0xff, 0x1f, 2, 1, 1]],
    ['a varint of 3 bytes', [1, 0, 0, 0, 0, 4, 0, 0x80, 0x80, 0x01, 1]],
    ['bytes after the last page', [1, 0, 0, 0, 0, 0, 0, 9]],
  ])('%s is ERR_MALFORMED_RECORD', async (_, bytes) => {
    expect(await codeOf(() => checkDeltaPayload(Uint8Array.from(bytes), PAGE))).toBe('ERR_MALFORMED_RECORD');
  });

  test('a delta against contents this side does not hold, or against a page it lacks, is ERR_DELTA_BASE_MISMATCH', async () => {
    const base = randomPages(1, 5);
    const page = new Uint8Array(base);
    page[10] ^= 1;
    const payload = encodeAll(base, page);
    const other = randomPages(1, 6);
    expect(await codeOf(() => decodeDeltaPayload(payload, PAGE, Uint32Array.of(0), readerOf(other), 0))).toBe('ERR_DELTA_BASE_MISMATCH');
    expect(await codeOf(() => decodeDeltaPayload(payload, PAGE, Uint32Array.of(0), readerOf(new Uint8Array(PAGE)), 0))).toBe('ERR_DELTA_BASE_MISMATCH');
    // Even a delta that names the zero page's hash is refused: there is nothing held to apply it to.
    const zeros = new Uint8Array(PAGE);
    const changed = new Uint8Array(PAGE);
    changed[1] = 1;
    const onZeros = encodeAll(zeros, changed);
    expect(await codeOf(() => decodeDeltaPayload(onZeros, PAGE, Uint32Array.of(0), readerOf(zeros), 0))).toBe('ERR_DELTA_BASE_MISMATCH');
  });
});

describe('the cache of pages as sent', () => {
  test('round 0 caches nothing; a page keeps its slot; a slot assigned this round is never taken this round', () => {
    const cache = new DeltaCache(2, PAGE, 10);
    expect([...cache.assign(0, Uint32Array.of(1, 2))]).toEqual([NO_SLOT, NO_SLOT]);
    const first = cache.assign(1, Uint32Array.of(1, 2, 3));
    expect([...first].map(hasBase)).toEqual([false, false, false]);
    expect(first[2]).toBe(NO_SLOT);
    const second = cache.assign(2, Uint32Array.of(2));
    expect(hasBase(second[0]!)).toBe(true);
    expect(second[0]! >> 1).toBe(first[1]! >> 1);
    // Page 3 takes page 1's slot (not used in round 2); page 4 finds none free in round 2.
    const third = cache.assign(2, Uint32Array.of(3, 4));
    expect(third[0]! >> 1).toBe(first[0]! >> 1);
    expect(third[1]).toBe(NO_SLOT);
    expect(cache.holds(1)).toBe(false);
    cache.drop(3);
    expect(cache.holds(3)).toBe(false);
    expect(cache.bytes).toBe(2 * PAGE + 2 * 4 + 10 * 4 + 2 * 8);
  });
});
