import { compressSync, uncompressSync } from 'lz4-napi';
import { describe, expect, it } from 'vitest';

import {
  decodeFrame,
  encodePages,
  encodePagesInPlace,
  encodeRecord,
  PAGES_HEADER_RESERVE_BYTES,
} from '../dist/protocol/codec.js';
import { readPageNumbers, writePageNumbers } from '../dist/protocol/page-list.js';
import { DEFAULT_MAX_DATA_PAGES_PER_BATCH, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_ZERO_PAGES_PER_BATCH } from '../dist/protocol/limits.js';
import type { MigrationRecord, PagesRecord } from '../dist/protocol/records.js';
import { specChecksum } from './helpers/spec-checksum.js';

const PAGE = 4096;


/** Deterministic page contents that compress a little but not to nothing. */
function pageData(pages: number, salt = 1): Uint8Array {
  const out = new Uint8Array(pages * PAGE);
  for (let i = 0; i < out.length; i++) out[i] = ((i >>> 3) * 2654435761 + salt) >>> 24;
  return out;
}

const nonce = new Uint8Array(32).map((_, i) => i * 7 + 1);
const proof = new Uint8Array(32).map((_, i) => 255 - i);

const records: Exclude<MigrationRecord, PagesRecord>[] = [
  {
    type: 'hello',
    versions: [3, 2, 1],
    migrationId: '6f1c2a8e-2b7e-4d0b-9b8e-1f0f3c1e5a77',
    domain: {
      kind: 'sim',
      name: 'web-01',
      memoryBytes: 64 * 1024 * 1024,
      pageSize: PAGE,
      vcpus: 4,
      config: { seed: 42, workload: 'memtouch', rates: [0.5, 1, 2], nested: { on: true, none: null, label: 'é→✓' } },
    },
    codec: 'lz4',
  },
  { type: 'ready', version: 1, migrationId: 'm-1' },
  { type: 'round-end', round: 7, pages: 123456 },
  { type: 'round-ack', round: 7, batches: 4321 },
  { type: 'device-state', state: new Uint8Array([1, 2, 3, 250, 0, 9]) },
  { type: 'device-state', state: new Uint8Array(0) },
  { type: 'complete', batches: 2 ** 40, digest: '00ff00ff00ff00ff' },
  { type: 'prepared', digest: 'deadbeef01234567' },
  { type: 'go' },
  { type: 'resumed', resumeMs: 3.25, digest: 'fedcba9876543210' },
  { type: 'abort', code: 'ERR_CHECKSUM_MISMATCH', message: 'batch 12 failed its checksum' },
  { type: 'abort', code: 'ERR_CANCELLED', message: '' },
  { type: 'query', migrationId: 'm-1', inspect: true },
  { type: 'status', migrationId: 'm-1', state: 'unknown' },
  { type: 'status', migrationId: 'm-1', state: 'running', digest: '0123456789abcdef', domainState: new Uint8Array([7, 7]) },
  { type: 'auth-hello', nonce },
  { type: 'auth-challenge', nonce },
  { type: 'auth-proof', proof },
  { type: 'auth-ok', proof },
  { type: 'auth-ok' },
];

describe('every record type round-trips', () => {
  for (const record of records) {
    it(`${record.type} ${JSON.stringify(record, (_k, v: unknown) => (v instanceof Uint8Array ? `<${v.length} bytes>` : v)).slice(0, 60)}`, () => {
      const frame = encodeRecord(record);
      expect(decodeFrame(frame)).toEqual(record);
    });
  }

  it('leaves optional status fields out rather than sending them as nil', () => {
    const frame = encodeRecord({ type: 'status', migrationId: 'x', state: 'discarded', digest: undefined });
    const decoded = decodeFrame(frame);
    expect(decoded).toEqual({ type: 'status', migrationId: 'x', state: 'discarded' });
    expect(Object.keys(decoded)).not.toContain('digest');
  });

  it('leaves out config entries whose value is undefined, as JSON does', () => {
    const hello = records[0]! as Extract<MigrationRecord, { type: 'hello' }>;
    const config = { ...hello.domain.config, dropped: undefined, kept: { inner: undefined, n: 1 } };
    const decoded = decodeFrame(encodeRecord({ ...hello, domain: { ...hello.domain, config } }));
    if (decoded.type !== 'hello') throw new Error('wrong type');
    expect(decoded.domain.config).toEqual({ ...hello.domain.config, kept: { n: 1 } });
    expect(Object.keys(decoded.domain.config)).not.toContain('dropped');
  });

  it('frames start with the little-endian length of the msgpack header', () => {
    const frame = encodeRecord({ type: 'go' });
    const headerLength = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24);
    expect(headerLength).toBe(frame.length - 4);
    // {"type":"go"} as a msgpack fixmap with one entry.
    expect(frame[4]).toBe(0x81);
  });

  it('returns a fresh frame each time, not msgpackr scratch memory', () => {
    const a = encodeRecord({ type: 'prepared', digest: '1111111111111111' });
    const copy = a.slice();
    const b = encodeRecord({ type: 'prepared', digest: '2222222222222222' });
    expect(a).toEqual(copy);
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('decodes byte strings as plain Uint8Array views of the frame', () => {
    const frame = encodeRecord({ type: 'device-state', state: new Uint8Array([5, 6, 7]) });
    const decoded = decodeFrame(frame);
    if (decoded.type !== 'device-state') throw new Error('wrong type');
    expect(decoded.state.constructor).toBe(Uint8Array);
    expect(decoded.state.buffer).toBe(frame.buffer);
  });

  it('carries a device state larger than any header as the payload, behind a header of its type alone', () => {
    const state = new Uint8Array(DEFAULT_MAX_HEADER_BYTES + 100_000).map((_, i) => i * 7);
    const frame = encodeRecord({ type: 'device-state', state });
    const headerLength = Buffer.from(frame.buffer, frame.byteOffset, 4).readUInt32LE(0);
    expect(frame.length - 4 - headerLength).toBe(state.length);
    const decoded = decodeFrame(frame);
    expect(decoded).toEqual({ type: 'device-state', state });
  });

  it('decodes a frame that sits at an odd offset inside a larger buffer', () => {
    const frame = encodeRecord(records[0]!);
    const big = Buffer.alloc(frame.length + 10);
    big.set(frame, 3);
    expect(decodeFrame(big.subarray(3, 3 + frame.length))).toEqual(records[0]);
  });
});

describe('pages records round-trip', () => {
  it('with codec none', () => {
    const raw = pageData(3);
    const header = {
      round: 0,
      seq: 0,
      pages: writePageNumbers([10, 11, 500]),
      zeros: writePageNumbers([1, 2]),
      codec: 'none' as const,
      rawLength: raw.length,
      checksum: specChecksum(raw, 0),
    };
    const decoded = decodeFrame(encodePages(header, raw));
    expect(decoded).toEqual({ type: 'pages', ...header, payload: raw });
    if (decoded.type !== 'pages') throw new Error('wrong type');
    expect(Array.from(readPageNumbers(decoded.pages))).toEqual([10, 11, 500]);
    expect(Array.from(readPageNumbers(decoded.zeros))).toEqual([1, 2]);
    expect(decoded.payload.constructor).toBe(Uint8Array);
    expect(specChecksum(decoded.payload, decoded.seq)).toBe(decoded.checksum);
  });

  it('with codec lz4, whose payload starts with its uncompressed size', () => {
    const raw = pageData(8, 7);
    const packed = compressSync(Buffer.from(raw));
    expect(packed.readUInt32LE(0)).toBe(raw.length);
    const header = {
      round: 3,
      seq: 99,
      pages: writePageNumbers([0, 1, 2, 3, 4, 5, 6, 0xfffffffe]),
      zeros: new Uint8Array(0),
      codec: 'lz4' as const,
      rawLength: raw.length,
      checksum: specChecksum(raw, 99),
    };
    const decoded = decodeFrame(encodePages(header, packed));
    if (decoded.type !== 'pages') throw new Error('wrong type');
    expect(decoded.codec).toBe('lz4');
    expect(decoded.payload).toEqual(new Uint8Array(packed));
    const unpacked = uncompressSync(decoded.payload);
    expect(new Uint8Array(unpacked)).toEqual(raw);
    expect(specChecksum(unpacked, decoded.seq)).toBe(decoded.checksum);
  });

  it('with zero pages only and an empty payload', () => {
    const header = {
      round: 1,
      seq: 5,
      pages: new Uint8Array(0),
      zeros: writePageNumbers([9, 8, 7]),
      codec: 'none' as const,
      rawLength: 0,
      checksum: specChecksum(new Uint8Array(0), 5),
    };
    expect(decodeFrame(encodePages(header, new Uint8Array(0)))).toEqual({
      type: 'pages',
      ...header,
      payload: new Uint8Array(0),
    });
  });

  it('copies the payload into the frame', () => {
    const raw = pageData(1);
    const header = {
      round: 0,
      seq: 1,
      pages: writePageNumbers([4]),
      zeros: new Uint8Array(0),
      codec: 'none' as const,
      rawLength: PAGE,
      checksum: specChecksum(raw, 1),
    };
    const frame = encodePages(header, raw);
    raw.fill(0);
    const decoded = decodeFrame(frame);
    if (decoded.type !== 'pages') throw new Error('wrong type');
    expect(decoded.payload).toEqual(pageData(1));
  });
});

describe('in-place pages encoding', () => {
  function header(dataPages: number, zeroPages: number, seq: number) {
    const raw = pageData(dataPages, seq);
    return {
      raw,
      header: {
        round: 2 ** 33,
        seq,
        pages: writePageNumbers(Array.from({ length: dataPages }, (_, i) => 0xffffffff - i)),
        zeros: writePageNumbers(Array.from({ length: zeroPages }, (_, i) => 0x80000000 + i)),
        codec: 'none' as const,
        rawLength: raw.length,
        checksum: specChecksum(raw, seq),
      },
    };
  }

  it('produces the same bytes as the copying encoder', () => {
    const { raw, header: h } = header(5, 3, 12);
    const buffer = new Uint8Array(PAGES_HEADER_RESERVE_BYTES + raw.length + 8);
    buffer.set(raw, PAGES_HEADER_RESERVE_BYTES);
    const inPlace = encodePagesInPlace(h, buffer, PAGES_HEADER_RESERVE_BYTES, raw.length);
    expect(inPlace).toEqual(encodePages(h, raw));
    expect(inPlace.buffer).toBe(buffer.buffer);
    expect(inPlace.byteOffset + inPlace.length).toBe(PAGES_HEADER_RESERVE_BYTES + raw.length);
  });

  it('fits the largest default batch, with wide integers, in PAGES_HEADER_RESERVE_BYTES', () => {
    const { raw, header: h } = header(DEFAULT_MAX_DATA_PAGES_PER_BATCH, DEFAULT_MAX_ZERO_PAGES_PER_BATCH, 2 ** 53 - 1);
    const buffer = Buffer.alloc(PAGES_HEADER_RESERVE_BYTES + raw.length);
    buffer.set(raw, PAGES_HEADER_RESERVE_BYTES);
    const frame = encodePagesInPlace(h, buffer, PAGES_HEADER_RESERVE_BYTES, raw.length);
    expect(frame.byteOffset).toBeGreaterThan(0);
    const { payload, ...rest } = decodeFrame(frame) as PagesRecord;
    // Element-wise toEqual on 4 MiB takes seconds; compare the bytes in one call instead.
    expect(Buffer.from(payload).equals(raw)).toBe(true);
    expect(rest).toEqual({ type: 'pages', ...h });
  });

  it('refuses when the header does not fit in front of the payload', () => {
    const { raw, header: h } = header(2, 40, 1);
    const buffer = new Uint8Array(64 + raw.length);
    expect(() => encodePagesInPlace(h, buffer, 64, raw.length)).toThrow(
      expect.objectContaining({ code: 'ERR_LIMIT_EXCEEDED' }),
    );
  });
});

describe('page-number lists', () => {
  it('read correctly from every alignment', () => {
    const pfns = [0, 1, 0x01020304, 0xfffffffe, 0xffffffff, 4096];
    const bytes = writePageNumbers(pfns);
    for (let shift = 0; shift < 4; shift++) {
      const backing = new Uint8Array(bytes.length + 8);
      backing.set(bytes, shift);
      const view = backing.subarray(shift, shift + bytes.length);
      expect(Array.from(readPageNumbers(view))).toEqual(pfns);
    }
  });

  it('are little-endian', () => {
    expect(Array.from(writePageNumbers([0x01020304]))).toEqual([4, 3, 2, 1]);
  });

  it('write a prefix of a Uint32Array that is itself a view at an offset', () => {
    const backing = new Uint32Array([99, 5, 6, 7, 8]);
    const view = backing.subarray(1);
    expect(Array.from(readPageNumbers(writePageNumbers(view, 3)))).toEqual([5, 6, 7]);
  });

  it('read correctly from the unaligned byte strings of a decoded frame', () => {
    // A one-character migration id shifts everything after it by an odd number of bytes.
    for (let extra = 0; extra < 4; extra++) {
      const pfns = Array.from({ length: 50 }, (_, i) => i * 7919 + extra);
      const frame = encodePages(
        {
          round: extra,
          seq: 0,
          pages: new Uint8Array(0),
          zeros: writePageNumbers(pfns),
          codec: 'none',
          rawLength: 0,
          checksum: 'a'.repeat(16),
        },
        new Uint8Array(0),
      );
      const shifted = new Uint8Array(frame.length + extra);
      shifted.set(frame, extra);
      const decoded = decodeFrame(shifted.subarray(extra));
      if (decoded.type !== 'pages') throw new Error('wrong type');
      expect(Array.from(readPageNumbers(decoded.zeros))).toEqual(pfns);
    }
  });

  it('reject entries that are not u32 page numbers', () => {
    expect(() => writePageNumbers([1, -1])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => writePageNumbers([2 ** 32])).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => writePageNumbers([1, 2], 3)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => readPageNumbers(new Uint8Array(6))).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
  });
});
