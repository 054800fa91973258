// Every field rule of every record (protocol.md §4), broken one at a time: the decoder answers
// ERR_MALFORMED_RECORD with a message naming the record, the field and what it expected.
import { pack } from 'msgpackr';
import { describe, expect, test } from 'vitest';

import { decodeFrame } from '../dist/protocol/codec.js';
import { writePageNumbers } from '../dist/protocol/page-list.js';

const digest = '0123456789abcdef';
const bytes32 = new Uint8Array(32);

/** One valid header of each record type, as it travels (device-state's state is its payload). */
const VALID: Record<string, Record<string, unknown>> = {
  'auth-hello': { nonce: bytes32 },
  'auth-challenge': { nonce: bytes32 },
  'auth-proof': { proof: bytes32 },
  'auth-ok': { proof: bytes32 },
  hello: {
    versions: [2],
    migrationId: 'm',
    domain: { kind: 'sim', name: 'g', memoryBytes: 4096, pageSize: 4096, vcpus: 1, config: {} },
    codec: 'lz4',
  },
  ready: { version: 2, migrationId: 'm' },
  pages: { round: 0, pages: new Uint8Array(0), zeros: writePageNumbers([1]), codec: 'none', rawLength: 0, checksum: digest, seq: 0 },
  'round-end': { round: 0, pages: 1 },
  'round-ack': { round: 0, batches: 1 },
  'pause-soon': {},
  collected: { ms: 1.5 },
  'device-state': {},
  complete: { batches: 1, digest },
  prepared: { digest },
  go: {},
  resumed: { resumeMs: 2, digest },
  abort: { code: 'ERR_X', message: 'why' },
  query: { migrationId: 'm', inspect: false },
  status: { migrationId: 'm', state: 'running' },
};

/** A value the field does not accept: no field but `inspect` takes a boolean. */
const wrong = (field: string): unknown => (field === 'inspect' ? 'yes' : true);

function frame(header: Record<string, unknown>): Uint8Array {
  const packed = pack(header);
  const out = new Uint8Array(4 + packed.length);
  new DataView(out.buffer).setUint32(0, packed.length, true);
  out.set(packed, 4);
  return out;
}

function failure(header: Record<string, unknown>): { code: string; message: string } {
  try {
    decodeFrame(frame(header));
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error(`${String(header.type)} was accepted`);
}

describe.each(Object.keys(VALID))('%s', (type) => {
  const fields = VALID[type]!;

  test('the valid header decodes', () => {
    expect(decodeFrame(frame({ type, ...fields })).type).toBe(type);
  });

  test('an unknown field is named, with the fields the record allows', () => {
    const error = failure({ type, ...fields, colour: 'blue' });
    expect(error.code).toBe('ERR_MALFORMED_RECORD');
    expect(error.message).toMatch(new RegExp(`^malformed ${type} record: unknown field "colour"; version 2 allows `));
    for (const field of Object.keys(fields)) expect(error.message).toContain(field);
  });

  const names = Object.keys(fields);
  if (names.length === 0) return;

  test.each(names)('field %s: a wrong value names the record, the field and what was expected', (field) => {
    const error = failure({ type, ...fields, [field]: wrong(field) });
    expect(error.code).toBe('ERR_MALFORMED_RECORD');
    expect(error.message).toMatch(new RegExp(`^malformed ${type} record: field "${field}" must be \\S.*, got (true|"yes")$`));
  });

  test.each(names)('field %s: leaving it out names it, unless it is optional', (field) => {
    const { [field]: _, ...rest } = fields;
    const optional = type === 'auth-ok' && field === 'proof';
    if (optional) {
      expect(decodeFrame(frame({ type, ...rest })).type).toBe(type);
      return;
    }
    const error = failure({ type, ...rest });
    expect(error.code).toBe('ERR_MALFORMED_RECORD');
    expect(error.message).toBe(`malformed ${type} record: missing field "${field}"`);
  });
});

test('a field of the domain descriptor is named by its path', () => {
  const hello = VALID.hello!;
  const domain = hello.domain as Record<string, unknown>;
  const error = failure({ type: 'hello', ...hello, domain: { ...domain, vcpus: 'two' } });
  expect(error.message).toBe('malformed hello record: field "domain.vcpus" must be a non-negative safe integer, got "two"');
});
