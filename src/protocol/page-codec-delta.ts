/**
 * Page encoding `delta` (docs/protocol.md §5): each data page of a batch goes either whole or as
 * the bytes that changed since the copy of it the target already holds, as QEMU's XBZRLE sends
 * pages again. Unlike the codecs of `page-codecs.ts`, decoding needs the pages the target holds
 * (the bases), so it is not a {@link PagePayloadCodec}: the receiver reads the bases and this
 * file checks, encodes and applies.
 *
 * A payload is one entry per data page, in the order of the `pages` list:
 *
 * - `0x00`, then the page's 4096 bytes: the page whole;
 * - `0x01`, the XXH32 of the base (u32 LE), the length `L` of the ops (u16 LE), then `L` bytes of
 *   ops: pairs of ULEB128 numbers `skip` and `count` (each at most 2 bytes, `count` at least 1),
 *   each pair followed by `count` bytes of the new page, written `skip` bytes after where the pair
 *   before ended (the page's start, for the first). Bytes no pair writes keep the base's value.
 *
 * Nothing here does I/O.
 */

import { DeltaBaseMismatchError, MalformedRecordError } from '../errors.js';
import { hashPage, type ReadPages, zeroPageHash } from './page-digest.js';
import { PAGE_SIZE_BYTES } from './page-size.js';

/** Entry tag of a page sent whole. */
export const DELTA_ENTRY_FULL = 0;
/** Entry tag of a page sent as its changes. */
export const DELTA_ENTRY_DELTA = 1;
/** Bytes of a delta entry before its ops: tag, base hash, ops length. */
export const DELTA_ENTRY_HEADER_BYTES = 7;
/**
 * The most ops bytes a delta entry may hold: half a page. A page that changed more is sent whole,
 * and an encoder stops as soon as it passes this, so a page that changed throughout costs little.
 */
export const MAX_DELTA_OPS_BYTES = PAGE_SIZE_BYTES / 2;

/** The most payload bytes a `delta` batch of `rawLength` bytes of pages takes: every page whole. */
export function deltaMaxPayloadBytes(rawLength: number): number {
  return rawLength + rawLength / PAGE_SIZE_BYTES;
}

function varintBytes(n: number): number {
  return n < 0x80 ? 1 : 2;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n;
    return at + 1;
  }
  out[at] = (n & 0x7f) | 0x80;
  out[at + 1] = n >>> 7;
  return at + 2;
}

/** Scratch pages for inputs that are not 4-byte aligned: copied here to be compared a word at a time. */
let scratch: { a: Int32Array; b: Int32Array } | undefined;

/** A word view of the page at `offset` of `bytes`, copied into `into` first if it is not aligned. */
function words(bytes: Uint8Array, offset: number, pageSize: number, into: Int32Array): Int32Array {
  const at = bytes.byteOffset + offset;
  if (at % 4 === 0) return new Int32Array(bytes.buffer, at, pageSize / 4);
  new Uint8Array(into.buffer, 0, pageSize).set(bytes.subarray(offset, offset + pageSize));
  return into;
}

/**
 * Writes the ops that turn `base` (at `baseOffset`) into `page` (at `pageOffset`) into `out` at
 * `outOffset`, and returns their length; or -1 once they would pass `maxBytes`, leaving the bytes
 * written so far in `out` as garbage. Pages are compared 4 bytes at a time; changed runs one word
 * apart are joined, which costs less than a new pair.
 */
export function encodeDeltaOps(
  base: Uint8Array,
  baseOffset: number,
  page: Uint8Array,
  pageOffset: number,
  out: Uint8Array,
  outOffset: number,
  maxBytes = MAX_DELTA_OPS_BYTES,
  pageSize = PAGE_SIZE_BYTES,
): number {
  const n = pageSize / 4;
  if (!scratch || scratch.a.length < n) scratch = { a: new Int32Array(n), b: new Int32Array(n) };
  const a = words(base, baseOffset, pageSize, scratch.a);
  const b = words(page, pageOffset, pageSize, scratch.b);
  const limit = outOffset + maxBytes;
  let o = outOffset;
  let ended = 0;
  let i = 0;
  for (;;) {
    while (i < n && a[i] === b[i]) i++;
    if (i >= n) break;
    const start = i++;
    for (;;) {
      while (i < n && a[i] !== b[i]) i++;
      // One unchanged word between two changed runs: carry it rather than start a new pair.
      if (i + 1 < n && a[i + 1] !== b[i + 1]) {
        i += 2;
        continue;
      }
      break;
    }
    const from = start * 4;
    const to = i * 4;
    const skip = from - ended;
    const count = to - from;
    if (o + varintBytes(skip) + varintBytes(count) + count > limit) return -1;
    o = writeVarint(out, o, skip);
    o = writeVarint(out, o, count);
    for (let k = pageOffset + from, end = pageOffset + to; k < end; k++) out[o++] = page[k]!;
    ended = to;
  }
  return o - outOffset;
}

/** Reads a ULEB128 of at most 2 bytes at `at`; returns value and next offset, or throws. */
function readVarint(ops: Uint8Array, at: number, end: number, what: string): [number, number] {
  if (at >= end) throw malformed(`its ops end inside a pair (${what} missing)`);
  const first = ops[at]!;
  if (first < 0x80) return [first, at + 1];
  if (at + 1 >= end) throw malformed(`its ops end inside the ${what} of a pair`);
  const second = ops[at + 1]!;
  if (second >= 0x80) throw malformed(`the ${what} of a pair is longer than 2 bytes`);
  return [(first & 0x7f) | (second << 7), at + 2];
}

function malformed(what: string): MalformedRecordError {
  return new MalformedRecordError(`malformed pages record: a delta page is malformed: ${what}`);
}

/**
 * Walks the ops at `ops[at, end)` and checks that every pair lies within a page; with `dst`,
 * also writes each run into the page at `dstOffset` of `dst`.
 *
 * @throws MalformedRecordError for ops that do not describe writes within one page.
 */
export function applyDeltaOps(ops: Uint8Array, at: number, end: number, dst?: Uint8Array, dstOffset = 0, pageSize = PAGE_SIZE_BYTES): void {
  let pos = 0;
  while (at < end) {
    let skip: number;
    let count: number;
    [skip, at] = readVarint(ops, at, end, 'skip');
    [count, at] = readVarint(ops, at, end, 'count');
    if (count === 0) throw malformed('a pair writes no bytes');
    pos += skip;
    if (pos + count > pageSize) throw malformed(`a pair writes bytes ${pos} to ${pos + count - 1}, past the page's ${pageSize}`);
    if (at + count > end) throw malformed(`a pair of ${count} bytes has only ${end - at} left in its entry`);
    if (dst) dst.set(ops.subarray(at, at + count), dstOffset + pos);
    pos += count;
    at += count;
  }
}

/**
 * Checks a `delta` payload's structure for a batch of `rawLength` bytes of pages, without the
 * bases: one well-formed entry per page, filling the payload exactly. Returns how many entries
 * are deltas.
 *
 * @throws MalformedRecordError naming what is wrong.
 */
export function checkDeltaPayload(payload: Uint8Array, rawLength: number, pageSize = PAGE_SIZE_BYTES): number {
  const pages = rawLength / pageSize;
  let at = 0;
  let deltas = 0;
  for (let i = 0; i < pages; i++) {
    if (at >= payload.length) throw malformed(`the payload ends after ${i} of ${pages} pages`);
    const tag = payload[at]!;
    if (tag === DELTA_ENTRY_FULL) {
      if (at + 1 + pageSize > payload.length) throw malformed(`whole page ${i} is cut short`);
      at += 1 + pageSize;
    } else if (tag === DELTA_ENTRY_DELTA) {
      if (at + DELTA_ENTRY_HEADER_BYTES > payload.length) throw malformed(`the header of delta page ${i} is cut short`);
      const length = payload[at + 5]! | (payload[at + 6]! << 8);
      if (length > MAX_DELTA_OPS_BYTES) throw malformed(`delta page ${i} has ${length} bytes of ops, over ${MAX_DELTA_OPS_BYTES}`);
      const from = at + DELTA_ENTRY_HEADER_BYTES;
      if (from + length > payload.length) throw malformed(`the ops of delta page ${i} are cut short`);
      applyDeltaOps(payload, from, from + length, undefined, 0, pageSize);
      at = from + length;
      deltas++;
    } else {
      throw malformed(`page ${i} has entry tag ${tag}; expected ${DELTA_ENTRY_FULL} (whole) or ${DELTA_ENTRY_DELTA} (delta)`);
    }
  }
  if (at !== payload.length) throw malformed(`${payload.length - at} bytes follow the last of its ${pages} pages`);
  return deltas;
}

/**
 * Decodes a checked `delta` payload into the batch's page data: whole pages are copied, and each
 * delta page is its base, read through `readPages` from what this side holds for page `pfns[i]`,
 * with the ops written over it. A base must hash to the hash the entry names and must not be the
 * zero page (a page this side lacks, or holds as zeros, has nothing to apply a delta to).
 *
 * @throws MalformedRecordError for a malformed payload; DeltaBaseMismatchError for a base that is not what the source had.
 */
export async function decodeDeltaPayload(payload: Uint8Array, rawLength: number, pfns: Uint32Array, readPages: ReadPages, seq: number): Promise<Uint8Array> {
  const pageSize = PAGE_SIZE_BYTES;
  const deltas = checkDeltaPayload(payload, rawLength, pageSize);
  const out = Buffer.allocUnsafe(rawLength);
  // The bases of the delta pages, read in one call, into their places in `out`.
  if (deltas > 0) {
    const basePfns = new Uint32Array(deltas);
    const bases = Buffer.allocUnsafe(deltas * pageSize);
    for (let i = 0, at = 0, d = 0; i < pfns.length; i++) {
      if (payload[at] === DELTA_ENTRY_DELTA) {
        basePfns[d++] = pfns[i]!;
        at += DELTA_ENTRY_HEADER_BYTES + (payload[at + 5]! | (payload[at + 6]! << 8));
      } else at += 1 + pageSize;
    }
    const read = readPages(basePfns, bases);
    if (read !== undefined) await read;
    for (let d = 0, i = 0, at = 0; i < pfns.length; i++) {
      if (payload[at] === DELTA_ENTRY_DELTA) {
        bases.copy(out, i * pageSize, d * pageSize, (d + 1) * pageSize);
        d++;
        at += DELTA_ENTRY_HEADER_BYTES + (payload[at + 5]! | (payload[at + 6]! << 8));
      } else at += 1 + pageSize;
    }
  }
  const zeroHash = zeroPageHash(pageSize);
  let at = 0;
  for (let i = 0; i < pfns.length; i++) {
    const to = i * pageSize;
    if (payload[at] === DELTA_ENTRY_FULL) {
      out.set(payload.subarray(at + 1, at + 1 + pageSize), to);
      at += 1 + pageSize;
      continue;
    }
    const named = (payload[at + 1]! | (payload[at + 2]! << 8) | (payload[at + 3]! << 16) | (payload[at + 4]! << 24)) >>> 0;
    const length = payload[at + 5]! | (payload[at + 6]! << 8);
    const held = hashPage(out, to, pageSize);
    if (held === zeroHash || held !== named) {
      throw new DeltaBaseMismatchError(
        `page ${pfns[i]} of batch ${seq} is a delta against a page with hash ${named.toString(16)}, but this side holds ` +
          (held === zeroHash ? 'no data for it (zeros)' : `contents with hash ${held.toString(16)}`),
      );
    }
    const from = at + DELTA_ENTRY_HEADER_BYTES;
    applyDeltaOps(payload, from, from + length, out, to, pageSize);
    at = from + length;
  }
  return out;
}

/** Writes a whole-page entry for the page at `pageOffset` of `page` into `out` at `at`; returns the next offset. */
export function writeFullEntry(page: Uint8Array, pageOffset: number, out: Uint8Array, at: number, pageSize = PAGE_SIZE_BYTES): number {
  out[at] = DELTA_ENTRY_FULL;
  out.set(page.subarray(pageOffset, pageOffset + pageSize), at + 1);
  return at + 1 + pageSize;
}

/**
 * Writes a delta entry for the page at `pageOffset` of `page` against `base` (whose hash is
 * `baseHash`) into `out` at `at`, if its ops fit {@link MAX_DELTA_OPS_BYTES}; returns the next
 * offset, or -1 when the page should go whole.
 */
export function writeDeltaEntry(
  base: Uint8Array,
  baseOffset: number,
  baseHash: number,
  page: Uint8Array,
  pageOffset: number,
  out: Uint8Array,
  at: number,
  pageSize = PAGE_SIZE_BYTES,
): number {
  const length = encodeDeltaOps(base, baseOffset, page, pageOffset, out, at + DELTA_ENTRY_HEADER_BYTES, MAX_DELTA_OPS_BYTES, pageSize);
  if (length < 0) return -1;
  out[at] = DELTA_ENTRY_DELTA;
  out[at + 1] = baseHash & 0xff;
  out[at + 2] = (baseHash >>> 8) & 0xff;
  out[at + 3] = (baseHash >>> 16) & 0xff;
  out[at + 4] = baseHash >>> 24;
  out[at + 5] = length & 0xff;
  out[at + 6] = length >>> 8;
  return at + DELTA_ENTRY_HEADER_BYTES + length;
}
