/**
 * The memory digest both sides compare before the target may resume. It is built from one
 * xxh32 hash per page (so either side can keep it up to date page by page as pages are sent or
 * written) and summarised as xxh3-64 over the table of page hashes, written as 16 hex digits.
 *
 * Two different guests' memories give the same digest only if a page hash collides, about one
 * chance in 2^32 per differing page; it is a guard against bugs and corruption, not an attacker.
 */

import { xxh32, xxh3 } from '@node-rs/xxhash';

const ZERO_PAGE = new Uint8Array(4096);

/** Hash of one page of `pageSize` bytes at `offset` in `src`. */
export function hashPage(src: Uint8Array, offset: number, pageSize: number): number {
  return xxh32(src.subarray(offset, offset + pageSize), 0);
}

/** Hash of an all-zero page of the given size. */
export function zeroPageHash(pageSize: number): number {
  return xxh32(pageSize === ZERO_PAGE.length ? ZERO_PAGE : new Uint8Array(pageSize), 0);
}

/** A table of per-page hashes, kept up to date as pages change. */
export class PageDigest {
  /** The hash of every page, indexed by page number. */
  readonly hashes: Uint32Array;
  readonly pageSize: number;
  private readonly zeroHash: number;

  /** Starts with every page zero, as freshly allocated guest memory is. */
  constructor(pageCount: number, pageSize: number) {
    this.pageSize = pageSize;
    this.hashes = new Uint32Array(pageCount);
    this.zeroHash = zeroPageHash(pageSize);
    this.hashes.fill(this.zeroHash);
  }

  /** Records page `pfn` as holding the `pageSize` bytes at `offset` in `src`. */
  update(pfn: number, src: Uint8Array, offset: number): void {
    this.hashes[pfn] = hashPage(src, offset, this.pageSize);
  }

  /** Records page `pfn` as all zeros. */
  zero(pfn: number): void {
    this.hashes[pfn] = this.zeroHash;
  }

  /** The digest of the whole memory, 16 hex digits. */
  digest(): string {
    const bytes = new Uint8Array(this.hashes.buffer, this.hashes.byteOffset, this.hashes.byteLength);
    return hex16(xxh3.xxh64(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)));
  }
}

/**
 * Digest of a whole memory read page by page through `copyPage` (a domain's, or an oracle's).
 * Reads every page once; about 150 ms per GiB on one core.
 */
export function digestMemory(
  pageCount: number,
  pageSize: number,
  copyPage: (pfn: number, dst: Uint8Array, dstOffset: number) => void,
): string {
  const digest = new PageDigest(pageCount, pageSize);
  const chunkPages = 256;
  const chunk = new Uint8Array(chunkPages * pageSize);
  for (let first = 0; first < pageCount; first += chunkPages) {
    const count = Math.min(chunkPages, pageCount - first);
    for (let i = 0; i < count; i++) copyPage(first + i, chunk, i * pageSize);
    for (let i = 0; i < count; i++) digest.update(first + i, chunk, i * pageSize);
  }
  return digest.digest();
}

/** Digest of a memory image held in one buffer. */
export function digestBuffer(memory: Uint8Array, pageSize: number): string {
  const pageCount = Math.floor(memory.length / pageSize);
  const digest = new PageDigest(pageCount, pageSize);
  for (let pfn = 0; pfn < pageCount; pfn++) digest.update(pfn, memory, pfn * pageSize);
  return digest.digest();
}

/**
 * The checksum a `pages` record carries: xxh3-64 of its page data before compression, seeded
 * with the batch's sequence number (so a batch replayed in another place fails it), as 16 hex digits.
 */
export function batchChecksum(raw: Uint8Array, seq: number): string {
  return hex16(xxh3.xxh64(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), BigInt(seq)));
}

/**
 * The digest `complete` and `prepared` carry: the memory digest with the device-state blob folded
 * in, so that a state damaged on the way (which may still decode) is caught before "go" just as
 * damaged memory is.
 */
export function switchoverDigest(memoryDigest: string, state: Uint8Array): string {
  const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
  return hex16(xxh3.xxh64(bytes, BigInt(`0x${memoryDigest}`)));
}

function hex16(hash: bigint): string {
  return hash.toString(16).padStart(16, '0');
}
