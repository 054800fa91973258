// Every page codec listed in page-codecs.ts, driven only through its interface, as the page
// sender and the target drive it: encoded into a reused buffer with the frame header written in
// front, decoded frame by frame, and back to the same pages. Incompressible pages must fit the
// codec's announced bound, and a damaged payload is refused with ERR_MALFORMED_RECORD.
import { randomFillSync } from 'node:crypto';
import { describe, expect, test } from 'vitest';

import { decodeFrame, encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../dist/protocol/codec.js';
import { decodePagesPayload, PAGE_CODECS, pagePayloadCodec } from '../dist/protocol/page-codecs.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import type { PagesRecord } from '../dist/protocol/records.js';

const PAGE = 4096;

function pages(count: number, fill: 'text' | 'random'): Buffer {
  const raw = Buffer.alloc(count * PAGE);
  if (fill === 'random') randomFillSync(raw);
  else for (let i = 0; i < raw.length; i++) raw[i] = 97 + ((i * 7) % 13);
  return raw;
}

function header(codec: string, count: number) {
  return {
    round: 0,
    seq: 0,
    pages: writePageNumbers(Array.from({ length: count }, (_, i) => i)),
    zeros: new Uint8Array(0),
    codec: codec as PagesRecord['codec'],
    rawLength: count * PAGE,
    checksum: '0000000000000000',
  };
}

test('the codec list holds at least none and lz4', () => {
  expect(PAGE_CODECS).toContain('none');
  expect(PAGE_CODECS).toContain('lz4');
});

describe.each([...PAGE_CODECS])('codec %s', (name) => {
  const codec = pagePayloadCodec(name);

  test.each([
    [1, 'text'],
    [16, 'text'],
    [256, 'text'],
    [256, 'random'],
  ] as const)('%i %s pages: encoded into a reused buffer, framed in place, decoded to the same bytes', async (count, fill) => {
    const raw = pages(count, fill);
    const out = Buffer.alloc(PAGES_HEADER_RESERVE_BYTES + codec.maxPayloadBytes(raw.length));
    for (let use = 0; use < 2; use++) {
      const length = codec.payloadIsRaw ? raw.length : await codec.encode(raw, out.subarray(PAGES_HEADER_RESERVE_BYTES));
      if (codec.payloadIsRaw) out.set(raw, PAGES_HEADER_RESERVE_BYTES);
      expect(length).toBeLessThanOrEqual(codec.maxPayloadBytes(raw.length));
      expect(codec.encodeSync(raw, Buffer.alloc(codec.maxPayloadBytes(raw.length)))).toBe(length);
      const frame = encodePagesInPlace(header(name, count), out, PAGES_HEADER_RESERVE_BYTES, length);
      const record = decodeFrame(frame) as PagesRecord;
      expect(record).toMatchObject({ type: 'pages', codec: name, rawLength: raw.length });
      expect(Buffer.from(await decodePagesPayload(record)).equals(raw)).toBe(true);
    }
  });

  test('a payload cut short is refused with ERR_MALFORMED_RECORD, by the frame decoder or on decoding', async () => {
    const raw = pages(4, 'text');
    const out = Buffer.alloc(codec.maxPayloadBytes(raw.length));
    const length = codec.encodeSync(raw, out);
    const frame = encodePagesInPlace(header(name, 4), Buffer.concat([Buffer.alloc(PAGES_HEADER_RESERVE_BYTES), out.subarray(0, length)]), PAGES_HEADER_RESERVE_BYTES, length);
    const cut = frame.subarray(0, frame.length - 5);
    let code: string | undefined;
    try {
      await decodePagesPayload(decodeFrame(cut) as PagesRecord);
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('ERR_MALFORMED_RECORD');
  });
});
