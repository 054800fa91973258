// A page sender builds frames in a Buffer it reuses once the transport says the frame was sent.
// The frame it hands over must be a plain Uint8Array: a transport that keeps a copy takes it with
// slice(), which on a Buffer shares memory, and the next batch would then rewrite a frame the peer
// has not read yet.
import { expect, test } from 'vitest';

import { decodeFrame, encodePagesInPlace, PAGES_HEADER_RESERVE_BYTES } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import type { PagesRecord } from '../dist/protocol/records.js';

test('encodePagesInPlace over a Buffer returns a plain Uint8Array view whose slice() is a copy', () => {
  const buffer = Buffer.alloc(PAGES_HEADER_RESERVE_BYTES + 4096, 0x5a);
  const header = { round: 0, seq: 0, pages: writePageNumbers([7]), zeros: new Uint8Array(0), codec: 'none' as const, rawLength: 4096, checksum: '0000000000000000' };
  const frame = encodePagesInPlace(header, buffer, PAGES_HEADER_RESERVE_BYTES, 4096);
  expect(Object.getPrototypeOf(frame)).toBe(Uint8Array.prototype);
  expect(frame.buffer).toBe(buffer.buffer);

  const kept = frame.slice();
  buffer.fill(0x00, PAGES_HEADER_RESERVE_BYTES);
  const record = decodeFrame(kept) as PagesRecord;
  expect(record.payload.every((b) => b === 0x5a)).toBe(true);
});
