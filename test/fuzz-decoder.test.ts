import fc from 'fast-check';
import { compressSync } from 'lz4-napi';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';

import { MigrationError } from '../dist/errors.js';
import { decodeFrame, encodePages, encodeRecord } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';
import { DEFAULT_MAX_HEADER_BYTES, type ProtocolLimits } from '../dist/protocol/limits.js';
import { expectedRecords, receiverTransition } from '../dist/protocol/receiver-state.js';
import type { ReceiverEvent, ReceiverState } from '../dist/protocol/receiver-state.js';
import type { MigrationRecord } from '../dist/protocol/records.js';
import { WIRE_RECORD_TYPES } from './helpers/record-types.js';

const RUNS = 1000;

const RECORD_TYPES = WIRE_RECORD_TYPES;

/**
 * About the costliest frame the decoder accepts with the default limits: a header near
 * maxHeaderBytes of the smallest map entries, each one decoded and checked as plain data.
 * (A batch's payload is not decompressed by the decoder.)
 */
function costliestValidFrame(): Uint8Array {
  const list = Array.from({ length: Math.floor(DEFAULT_MAX_HEADER_BYTES / 7) }, (_, n) => ({ n }));
  const domain = { kind: 'sim', name: 'costly', memoryBytes: 1 << 24, pageSize: 4096, vcpus: 1, config: { list } };
  return encodeRecord({ type: 'hello', versions: [2], migrationId: 'm', domain, codec: 'lz4' });
}

/** The quickest of `runs` decodes of `frame`, in milliseconds: the least a loaded machine adds. */
function quickestDecodeMs(frame: Uint8Array, runs: number, limits?: Partial<ProtocolLimits>): number {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    try {
      decodeFrame(frame, limits);
    } catch {
      // Only the time counts here.
    }
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

/**
 * No input, however crafted, may cost the decoder more than a few times the costliest frame it
 * accepts (a decompression bomb, a header claiming a huge array): both are timed on this machine
 * in this run, so the bound scales with the machine. A decode over it is timed again, quickest
 * of three, before it counts: a pause of the machine happens once, a slow input every time.
 */
const SLOWEST_DECODE_MS = 4 * quickestDecodeMs(costliestValidFrame(), 3);

/**
 * Decodes, and checks the only two outcomes allowed: a record, or a MigrationError whose code is
 * one of the decoder's two. Returns the record, or undefined on a rejection.
 */
function decodeOrReject(frame: Uint8Array, limits?: Partial<ProtocolLimits>): MigrationRecord | undefined {
  const started = performance.now();
  try {
    return decodeFrame(frame, limits);
  } catch (err) {
    if (!(err instanceof MigrationError)) throw new Error(`decodeFrame threw a foreign error: ${String(err)}`, { cause: err });
    expect(['ERR_MALFORMED_RECORD', 'ERR_LIMIT_EXCEEDED']).toContain(err.code);
    return undefined;
  } finally {
    if (performance.now() - started > SLOWEST_DECODE_MS) {
      expect(quickestDecodeMs(frame, 3, limits)).toBeLessThanOrEqual(SLOWEST_DECODE_MS);
    }
  }
}

/** Encoding a record the decoder accepted gives it back unchanged. */
function expectReencodes(record: MigrationRecord): void {
  if (record.type === 'pages') {
    const { type: _type, payload, ...header } = record;
    expect(decodeFrame(encodePages(header, payload))).toEqual(record);
  } else {
    expect(decodeFrame(encodeRecord(record))).toEqual(record);
  }
}

function corpus(): Uint8Array[] {
  const raw = new Uint8Array(2 * 4096).map((_, i) => (i * 31) >>> 4);
  const pages = {
    round: 1,
    seq: 3,
    pages: writePageNumbers([5, 9]),
    zeros: writePageNumbers([1, 2, 3]),
    rawLength: raw.length,
    checksum: '0123456789abcdef',
  };
  return [
    encodeRecord({ type: 'auth-hello', nonce: new Uint8Array(32).fill(1) }),
    encodeRecord({ type: 'auth-challenge', nonce: new Uint8Array(32).fill(2) }),
    encodeRecord({ type: 'auth-proof', proof: new Uint8Array(32).fill(3) }),
    encodeRecord({ type: 'auth-ok', proof: new Uint8Array(32).fill(4) }),
    encodeRecord({ type: 'auth-ok' }),
    encodeRecord({
      type: 'hello',
      versions: [2, 1],
      migrationId: 'a0b1c2d3-0000-4000-8000-000000000000',
      domain: {
        kind: 'sim',
        name: 'fuzz',
        memoryBytes: 1 << 24,
        pageSize: 4096,
        vcpus: 2,
        config: { seed: 1, list: [1, 'two', { three: [3] }], flag: false, none: null },
      },
      codec: 'lz4',
    }),
    encodeRecord({ type: 'ready', version: 1, migrationId: 'm' }),
    encodeRecord({ type: 'round-end', round: 4, pages: 70000 }),
    encodeRecord({ type: 'device-state', state: new Uint8Array(64).map((_, i) => i) }),
    encodeRecord({ type: 'complete', batches: 12, digest: 'aaaaaaaaaaaaaaaa' }),
    encodeRecord({ type: 'prepared', digest: 'bbbbbbbbbbbbbbbb' }),
    encodeRecord({ type: 'go' }),
    encodeRecord({ type: 'resumed', resumeMs: 1.5, digest: 'cccccccccccccccc' }),
    encodeRecord({ type: 'abort', code: 'ERR_TIMEOUT', message: 'no answer within 10 s' }),
    encodeRecord({ type: 'query', migrationId: 'm', inspect: false }),
    encodeRecord({ type: 'status', migrationId: 'm', state: 'prepared', digest: 'dddddddddddddddd', domainState: new Uint8Array(9) }),
    encodePages({ ...pages, codec: 'none' }, raw),
    encodePages({ ...pages, codec: 'lz4' }, compressSync(Buffer.from(raw))),
    encodePages({ ...pages, pages: new Uint8Array(0), rawLength: 0, codec: 'none' }, new Uint8Array(0)),
  ];
}

const frames = corpus();

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; other: number; from: number; length: number; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; length: number }
  | { kind: 'length'; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('splice' as const),
    other: fc.nat(frames.length - 1),
    from: fc.nat(),
    length: fc.nat(64),
    at: fc.nat(),
  }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('length' as const), value: fc.oneof(fc.nat(400), fc.integer({ min: 0, max: 0xffffffff })) }),
);

function mutate(frame: Uint8Array, m: Mutation): Uint8Array {
  const out = Buffer.from(frame);
  const at = out.length === 0 ? 0 : m.kind === 'length' ? 0 : (m as { at: number }).at % (out.length + 1);
  switch (m.kind) {
    case 'flip':
      if (out.length === 0) return out;
      out[at % out.length]! ^= 1 << m.bit;
      return out;
    case 'truncate':
      return out.subarray(0, at);
    case 'splice': {
      const other = frames[m.other]!;
      const from = m.from % other.length;
      return Buffer.concat([out.subarray(0, at), other.subarray(from, from + m.length), out.subarray(at)]);
    }
    case 'insert':
      return Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)]);
    case 'delete':
      return Buffer.concat([out.subarray(0, at), out.subarray(at + m.length)]);
    case 'length':
      if (out.length >= 4) out.writeUInt32LE(m.value, 0);
      return out;
  }
}

describe('the decoder on hostile input', () => {
  it('every corpus frame decodes', () => {
    for (const frame of frames) expect(decodeOrReject(frame)).toBeDefined();
    // And so does the frame the time bound is measured on.
    expect(decodeOrReject(costliestValidFrame())?.type).toBe('hello');
  });

  it('random bytes: a record or a coded MigrationError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        decodeOrReject(bytes);
      }),
      { numRuns: RUNS },
    );
  });

  it('random msgpack-ish headers behind a correct length prefix', () => {
    const mapToken = fc.constantFrom(0x80, 0x81, 0x83, 0x87, 0x8f, 0xde, 0xdf);
    fc.assert(
      fc.property(mapToken, fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 16 }), (token, body, payload) => {
        const header = Buffer.concat([Buffer.from([token]), body]);
        const frame = Buffer.alloc(4 + header.length + payload.length);
        frame.writeUInt32LE(header.length, 0);
        header.copy(frame, 4);
        frame.set(payload, 4 + header.length);
        decodeOrReject(frame);
      }),
      { numRuns: RUNS },
    );
  });

  it('mutated valid frames: bit flips, truncations, splices, insertions, deletions, bad lengths', () => {
    const outcomes = { accepted: 0, rejected: 0 };
    fc.assert(
      fc.property(fc.nat(frames.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 }), (base, mutations) => {
        const frame = mutations.reduce((f, m) => mutate(f, m), frames[base]!);
        const record = decodeOrReject(frame);
        outcomes[record === undefined ? 'rejected' : 'accepted']++;
        if (record !== undefined) expectReencodes(record);
      }),
      { numRuns: RUNS },
    );
    // Both outcomes must have been exercised, or the property proved little.
    expect(outcomes.accepted).toBeGreaterThan(0);
    expect(outcomes.rejected).toBeGreaterThan(0);
  });

  it('mutated valid frames under tight limits', () => {
    const limits: Partial<ProtocolLimits> = {
      maxFrameBytes: 6000,
      maxHeaderBytes: 120,
      maxDataPagesPerBatch: 1,
      maxZeroPagesPerBatch: 2,
      maxDeviceStateBytes: 16,
      maxGuestMemoryBytes: 1 << 20,
      maxVcpus: 1,
    };
    fc.assert(
      fc.property(fc.nat(frames.length - 1), fc.array(mutation, { maxLength: 3 }), (base, mutations) => {
        decodeOrReject(
          mutations.reduce((f, m) => mutate(f, m), frames[base]!),
          limits,
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('records of every type with some fields replaced, removed or added', () => {
    const outcomes = { accepted: 0, rejected: 0 };
    const packr = new Packr({ useRecords: false, variableMapSize: true });
    const names = ['type', 'versions', 'migrationId', 'domain', 'codec', 'version', 'round', 'pages', 'zeros',
      'rawLength', 'checksum', 'seq', 'state', 'batches', 'digest', 'resumeMs', 'code', 'message', 'inspect', 'domainState', 'nonce', 'proof'];
    const junk = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.uint8Array({ maxLength: 24 }),
      fc.integer({ min: -5, max: 70000 }),
      fc.constantFrom('none', 'lz4', 'running', '0123456789abcdef', 4096, 1, [1], 2 ** 53, -0.5),
    );
    const text = fc.string({ minLength: 1, maxLength: 12 });
    const hex = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((n) => n.toString(16).padStart(16, '0'));
    const bytes = fc.uint8Array({ maxLength: 32 });
    const pfns = (max: number) => fc.array(fc.nat(), { maxLength: max }).map((list) => writePageNumbers(list.map((n) => n >>> 0)));
    const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
    const valid: fc.Arbitrary<[Record<string, unknown>, Uint8Array]> = fc.oneof(
      fc.record({ type: fc.constant('auth-hello'), nonce: bytes32 }),
      fc.record({ type: fc.constant('auth-challenge'), nonce: bytes32 }),
      fc.record({ type: fc.constant('auth-proof'), proof: bytes32 }),
      fc.record({ type: fc.constant('auth-ok'), proof: bytes32 }, { requiredKeys: ['type'] }),
      fc.record({
        type: fc.constant('hello'),
        versions: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }),
        migrationId: text,
        domain: fc.record({
          kind: text,
          name: fc.string({ maxLength: 12 }),
          memoryBytes: fc.integer({ min: 1, max: 1 << 20 }).map((n) => n * 4096),
          pageSize: fc.constant(4096),
          vcpus: fc.integer({ min: 1, max: 256 }),
          config: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
        }),
        codec: fc.constantFrom('none', 'lz4'),
      }),
      fc.record({ type: fc.constant('ready'), version: fc.integer({ min: 1, max: 9 }), migrationId: text }),
      fc.record({ type: fc.constant('round-end'), round: fc.nat(), pages: fc.nat() }),
      fc.record({ type: fc.constant('round-ack'), round: fc.nat(), batches: fc.nat() }),
      fc.record({ type: fc.constant('complete'), batches: fc.nat(), digest: hex }),
      fc.record({ type: fc.constant('prepared'), digest: hex }),
      fc.record({ type: fc.constant('go') }),
      fc.record({ type: fc.constant('resumed'), resumeMs: fc.double({ min: 0, max: 1e6, noNaN: true }), digest: hex }),
      fc.record({ type: fc.constant('abort'), code: text, message: fc.string({ maxLength: 40 }) }),
      fc.record({ type: fc.constant('query'), migrationId: text, inspect: fc.boolean() }),
    ).map((fields) => [fields as Record<string, unknown>, new Uint8Array(0)]);
    // A status answering an inspection carries the domain state as its payload, beside its digest.
    const validStatus: fc.Arbitrary<[Record<string, unknown>, Uint8Array]> = fc
      .record({
        migrationId: text,
        state: fc.constantFrom('unknown', 'receiving', 'prepared', 'running', 'discarded'),
        inspection: fc.option(fc.record({ digest: hex, domainState: bytes })),
      })
      .map(({ migrationId, state, inspection }) =>
        inspection
          ? [{ type: 'status', migrationId, state, digest: inspection.digest }, inspection.domainState]
          : [{ type: 'status', migrationId, state }, new Uint8Array(0)],
      );
    const validPages: fc.Arbitrary<[Record<string, unknown>, Uint8Array]> = fc
      .record({ round: fc.nat(), seq: fc.nat(), pages: pfns(3), zeros: pfns(3), checksum: hex })
      .map(({ pages, ...rest }) => {
        const rawLength = (pages.length / 4) * 4096;
        return [{ type: 'pages', ...rest, pages, codec: 'none', rawLength }, new Uint8Array(rawLength)];
      });
    // A device state travels as the payload, under a header that holds only the type.
    const validState: fc.Arbitrary<[Record<string, unknown>, Uint8Array]> = bytes.map((state) => [{ type: 'device-state' }, state]);
    const change = fc.tuple(fc.constantFrom(...names), fc.oneof(junk, fc.constant(undefined)));
    fc.assert(
      fc.property(fc.oneof(valid, validPages, validState, validStatus), fc.array(change, { maxLength: 2 }), fc.option(bytes), ([fields, body], changes, extra) => {
        const header = { ...fields };
        for (const [name, value] of changes) {
          if (value === undefined) delete header[name];
          else header[name] = value;
        }
        let packed: Uint8Array;
        try {
          packed = packr.pack(header);
        } catch {
          return; // not packable at all; nothing to decode
        }
        const payload = extra === null ? body : Buffer.concat([body, extra]);
        const frame = Buffer.alloc(4 + packed.length + payload.length);
        frame.writeUInt32LE(packed.length, 0);
        frame.set(packed, 4);
        frame.set(payload, 4 + packed.length);
        const record = decodeOrReject(frame);
        outcomes[record === undefined ? 'rejected' : 'accepted']++;
        if (record !== undefined) expectReencodes(record);
        // Untouched records of a valid shape must decode.
        if (changes.length === 0 && (extra === null || extra.length === 0) && hasPage(fields)) {
          expect(record).toBeDefined();
        }
      }),
      { numRuns: RUNS },
    );
    expect(outcomes.accepted).toBeGreaterThan(0);
    expect(outcomes.rejected).toBeGreaterThan(0);
  });
});

/** False only for a pages header listing no page at all, which version 2 rejects. */
function hasPage(fields: Record<string, unknown>): boolean {
  if (fields.type !== 'pages') return true;
  return (fields.pages as Uint8Array).length + (fields.zeros as Uint8Array).length > 0;
}

describe('the receiver state machine on arbitrary record sequences', () => {
  const events: ReceiverEvent[] = [...RECORD_TYPES, 'sent-prepared'];

  it('each record is either legal in the current state or ERR_UNEXPECTED_RECORD', () => {
    // Each step either follows a legal record of the current state (to reach deep states) or
    // throws in any event; an illegal one must leave the state where it was.
    const step = fc.tuple(fc.boolean(), fc.nat(), fc.constantFrom(...events));
    // Every state a connection can start in: with a pool key, without one, and past authentication.
    const initial = fc.constantFrom<ReceiverState>('await-auth', 'await-hello-or-auth', 'await-hello');
    fc.assert(
      fc.property(initial, fc.array(step, { maxLength: 40 }), (start, steps) => {
        let state: ReceiverState = start;
        for (const [followLegal, pick, randomEvent] of steps) {
          const legal: ReceiverEvent[] = [...expectedRecords(state), ...(state === 'complete-received' ? ['sent-prepared' as const] : [])];
          const event = followLegal && legal.length > 0 ? legal[pick % legal.length]! : randomEvent;
          try {
            state = receiverTransition(state, event);
            expect(legal).toContain(event);
          } catch (err) {
            expect((err as MigrationError).code).toBe('ERR_UNEXPECTED_RECORD');
            expect(legal).not.toContain(event);
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
