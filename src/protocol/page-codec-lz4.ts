/**
 * Page payload codec `lz4` (docs/protocol.md §5): one raw LZ4 block preceded by the uncompressed
 * size as a u32 little-endian, which is what lz4-napi's block functions write and read.
 */

import { compress, compressSync, uncompress, uncompressSync } from 'lz4-napi';

import { MalformedRecordError } from '../errors.js';
import { asBuffer } from '../util/bytes.js';
import type { PagePayloadCodec } from './page-codec.js';

/** Bytes of the uncompressed-size prefix that starts an `lz4` payload. */
export const LZ4_SIZE_PREFIX_BYTES = 4;

/**
 * Batches with at most this much page data are compressed and decompressed on the event loop
 * rather than on the thread pool: lz4 takes tens of microseconds for them, less than the hop to a
 * pool thread and back, and the small final round of a switchover then leaves in one turn of the
 * loop. In bytes.
 */
export const SYNC_COMPRESS_MAX_BYTES = 64 * 1024;

/** LZ4's worst case for incompressible input (LZ4_COMPRESSBOUND), plus the size prefix. */
function maxPayloadBytes(rawLength: number): number {
  return LZ4_SIZE_PREFIX_BYTES + rawLength + Math.ceil(rawLength / 255) + 16;
}

function place(packed: Uint8Array, out: Uint8Array): number {
  if (packed.length > out.length) {
    throw new RangeError(`lz4 produced ${packed.length} bytes, more than the ${out.length}-byte output buffer holds`);
  }
  out.set(packed);
  return packed.length;
}

export const lz4Codec: PagePayloadCodec = {
  name: 'lz4',
  payloadIsRaw: false,
  maxPayloadBytes,
  async encode(raw, out) {
    return place(raw.length <= SYNC_COMPRESS_MAX_BYTES ? compressSync(asBuffer(raw)) : await compress(raw), out);
  },
  encodeSync(raw, out) {
    return place(compressSync(asBuffer(raw)), out);
  },
  checkPayload(payload, rawLength) {
    if (payload.length < LZ4_SIZE_PREFIX_BYTES) {
      throw new MalformedRecordError(
        `malformed pages record: an lz4 payload starts with a ${LZ4_SIZE_PREFIX_BYTES}-byte size, but the payload has ${payload.length} bytes`,
      );
    }
    const announced = (payload[0]! | (payload[1]! << 8) | (payload[2]! << 16) | (payload[3]! << 24)) >>> 0;
    if (announced !== rawLength) {
      throw new MalformedRecordError(
        `malformed pages record: the lz4 payload decompresses to ${announced} bytes by its size prefix, but rawLength is ${rawLength}`,
      );
    }
  },
  async decode(payload, rawLength) {
    const packed = asBuffer(payload);
    return rawLength <= SYNC_COMPRESS_MAX_BYTES ? uncompressSync(packed) : await uncompress(packed);
  },
};
