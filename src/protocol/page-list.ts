/**
 * Page lists (docs/protocol.md §3): page numbers as u32 little-endian entries in a byte string,
 * the form the `pages` and `zeros` fields of a `pages` record take.
 */

import { InvalidArgumentError, MalformedRecordError } from '../errors.js';
import { describeValue } from './field-checks.js';

/** Size of one page-number entry in a page list, in bytes (u32 little-endian). */
export const PAGE_NUMBER_BYTES = 4;

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Reads a page list into page numbers. When `bytes` is 4-byte aligned and the host is
 * little-endian the result is a view of the same memory; otherwise it is a copy. msgpackr's byte
 * strings often sit at odd offsets, so do not rely on either.
 *
 * @throws MalformedRecordError if the length is not a multiple of 4.
 */
export function readPageNumbers(bytes: Uint8Array): Uint32Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidArgumentError(`readPageNumbers expects a Uint8Array, got ${describeValue(bytes)}`);
  }
  if (bytes.length % PAGE_NUMBER_BYTES !== 0) {
    throw new MalformedRecordError(`a page list of ${bytes.length} bytes is not a multiple of ${PAGE_NUMBER_BYTES} bytes`);
  }
  const n = bytes.length / PAGE_NUMBER_BYTES;
  if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % PAGE_NUMBER_BYTES === 0) {
    return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  }
  const out = new Uint32Array(n);
  if (HOST_IS_LITTLE_ENDIAN) {
    // Unaligned: one copy into aligned memory.
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(i * PAGE_NUMBER_BYTES, true);
  return out;
}

/**
 * Writes page numbers as a page list: `count` u32 little-endian entries in a fresh buffer.
 *
 * @param pfns Page numbers; each an integer from 0 to 2^32 - 1.
 * @param count How many of `pfns` to write, from the start; @default pfns.length
 * @throws InvalidArgumentError if `count` is out of range or an entry is not a u32.
 */
export function writePageNumbers(pfns: Uint32Array | readonly number[], count: number = pfns.length): Uint8Array {
  if (!Number.isSafeInteger(count) || count < 0 || count > pfns.length) {
    throw new InvalidArgumentError(`writePageNumbers: count ${String(count)} is not within 0..${pfns.length}`);
  }
  const out = new Uint8Array(count * PAGE_NUMBER_BYTES);
  if (pfns instanceof Uint32Array) {
    if (HOST_IS_LITTLE_ENDIAN) {
      out.set(new Uint8Array(pfns.buffer, pfns.byteOffset, count * PAGE_NUMBER_BYTES));
      return out;
    }
    const view = new DataView(out.buffer);
    for (let i = 0; i < count; i++) view.setUint32(i * PAGE_NUMBER_BYTES, pfns[i]!, true);
    return out;
  }
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    const pfn = pfns[i];
    if (typeof pfn !== 'number' || !Number.isInteger(pfn) || pfn < 0 || pfn > 0xffffffff) {
      throw new InvalidArgumentError(`writePageNumbers: entry ${i} (${describeValue(pfn)}) is not a page number (0..2^32-1)`);
    }
    view.setUint32(i * PAGE_NUMBER_BYTES, pfn, true);
  }
  return out;
}
