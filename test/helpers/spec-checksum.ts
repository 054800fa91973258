// The checksum of a `pages` record computed from docs/protocol.md §5 alone, not from the
// engine's code: XXH64 over the little-endian XXH32 hashes of the data pages, seeded with `seq`.
import { xxh32, xxh64 } from '@node-rs/xxhash';

const PAGE = 4096;

export function specChecksum(raw: Uint8Array, seq: number): string {
  const pages = raw.length / PAGE;
  const hashes = Buffer.alloc(pages * 4);
  for (let i = 0; i < pages; i++) hashes.writeUInt32LE(xxh32(raw.subarray(i * PAGE, (i + 1) * PAGE), 0), i * 4);
  return xxh64(hashes, BigInt(seq)).toString(16).padStart(16, '0');
}
