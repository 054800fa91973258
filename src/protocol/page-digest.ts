/**
 * The hashes of the migration stream (docs/protocol.md §5 and §6), all built on one XXH32 hash per
 * page, which each side computes once per page it sends or writes:
 *
 * - a batch's checksum is XXH64 over the hashes of its data pages, so no second pass over the
 *   page data is needed on either side;
 * - the memory digest is a sum over pages of a 64-bit mix of (page number, page hash), kept up to
 *   date page by page, so taking it in the pause costs the same for 256 MiB as for 4 GiB.
 *
 * Two different memories give the same digest only if a page hash collides, about one chance in
 * 2^32 per differing page; it is a guard against bugs and corruption, not an attacker.
 */

import { xxh32, xxh64 } from '@node-rs/xxhash';
import { PageHasher } from './page-hasher.js';

const ZERO_PAGE = new Uint8Array(4096);

/** Hash of one page of `pageSize` bytes at `offset` in `src`: XXH32, seed 0. */
export function hashPage(src: Uint8Array, offset: number, pageSize: number): number {
  return xxh32(src.subarray(offset, offset + pageSize), 0);
}

/** Hash of an all-zero page of the given size. */
export function zeroPageHash(pageSize: number): number {
  return xxh32(pageSize === ZERO_PAGE.length ? ZERO_PAGE : new Uint8Array(pageSize), 0);
}

/** MurmurHash3's 32-bit finaliser: a bijection on u32 that spreads every input bit. */
function fmix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Keys of the two lanes of the memory digest (docs/protocol.md §6). */
const LANE_A_KEY = 0x9e3779b9;
const LANE_B_KEY = 0x7f4a7c15;
const LANE_B_MULTIPLIER = 0x9e3779b1;

/** Lane A of page `pfn`'s term when it hashes to `hash`; for a fixed page, a bijection of the hash. */
function laneA(pfn: number, hash: number): number {
  return fmix32(hash ^ fmix32(pfn ^ LANE_A_KEY));
}

/** Lane B of the same term, keyed and mixed differently from lane A. */
function laneB(pfn: number, hash: number): number {
  return fmix32((Math.imul(hash, LANE_B_MULTIPLIER) + fmix32(pfn ^ LANE_B_KEY)) >>> 0);
}

/**
 * The per-page hashes of a guest's memory and the memory digest over them, kept up to date as
 * pages change: each change costs a few multiplications, and `digest()` is constant time.
 */
export class PageDigest {
  /** The hash of every page, indexed by page number. */
  readonly hashes: Uint32Array;
  readonly pageSize: number;
  private readonly zeroHash: number;
  /** The digest's two lanes: sums mod 2^32 of the terms of every page that is not all zeros. */
  private sumA = 0;
  private sumB = 0;

  /** Starts with every page zero, as freshly allocated guest memory is. */
  constructor(pageCount: number, pageSize: number) {
    this.pageSize = pageSize;
    this.hashes = new Uint32Array(pageCount);
    this.zeroHash = zeroPageHash(pageSize);
    this.hashes.fill(this.zeroHash);
  }

  /** Records page `pfn` as holding the `pageSize` bytes at `offset` in `src`; returns their hash. */
  update(pfn: number, src: Uint8Array, offset: number): number {
    const hash = hashPage(src, offset, this.pageSize);
    this.set(pfn, hash);
    return hash;
  }

  /** Records page `pfn` as all zeros. */
  zero(pfn: number): void {
    this.set(pfn, this.zeroHash);
  }

  /** Records page `pfn` as holding contents whose hash is `hash` (computed by `hashPage`). */
  set(pfn: number, hash: number): void {
    const old = this.hashes[pfn]!;
    if (old === hash) return;
    // A page whose hash is the zero page's adds no term: fresh memory has the digest 0.
    if (old !== this.zeroHash) {
      this.sumA -= laneA(pfn, old);
      this.sumB -= laneB(pfn, old);
    }
    if (hash !== this.zeroHash) {
      this.sumA += laneA(pfn, hash);
      this.sumB += laneB(pfn, hash);
    }
    this.sumA >>>= 0;
    this.sumB >>>= 0;
    this.hashes[pfn] = hash;
  }

  /** The digest of the whole memory: lane A then lane B, 16 hex digits. */
  digest(): string {
    return this.sumA.toString(16).padStart(8, '0') + this.sumB.toString(16).padStart(8, '0');
  }
}

/**
 * Reads the pages `pfns` into `dst`, back to back from offset 0, finishing before it returns or
 * when its promise settles: a domain's `readPages`, or an oracle's.
 */
export type ReadPages = (pfns: Uint32Array, dst: Uint8Array) => void | Promise<void>;

/** Pages {@link digestMemory} reads per call: 1 MiB of 4 KiB pages. */
export const DIGEST_CHUNK_PAGES = 256;

/**
 * The hash (`hashPage`) of every page of a whole memory read in runs of consecutive pages through
 * `readPages`, indexed by page number. Reads every page once, in this thread; awaits `readPages`
 * only when it returns a promise.
 */
export async function hashMemory(pageCount: number, pageSize: number, readPages: ReadPages): Promise<Uint32Array> {
  const hashes = new Uint32Array(pageCount);
  // Pages are read into the hasher's own memory and hashed where they lie.
  const hasher = new PageHasher(pageSize, { regionBytes: DIGEST_CHUNK_PAGES * pageSize });
  const pfns = new Uint32Array(DIGEST_CHUNK_PAGES);
  for (let first = 0; first < pageCount; first += DIGEST_CHUNK_PAGES) {
    const count = Math.min(DIGEST_CHUNK_PAGES, pageCount - first);
    for (let i = 0; i < count; i++) pfns[i] = first + i;
    const read = readPages(pfns.subarray(0, count), hasher.region);
    if (read !== undefined) await read;
    hasher.hashRegion(0, count, hashes, first);
  }
  return hashes;
}

/** The memory digest of pages whose hashes (`hashPage`) are `hashes`, indexed by page number. */
export function digestOfHashes(hashes: Uint32Array, pageSize: number): string {
  const digest = new PageDigest(hashes.length, pageSize);
  for (let pfn = 0; pfn < hashes.length; pfn++) digest.set(pfn, hashes[pfn]!);
  return digest.digest();
}

/**
 * Digest of a whole memory read in runs of consecutive pages through `readPages`. Reads every
 * page once, in this thread. Awaits `readPages` only when it returns a promise.
 */
export async function digestMemory(pageCount: number, pageSize: number, readPages: ReadPages): Promise<string> {
  return digestOfHashes(await hashMemory(pageCount, pageSize, readPages), pageSize);
}

/** Digest of a memory image held in one buffer. */
export function digestBuffer(memory: Uint8Array, pageSize: number): string {
  const hashes = new Uint32Array(Math.floor(memory.length / pageSize));
  new PageHasher(pageSize, { copyPages: DIGEST_CHUNK_PAGES }).hashPages(memory, 0, hashes.length, hashes);
  return digestOfHashes(hashes, pageSize);
}

/**
 * The checksum a `pages` record carries: XXH64 over the hashes of its data pages (`hashPage`, in
 * the record's order, as little-endian u32s), seeded with the batch's sequence number (so a batch
 * replayed in another place fails it), as 16 hex digits. Both sides hash every page anyway for
 * the memory digest; the checksum reuses those hashes instead of reading the data once more.
 */
export function batchChecksum(pageHashes: Uint32Array, seq: number): string {
  return hex16(xxh64(littleEndianBytes(pageHashes), BigInt(seq)));
}

/**
 * The digest `complete` and `prepared` carry: the memory digest with the device-state blob folded
 * in, so that a state damaged on the way (which may still decode) is caught before "go" just as
 * damaged memory is.
 */
export function switchoverDigest(memoryDigest: string, state: Uint8Array): string {
  const bytes = Buffer.from(state.buffer, state.byteOffset, state.byteLength);
  return hex16(xxh64(bytes, BigInt(`0x${memoryDigest}`)));
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The bytes of `words` as little-endian u32s (a view on little-endian machines, a copy otherwise). */
function littleEndianBytes(words: Uint32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
  const out = Buffer.allocUnsafe(words.length * 4);
  for (let i = 0; i < words.length; i++) out.writeUInt32LE(words[i]!, i * 4);
  return out;
}

function hex16(hash: bigint): string {
  return hash.toString(16).padStart(16, '0');
}
