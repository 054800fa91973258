// The `guest` record carries a guest's pool-wide id and priority after `ready`. It is marked
// optional on the wire (a target that does not know it skips it), the receiver takes it at most
// once and only before the first page batch, and a receiving target reports it with the result.
import { Unpackr } from 'msgpackr';
import { expect, test } from 'vitest';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { decodeFrame, encodeRecord, encodePages } from '../dist/protocol/codec.js';
import { batchChecksum } from '../dist/protocol/page-digest.js';
import { receiverTransition } from '../dist/protocol/receiver-state.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { next, StubBackend, stubHello } from './helpers/scripted-source.js';

/** The msgpack header of a frame, as any decoder sees it. */
function header(frame: Uint8Array): Record<string, unknown> {
  const length = new DataView(frame.buffer, frame.byteOffset).getUint32(0);
  return new Unpackr({ mapsAsObjects: true }).unpack(frame.subarray(4, 4 + length)) as Record<string, unknown>;
}

test('the guest record round-trips, is sent optional, and refuses a bad priority or an empty id', () => {
  const frame = encodeRecord({ type: 'guest', id: 'f00d', priority: -3 });
  expect(decodeFrame(frame)).toEqual({ type: 'guest', id: 'f00d', priority: -3 });
  expect(header(frame)).toMatchObject({ type: 'guest', optional: true });
  expect(() => encodeRecord({ type: 'guest', id: 'f00d', priority: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
  expect(() => encodeRecord({ type: 'guest', id: 'f00d', priority: 2_000_000 })).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
  expect(() => encodeRecord({ type: 'guest', id: '', priority: 0 })).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
  expect(receiverTransition('receiving', 'guest')).toBe('receiving');
  expect(() => receiverTransition('prepared', 'guest')).toThrow(expect.objectContaining({ code: 'ERR_UNEXPECTED_RECORD' }));
});

async function receive(records: Uint8Array[]): Promise<{ outcome: string; error?: { code: string }; guest?: unknown }> {
  const [source, target] = createMemoryTransportPair();
  const incoming = acceptMigration(target, { backends: new Map([['stub', new StubBackend()]]), collectGarbage: null });
  await source.send(encodeRecord(stubHello()));
  expect((await next(source)).type).toBe('ready');
  for (const r of records) await source.send(r);
  await source.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'end of the script' }));
  const result = await incoming;
  source.destroy();
  return result;
}

test('a second guest record, or one after a page batch, is ERR_UNEXPECTED_RECORD; one before the pages is kept', async () => {
  const guest = encodeRecord({ type: 'guest', id: 'g-1', priority: 5 });
  const twice = await receive([guest, encodeRecord({ type: 'guest', id: 'g-2', priority: 5 })]);
  expect(twice).toMatchObject({ outcome: 'discarded', error: { code: 'ERR_UNEXPECTED_RECORD' } });
  const zeroBatch = encodePages({ round: 0, seq: 0, pages: new Uint8Array(0), zeros: Uint8Array.of(0, 0, 0, 0), codec: 'none', rawLength: 0, checksum: batchChecksum(new Uint32Array(0), 0) }, new Uint8Array(0));
  const late = await receive([zeroBatch, guest]);
  expect(late.error?.code).toBe('ERR_UNEXPECTED_RECORD');
  // Kept until the end (here the source's own abort): the target knew who was coming.
  const once = await receive([guest]);
  expect(once).toMatchObject({ outcome: 'discarded', error: { code: 'ERR_PEER_ABORTED' }, guest: { id: 'g-1', priority: 5 } });
});
