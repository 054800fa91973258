// A time the peer reports on its own clock is range-checked on receipt: a corrupt `resumeMs`
// (1.34e182 once decoded cleanly) would otherwise become the reported downtime. One in range but
// longer than the exchange it is part of is clamped, so the downtime never passes its upper bound.
import { pack, unpack } from 'msgpackr';
import { expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { MAX_PEER_TIME_MS } from '../dist/protocol/field-checks.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { tamperingTransport } from './helpers/faulty-transport.js';

const digest = '0123456789abcdef';

test.each([1.34e182, MAX_PEER_TIME_MS + 1, -1, Number.NaN, Number.POSITIVE_INFINITY])('resumed.resumeMs %s is malformed', (resumeMs) => {
  const good = decodeFrame(encodeRecord({ type: 'resumed', resumeMs: 1.5, digest }));
  expect(good).toMatchObject({ type: 'resumed', resumeMs: 1.5 });
  const frame = reencode(encodeRecord({ type: 'resumed', resumeMs: 1.5, digest }), { resumeMs });
  expect(() => decodeFrame(frame)).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
});

test('collected.ms past a day is malformed, a day is not', () => {
  const frame = encodeRecord({ type: 'collected', ms: 2 });
  expect(decodeFrame(reencode(frame, { ms: MAX_PEER_TIME_MS }))).toMatchObject({ type: 'collected', ms: MAX_PEER_TIME_MS });
  expect(() => decodeFrame(reencode(frame, { ms: MAX_PEER_TIME_MS * 2 }))).toThrow(expect.objectContaining({ code: 'ERR_MALFORMED_RECORD' }));
});

/** The same frame with some header fields replaced: a 4-byte little-endian header length, then the msgpack header (§3). */
function reencode(frame: Uint8Array, fields: Record<string, unknown>): Uint8Array {
  const length = frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24);
  const header = unpack(frame.subarray(4, 4 + length)) as Record<string, unknown>;
  const packed = pack({ ...header, ...fields });
  const out = new Uint8Array(4 + packed.length);
  new DataView(out.buffer).setUint32(0, packed.length, true);
  out.set(packed, 4);
  return out;
}

test('a resumeMs longer than the whole go/resumed exchange: the downtime stays within its upper bound', async () => {
  const guest = await SimulatedGuest.boot(
    { memoryBytes: 16 * 1024 * 1024, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 5e6, hotSetBytes: 4 * 1024 * 1024, seed: 9 },
    'resume-ms',
  );
  const [a, b] = createMemoryTransportPair();
  // The target's "resumed" claims 50 s: more than the source waited for it in all.
  const lying = tamperingTransport(b, (frame) => {
    const record = decodeFrame(frame);
    return record.type === 'resumed' ? reencode(frame, { resumeMs: 50_000 }) : frame;
  });
  const incoming = acceptMigration(lying, { backends: new Map([['sim', new SimTargetBackend()]]) });
  const report = await migrate(guest, a, {});
  const result = await incoming;
  await result.domain?.destroy();
  expect(report.outcome).toBe('completed');
  expect(report.downtimeMs).toBeGreaterThan(0);
  expect(report.downtimeMs!).toBeLessThanOrEqual(report.downtimeUpperBoundMs!);
  expect(report.switchover!.targetResumeMs).toBeLessThan(50_000);
});
