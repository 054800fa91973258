/**
 * Frame encoding and decoding for protocol version 2 (`docs/protocol.md`, "Framing").
 *
 *     u32 little-endian header length | msgpack header (a map with string keys) | payload
 *
 * The decoder treats every frame as hostile: it checks the frame and header sizes against the
 * limits before decoding anything, walks the msgpack header once without allocating to bound
 * its nesting and declared lengths, decodes it with msgpackr, and then checks every field of the
 * record. Whatever it is given, it returns a typed record or throws `MalformedRecordError` or
 * `LimitExceededError`.
 *
 * The encoder runs the same field checks on what it is asked to send, so a record this side
 * encodes is one the other side accepts (under the same limits).
 *
 * Nothing here does I/O.
 */

import { Packr, Unpackr } from 'msgpackr';

import { PAGE_SIZE_BYTES } from '../domain/backend.js';
import type { DomainDescriptor } from '../domain/backend.js';
import { InvalidArgumentError, LimitExceededError, MalformedRecordError, MigrationError } from '../errors.js';
import {
  DEFAULT_MAX_DATA_PAGES_PER_BATCH,
  DEFAULT_MAX_ZERO_PAGES_PER_BATCH,
  resolveLimits,
} from './limits.js';
import type { ProtocolLimits } from './limits.js';
import type {
  AbortRecord,
  AuthChallengeRecord,
  AuthHelloRecord,
  AuthOkRecord,
  AuthProofRecord,
  CollectedRecord,
  CompleteRecord,
  DeviceStateRecord,
  GoRecord,
  GuestRecord,
  HelloRecord,
  MigrationRecord,
  PageCodec,
  PagesRecord,
  PauseSoonRecord,
  PreparedRecord,
  QueryRecord,
  ReadyRecord,
  RecordType,
  ResumedRecord,
  RoundEndRecord,
  RoundAckRecord,
  IgnoredRecord,
  StatusRecord,
} from './records.js';

/** Bytes of the header-length prefix in front of every frame. */
export const FRAME_PREFIX_BYTES = 4;

/**
 * Longest string field (ids, names, kinds, codes, messages), in UTF-16 code units. Fixed by the
 * protocol rather than a tunable limit: the header size limit already bounds memory, this keeps
 * logs and reports readable.
 */
export const MAX_TEXT_FIELD_CHARS = 1024;

/** Most entries in a hello record's `versions`. */
export const MAX_OFFERED_VERSIONS = 16;

/** Highest protocol version number a hello or ready record may carry. */
export const MAX_PROTOCOL_VERSION_NUMBER = 0xffff;

/**
 * Deepest nesting of maps and arrays in a header; the header map itself is level 1, so a hello
 * record's `domain.config` may nest up to {@link MAX_HEADER_NESTING} - 3 levels more.
 */
export const MAX_HEADER_NESTING = 32;

/**
 * Length of the nonces in `auth-hello` and `auth-challenge`, in bytes: 256 random bits, so a
 * nonce never repeats and an exchange recorded once can never be replayed against a fresh one.
 */
export const AUTH_NONCE_BYTES = 32;

/** Length of the proofs in `auth-proof` and `auth-ok`, in bytes: one HMAC-SHA256. */
export const AUTH_PROOF_BYTES = 32;

/** Size of one page-number entry in a page list, in bytes (u32 little-endian). */
export const PAGE_NUMBER_BYTES = 4;

/**
 * Upper bound on everything in a `pages` header except its two page lists: the map, the keys,
 * the type, codec and checksum strings, four integers at their widest (9 bytes each) and the
 * two bin headers come to at most 118 bytes; the rest is slack.
 */
const PAGES_HEADER_FIXED_BYTES = 160;

/**
 * Room to leave in front of a payload for {@link encodePagesInPlace}: the header-length prefix
 * plus the largest `pages` header with {@link DEFAULT_MAX_DATA_PAGES_PER_BATCH} data pages and
 * {@link DEFAULT_MAX_ZERO_PAGES_PER_BATCH} zero pages. In bytes.
 */
export const PAGES_HEADER_RESERVE_BYTES =
  FRAME_PREFIX_BYTES +
  PAGES_HEADER_FIXED_BYTES +
  PAGE_NUMBER_BYTES * (DEFAULT_MAX_DATA_PAGES_PER_BATCH + DEFAULT_MAX_ZERO_PAGES_PER_BATCH);

/** Largest evacuation priority a `guest` record may carry, either way from 0. */
export const MAX_GUEST_PRIORITY = 1_000_000;

/** Bytes of the uncompressed-size prefix that starts an `lz4` payload. */
export const LZ4_SIZE_PREFIX_BYTES = 4;

/**
 * Record types this encoder always marks `optional: true`: hints a peer can do without, which a
 * peer that does not know them skips instead of refusing (§7 of the spec).
 */
const OPTIONAL_RECORD_TYPES: ReadonlySet<string> = new Set<RecordType>(['pause-soon', 'collected', 'guest']);

/** Every record type of version 2. */
const RECORD_TYPES: ReadonlySet<string> = new Set<RecordType>([
  'auth-hello',
  'auth-challenge',
  'auth-proof',
  'auth-ok',
  'hello',
  'guest',
  'ready',
  'pages',
  'round-end',
  'pause-soon',
  'collected',
  'round-ack',
  'device-state',
  'complete',
  'prepared',
  'go',
  'resumed',
  'abort',
  'query',
  'status',
]);

const STATUS_STATES: ReadonlySet<string> = new Set<StatusRecord['state']>([
  'unknown',
  'receiving',
  'prepared',
  'running',
  'discarded',
]);

const HEX16 = /^[0-9a-f]{16}$/;

// msgpackr keeps one growing output buffer per Packr and returns subarrays of it, so every
// encoder copies `pack()`'s result into its frame before packing anything else.
const packr = new Packr({ useRecords: false, variableMapSize: true });

// int64AsType 'number': 64-bit integers come back as numbers, and anything beyond 2^53 then
// fails the safe-integer checks below instead of surfacing as a BigInt.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes any record but `pages` into a fresh frame: a `device-state` record's state and an
 * inspecting `status` record's domain state become the payload; every other record has none.
 *
 * @param record The record; it is checked as the decoder would check it.
 * @param limits Limits the record must respect; @default DEFAULT_LIMITS
 * @throws MalformedRecordError if a field is missing, unknown or of the wrong type.
 * @throws LimitExceededError if the record or its frame goes past a limit.
 * @throws InvalidArgumentError for a `pages` record (use {@link encodePages}).
 */
export function encodeRecord(
  record: Exclude<MigrationRecord, PagesRecord | IgnoredRecord>,
  limits?: Partial<ProtocolLimits>,
): Uint8Array {
  const resolved = resolveLimits(limits);
  if (typeof record !== 'object' || record === null) {
    throw new InvalidArgumentError(`encodeRecord expects a record object, got ${describe(record)}`);
  }
  if ((record as { type?: unknown }).type === 'pages') {
    throw new InvalidArgumentError('encodeRecord does not encode pages records; use encodePages or encodePagesInPlace');
  }
  const clean = checkRecord(record as unknown as Record<string, unknown>, resolved);
  // A domain's state may be far larger than any header, so it travels as the payload.
  let payload: Uint8Array | undefined;
  let fields: object = clean;
  if (clean.type === 'device-state') {
    payload = clean.state;
    fields = { type: clean.type };
  } else if (clean.type === 'status' && clean.domainState !== undefined) {
    const { domainState, ...rest } = clean;
    payload = domainState;
    fields = rest;
  }
  const header = packHeader(OPTIONAL_RECORD_TYPES.has(clean.type) ? { ...fields, optional: true } : fields, resolved);
  const length = FRAME_PREFIX_BYTES + header.length + (payload?.length ?? 0);
  checkFrameLength(length, resolved);
  const frame = new Uint8Array(length);
  const payloadOffset = writeFrameStart(frame, 0, header);
  if (payload) frame.set(payload, payloadOffset);
  return frame;
}

/**
 * Encodes a `pages` record into a fresh frame, copying `payload` in.
 *
 * @param header Every field but `type` and `payload`.
 * @param payload The page data: `rawLength` bytes for codec `none`; the lz4 block (with its
 *   4-byte size prefix) for `lz4`; empty when there are no data pages.
 * @param limits Limits the frame must respect; @default DEFAULT_LIMITS
 * @throws MalformedRecordError if a field is wrong or the payload does not match the header.
 * @throws LimitExceededError if a page list or the frame goes past a limit.
 */
export function encodePages(
  header: Omit<PagesRecord, 'type' | 'payload'>,
  payload: Uint8Array,
  limits?: Partial<ProtocolLimits>,
): Uint8Array {
  const resolved = resolveLimits(limits);
  if (!(payload instanceof Uint8Array)) {
    throw new InvalidArgumentError(`encodePages expects the payload as a Uint8Array, got ${describe(payload)}`);
  }
  const clean = checkPagesHeader(pagesFields(header), resolved);
  checkPagesPayload(clean, payload);
  const packed = packHeader(clean, resolved);
  const length = FRAME_PREFIX_BYTES + packed.length + payload.length;
  checkFrameLength(length, resolved);
  // Not zero-filled: every byte is written below.
  const frame = new Uint8Array(Buffer.allocUnsafeSlow(length).buffer, 0, length);
  const payloadOffset = writeFrameStart(frame, 0, packed);
  frame.set(payload, payloadOffset);
  return frame;
}

/**
 * Encodes a `pages` record around a payload that already sits in `buffer`, without copying it:
 * the header-length prefix and the header are written right-aligned so that they end exactly at
 * `payloadOffset`. Leave {@link PAGES_HEADER_RESERVE_BYTES} in front of the payload and any
 * header within the default batch limits fits.
 *
 * @param header Every field but `type` and `payload`.
 * @param buffer Holds the payload; the bytes in front of it are overwritten.
 * @param payloadOffset Where the payload starts in `buffer`, in bytes.
 * @param payloadLength Payload length in bytes.
 * @param limits Limits the frame must respect; @default DEFAULT_LIMITS
 * @returns A view of `buffer` covering the whole frame; it shares `buffer`'s memory.
 * @throws LimitExceededError if the header does not fit in front of the payload, or a page list
 *   or the frame goes past a limit.
 * @throws MalformedRecordError if a field is wrong or the payload does not match the header.
 * @throws InvalidArgumentError if the payload range lies outside `buffer`.
 */
export function encodePagesInPlace(
  header: Omit<PagesRecord, 'type' | 'payload'>,
  buffer: Uint8Array,
  payloadOffset: number,
  payloadLength: number,
  limits?: Partial<ProtocolLimits>,
): Uint8Array {
  const resolved = resolveLimits(limits);
  if (
    !(buffer instanceof Uint8Array) ||
    !Number.isSafeInteger(payloadOffset) ||
    !Number.isSafeInteger(payloadLength) ||
    payloadOffset < 0 ||
    payloadLength < 0 ||
    payloadOffset + payloadLength > buffer.length
  ) {
    throw new InvalidArgumentError(
      `encodePagesInPlace: payload at ${String(payloadOffset)} of length ${String(payloadLength)} does not lie ` +
        `within a buffer of ${buffer instanceof Uint8Array ? buffer.length : describe(buffer)} bytes`,
    );
  }
  const payloadEnd = payloadOffset + payloadLength;
  const clean = checkPagesHeader(pagesFields(header), resolved);
  checkPagesPayload(clean, buffer.subarray(payloadOffset, payloadEnd));
  const packed = packHeader(clean, resolved);
  const start = payloadOffset - FRAME_PREFIX_BYTES - packed.length;
  if (start < 0) {
    throw new LimitExceededError(
      `pages header needs ${FRAME_PREFIX_BYTES + packed.length} bytes in front of the payload but only ` +
        `${payloadOffset} are free; leave PAGES_HEADER_RESERVE_BYTES (${PAGES_HEADER_RESERVE_BYTES}) or send fewer pages per batch`,
    );
  }
  checkFrameLength(payloadEnd - start, resolved);
  writeFrameStart(buffer, start, packed);
  return buffer.subarray(start, payloadEnd);
}

/** Copies the fields of a pages header, so nothing else (a stray `payload`) gets packed. */
function pagesFields(header: Omit<PagesRecord, 'type' | 'payload'>): Record<string, unknown> {
  if (typeof header !== 'object' || header === null) {
    throw new InvalidArgumentError(`expected a pages header object, got ${describe(header)}`);
  }
  return {
    type: 'pages',
    round: header.round,
    pages: header.pages,
    zeros: header.zeros,
    codec: header.codec,
    rawLength: header.rawLength,
    checksum: header.checksum,
    seq: header.seq,
  };
}

/** Packs a checked header; the result is msgpackr's scratch memory, to be copied at once. */
function packHeader(header: object, limits: ProtocolLimits): Uint8Array {
  let packed: Uint8Array;
  try {
    packed = packr.pack(header);
  } catch (err) {
    throw new MalformedRecordError(`cannot encode the ${describeType(header)} header: ${errorText(err)}`, { cause: err });
  }
  if (packed.length > limits.maxHeaderBytes) {
    throw new LimitExceededError(
      `the ${describeType(header)} header is ${packed.length} bytes, over maxHeaderBytes (${limits.maxHeaderBytes}); ` +
        'send less in one record or raise the limit on both sides',
    );
  }
  return packed;
}

function checkFrameLength(length: number, limits: ProtocolLimits): void {
  if (length > limits.maxFrameBytes) {
    throw new LimitExceededError(
      `the frame would be ${length} bytes, over maxFrameBytes (${limits.maxFrameBytes}); ` +
        'send fewer pages per batch or raise the limit on both sides',
    );
  }
}

/** Writes the length prefix and the header at `start`; returns where the payload begins. */
function writeFrameStart(frame: Uint8Array, start: number, header: Uint8Array): number {
  const length = header.length;
  frame[start] = length & 0xff;
  frame[start + 1] = (length >>> 8) & 0xff;
  frame[start + 2] = (length >>> 16) & 0xff;
  frame[start + 3] = (length >>> 24) & 0xff;
  frame.set(header, start + FRAME_PREFIX_BYTES);
  return start + FRAME_PREFIX_BYTES + length;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes one frame into a typed record. Byte-string fields and the payload are views of
 * `frame` (no copy): keep `frame` untouched while the record is in use.
 *
 * @param frame One whole frame (one WebSocket binary message).
 * @param limits Limits to enforce; @default DEFAULT_LIMITS
 * @throws LimitExceededError if the frame, its header, a page list, the device state or the
 *   announced domain goes past a limit.
 * @throws MalformedRecordError for anything else that is not a valid version 2 record.
 */
export function decodeFrame(frame: Uint8Array, limits?: Partial<ProtocolLimits>): MigrationRecord {
  const resolved = resolveLimits(limits);
  if (!(frame instanceof Uint8Array)) {
    throw new MalformedRecordError(`a frame must be binary (a Uint8Array), got ${describe(frame)}`);
  }
  if (frame.length > resolved.maxFrameBytes) {
    throw new LimitExceededError(
      `received a frame of ${frame.length} bytes, over maxFrameBytes (${resolved.maxFrameBytes}); ` +
        'the peer must send smaller batches, or raise the limit on this side',
    );
  }
  if (frame.length < FRAME_PREFIX_BYTES) {
    throw new MalformedRecordError(`truncated frame: ${frame.length} bytes, less than the ${FRAME_PREFIX_BYTES}-byte header length`);
  }
  const headerLength = (frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24)) >>> 0;
  if (headerLength > resolved.maxHeaderBytes) {
    throw new LimitExceededError(
      `frame announces a header of ${headerLength} bytes, over maxHeaderBytes (${resolved.maxHeaderBytes}); ` +
        'the peer must send smaller records, or raise the limit on this side',
    );
  }
  if (headerLength === 0) {
    throw new MalformedRecordError('frame announces an empty header; every record has a msgpack map header');
  }
  const payloadOffset = FRAME_PREFIX_BYTES + headerLength;
  if (payloadOffset > frame.length) {
    throw new MalformedRecordError(
      `truncated frame: it announces a header of ${headerLength} bytes but holds only ${frame.length - FRAME_PREFIX_BYTES} after the length`,
    );
  }
  // A Buffer view so msgpackr can use Node's fast string slicing; bins come back as its subarrays.
  const headerBytes = Buffer.from(frame.buffer, frame.byteOffset + FRAME_PREFIX_BYTES, headerLength);
  scanHeader(headerBytes);
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(headerBytes);
  } catch (err) {
    throw new MalformedRecordError(`cannot decode the msgpack header: ${errorText(err)}`, { cause: err });
  }
  if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) {
    throw new MalformedRecordError(`the header must be a msgpack map, got ${describe(decoded)}`);
  }
  const payload = new Uint8Array(frame.buffer, frame.byteOffset + payloadOffset, frame.length - payloadOffset);
  const fields = decoded as Record<string, unknown>;
  // Any record may say it is optional; only an unknown one is affected: it is skipped.
  const optional = fields.optional;
  if (optional !== undefined && typeof optional !== 'boolean') {
    throw new MalformedRecordError(`the "optional" field must be a boolean, got ${describe(optional)}`);
  }
  delete fields.optional;
  if (optional === true && typeof fields.type === 'string' && fields.type !== 'pages' && !RECORD_TYPES.has(fields.type)) {
    if (fields.type.length === 0 || fields.type.length > MAX_TEXT_FIELD_CHARS) {
      throw new MalformedRecordError(`an optional record's type must be 1 to ${MAX_TEXT_FIELD_CHARS} characters`);
    }
    const ignored: IgnoredRecord = { type: 'ignored', recordType: fields.type };
    return ignored;
  }
  if (fields.type === 'pages') {
    const header = checkPagesHeader(fields, resolved);
    checkPagesPayload(header, payload);
    const record: PagesRecord = { ...header, payload };
    return record;
  }
  if (fields.type === 'device-state') {
    onlyFields(fields, 'device-state', []);
    return { type: 'device-state', state: checkDeviceState(payload, resolved, 'device state') };
  }
  if (fields.type === 'status' && fields.digest !== undefined) {
    // An inspection: the domain state is the payload (a domainState field is unknown here).
    onlyFields(fields, 'status', ['migrationId', 'state', 'digest']);
    return checkRecord({ ...fields, domainState: payload }, resolved);
  }
  const record = checkRecord(fields, resolved);
  if (payload.length !== 0) {
    throw new MalformedRecordError(
      `a ${record.type} record carries a payload of ${payload.length} bytes; only pages, device-state and inspecting status records have a payload`,
    );
  }
  return record;
}

/** A state blob (`what`: a device state, or an inspected one) within `maxDeviceStateBytes`. */
function checkDeviceState(state: Uint8Array, limits: ProtocolLimits, what: string): Uint8Array {
  if (state.length > limits.maxDeviceStateBytes) {
    throw new LimitExceededError(
      `${what} of ${state.length} bytes is over maxDeviceStateBytes (${limits.maxDeviceStateBytes}); raise the limit on the receiving side`,
    );
  }
  return state;
}

/**
 * Walks a msgpack header once, without decoding or allocating, and rejects what version 2 never
 * sends: anything but a map at the top, non-string map keys, extension types (msgpackr would
 * give them meaning: dates, typed arrays, records, references), the reserved 0xc1, nesting
 * deeper than {@link MAX_HEADER_NESTING}, declared lengths running past the end, and trailing
 * bytes. What passes is plain msgpack whose every length is backed by bytes, so msgpackr's work
 * and allocations are bounded by the header's size and its recursion by the nesting limit.
 */
function scanHeader(bytes: Uint8Array): void {
  const end = bytes.length;
  const first = bytes[0]!;
  if (!((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) {
    throw new MalformedRecordError(`the header must be a msgpack map; it starts with byte 0x${hexByte(first)}`);
  }
  // Values still to read at each open level; for a map, keys and values alternate, keys on even counts.
  const remaining: number[] = [1];
  const isMap: boolean[] = [false];
  let pos = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number, what: string): void => {
    if (n > end - pos) {
      throw new MalformedRecordError(`truncated header: ${what} at byte ${pos} runs past its end (${end} bytes)`);
    }
  };
  const open = (count: number, map: boolean): void => {
    // Every element takes at least one byte, so a count beyond the bytes left is a lie.
    need(map ? count * 2 : count, map ? `a map of ${count} entries` : `an array of ${count} elements`);
    if (remaining.length > MAX_HEADER_NESTING) {
      throw new MalformedRecordError(`the header nests deeper than ${MAX_HEADER_NESTING} levels`);
    }
    if (count > 0) {
      remaining.push(map ? count * 2 : count);
      isMap.push(map);
    }
  };
  while (remaining.length > 0) {
    const top = remaining.length - 1;
    if (remaining[top] === 0) {
      remaining.pop();
      isMap.pop();
      continue;
    }
    const isKey = isMap[top]! && remaining[top]! % 2 === 0;
    remaining[top]!--;
    need(1, 'a value');
    const token = bytes[pos++]!;
    if (isKey && !((token >= 0xa0 && token <= 0xbf) || (token >= 0xd9 && token <= 0xdb))) {
      throw new MalformedRecordError(`the header has a map key that is not a string (byte 0x${hexByte(token)} at ${pos - 1})`);
    }
    if (token <= 0x7f || token >= 0xe0) continue; // fixint
    if (token <= 0x8f) {
      open(token & 0x0f, true);
      continue;
    }
    if (token <= 0x9f) {
      open(token & 0x0f, false);
      continue;
    }
    if (token <= 0xbf) {
      const n = token & 0x1f;
      need(n, 'a string');
      pos += n;
      continue;
    }
    let n: number;
    switch (token) {
      case 0xc0: // nil
      case 0xc2: // false
      case 0xc3: // true
        break;
      case 0xcc: // uint8
      case 0xd0: // int8
        need(1, 'an integer');
        pos += 1;
        break;
      case 0xcd: // uint16
      case 0xd1: // int16
        need(2, 'an integer');
        pos += 2;
        break;
      case 0xca: // float32
      case 0xce: // uint32
      case 0xd2: // int32
        need(4, 'a number');
        pos += 4;
        break;
      case 0xcb: // float64
      case 0xcf: // uint64
      case 0xd3: // int64
        need(8, 'a number');
        pos += 8;
        break;
      case 0xc4: // bin8
      case 0xd9: // str8
        need(1, 'a length');
        n = bytes[pos]!;
        pos += 1;
        need(n, 'a byte or text string');
        pos += n;
        break;
      case 0xc5: // bin16
      case 0xda: // str16
        need(2, 'a length');
        n = view.getUint16(pos);
        pos += 2;
        need(n, 'a byte or text string');
        pos += n;
        break;
      case 0xc6: // bin32
      case 0xdb: // str32
        need(4, 'a length');
        n = view.getUint32(pos);
        pos += 4;
        need(n, 'a byte or text string');
        pos += n;
        break;
      case 0xdc: // array16
        need(2, 'a length');
        n = view.getUint16(pos);
        pos += 2;
        open(n, false);
        break;
      case 0xdd: // array32
        need(4, 'a length');
        n = view.getUint32(pos);
        pos += 4;
        open(n, false);
        break;
      case 0xde: // map16
        need(2, 'a length');
        n = view.getUint16(pos);
        pos += 2;
        open(n, true);
        break;
      case 0xdf: // map32
        need(4, 'a length');
        n = view.getUint32(pos);
        pos += 4;
        open(n, true);
        break;
      default:
        throw new MalformedRecordError(
          `the header holds msgpack type 0x${hexByte(token)} at byte ${pos - 1}; version 2 uses no extension types`,
        );
    }
  }
  if (pos !== end) {
    throw new MalformedRecordError(`the header holds ${end - pos} bytes after its map; the header length must cover exactly one map`);
  }
}

// ---------------------------------------------------------------------------------------------
// Field checks, shared by the encoder and the decoder

type Fields = Record<string, unknown>;

/** Checks a record of any type but `pages` and returns a fresh copy holding only its fields. */
function checkRecord(h: Fields, limits: ProtocolLimits): Exclude<MigrationRecord, PagesRecord | IgnoredRecord> {
  const type = h.type;
  if (typeof type !== 'string' || !RECORD_TYPES.has(type)) {
    throw new MalformedRecordError(
      `unknown record type ${describe(type)}; version 2 knows ${[...RECORD_TYPES].join(', ')} ` +
        '(a newer peer marks the records an older one may skip with optional: true)',
    );
  }
  switch (type as Exclude<RecordType, 'ignored'>) {
    case 'auth-hello': {
      onlyFields(h, 'auth-hello', ['nonce']);
      const record: AuthHelloRecord = { type: 'auth-hello', nonce: fixedBytes(h, 'nonce', 'auth-hello', AUTH_NONCE_BYTES) };
      return record;
    }
    case 'auth-challenge': {
      onlyFields(h, 'auth-challenge', ['nonce']);
      const record: AuthChallengeRecord = {
        type: 'auth-challenge',
        nonce: fixedBytes(h, 'nonce', 'auth-challenge', AUTH_NONCE_BYTES),
      };
      return record;
    }
    case 'auth-proof': {
      onlyFields(h, 'auth-proof', ['proof']);
      const record: AuthProofRecord = { type: 'auth-proof', proof: fixedBytes(h, 'proof', 'auth-proof', AUTH_PROOF_BYTES) };
      return record;
    }
    case 'auth-ok': {
      onlyFields(h, 'auth-ok', [], ['proof']);
      const record: AuthOkRecord = { type: 'auth-ok' };
      if (h.proof !== undefined) record.proof = fixedBytes(h, 'proof', 'auth-ok', AUTH_PROOF_BYTES);
      return record;
    }
    case 'hello': {
      onlyFields(h, 'hello', ['versions', 'migrationId', 'domain', 'codec']);
      const record: HelloRecord = {
        type: 'hello',
        versions: versionList(h, 'versions', 'hello'),
        migrationId: text(h, 'migrationId', 'hello', 1),
        domain: domainDescriptor(h.domain, limits),
        codec: pageCodec(h, 'codec', 'hello'),
      };
      return record;
    }
    case 'guest': {
      onlyFields(h, 'guest', ['id', 'priority']);
      const priority = h.priority;
      if (typeof priority !== 'number' || !Number.isInteger(priority) || Math.abs(priority) > MAX_GUEST_PRIORITY) {
        throw fieldError('guest', 'priority', `an integer from -${MAX_GUEST_PRIORITY} to ${MAX_GUEST_PRIORITY}`, priority);
      }
      const record: GuestRecord = { type: 'guest', id: text(h, 'id', 'guest', 1), priority };
      return record;
    }
    case 'ready': {
      onlyFields(h, 'ready', ['version', 'migrationId']);
      const record: ReadyRecord = {
        type: 'ready',
        version: versionNumber(h, 'version', 'ready'),
        migrationId: text(h, 'migrationId', 'ready', 1),
      };
      return record;
    }
    case 'round-end': {
      onlyFields(h, 'round-end', ['round', 'pages']);
      const record: RoundEndRecord = {
        type: 'round-end',
        round: count(h, 'round', 'round-end'),
        pages: count(h, 'pages', 'round-end'),
      };
      return record;
    }
    case 'round-ack': {
      onlyFields(h, 'round-ack', ['round', 'batches']);
      const record: RoundAckRecord = {
        type: 'round-ack',
        round: count(h, 'round', 'round-ack'),
        batches: count(h, 'batches', 'round-ack'),
      };
      return record;
    }
    case 'device-state': {
      // The record as a caller hands it to the encoder; on the wire the state is the payload.
      onlyFields(h, 'device-state', ['state']);
      const state = checkDeviceState(byteString(h, 'state', 'device-state'), limits, 'device state');
      const record: DeviceStateRecord = { type: 'device-state', state };
      return record;
    }
    case 'complete': {
      onlyFields(h, 'complete', ['batches', 'digest']);
      const record: CompleteRecord = {
        type: 'complete',
        batches: count(h, 'batches', 'complete'),
        digest: hex16(h, 'digest', 'complete'),
      };
      return record;
    }
    case 'prepared': {
      onlyFields(h, 'prepared', ['digest']);
      const record: PreparedRecord = { type: 'prepared', digest: hex16(h, 'digest', 'prepared') };
      return record;
    }
    case 'go': {
      onlyFields(h, 'go', []);
      const record: GoRecord = { type: 'go' };
      return record;
    }
    case 'pause-soon': {
      onlyFields(h, 'pause-soon', []);
      const record: PauseSoonRecord = { type: 'pause-soon' };
      return record;
    }
    case 'collected': {
      onlyFields(h, 'collected', ['ms']);
      const ms = peerTimeMs(h, 'ms', 'collected');
      const record: CollectedRecord = { type: 'collected', ms };
      return record;
    }
    case 'resumed': {
      onlyFields(h, 'resumed', ['resumeMs', 'digest']);
      const resumeMs = peerTimeMs(h, 'resumeMs', 'resumed');
      const record: ResumedRecord = { type: 'resumed', resumeMs, digest: hex16(h, 'digest', 'resumed') };
      return record;
    }
    case 'abort': {
      onlyFields(h, 'abort', ['code', 'message']);
      const record: AbortRecord = {
        type: 'abort',
        code: text(h, 'code', 'abort', 1),
        message: text(h, 'message', 'abort', 0),
      };
      return record;
    }
    case 'query': {
      onlyFields(h, 'query', ['migrationId', 'inspect']);
      const inspect = h.inspect;
      if (typeof inspect !== 'boolean') throw fieldError('query', 'inspect', 'a boolean', inspect);
      const record: QueryRecord = { type: 'query', migrationId: text(h, 'migrationId', 'query', 1), inspect };
      return record;
    }
    case 'status': {
      onlyFields(h, 'status', ['migrationId', 'state'], ['digest', 'domainState']);
      const state = h.state;
      if (typeof state !== 'string' || !STATUS_STATES.has(state)) {
        throw fieldError('status', 'state', `one of ${[...STATUS_STATES].join(', ')}`, state);
      }
      const record: StatusRecord = {
        type: 'status',
        migrationId: text(h, 'migrationId', 'status', 1),
        state: state as StatusRecord['state'],
      };
      // An inspection reports both, or neither: on the wire the state is the payload of a status
      // that has a digest.
      if ((h.digest === undefined) !== (h.domainState === undefined)) {
        throw new MalformedRecordError('malformed status record: "digest" and "domainState" come together (an inspection) or not at all');
      }
      if (h.digest !== undefined) record.digest = hex16(h, 'digest', 'status');
      if (h.domainState !== undefined) {
        record.domainState = checkDeviceState(byteString(h, 'domainState', 'status'), limits, 'status domain state');
      }
      return record;
    }
    case 'pages':
      // Pages headers go through checkPagesHeader; reaching here means a caller mixed them up.
      throw new InvalidArgumentError('pages records are checked by checkPagesHeader');
  }
}

/** The checked fields of a pages header. */
type PagesHeader = Omit<PagesRecord, 'payload'>;

/** Checks a pages header (without its payload) and returns a fresh copy of its fields. */
function checkPagesHeader(h: Fields, limits: ProtocolLimits): PagesHeader {
  onlyFields(h, 'pages', ['round', 'pages', 'zeros', 'codec', 'rawLength', 'checksum', 'seq']);
  const pages = pageList(h, 'pages', limits.maxDataPagesPerBatch, 'maxDataPagesPerBatch');
  const zeros = pageList(h, 'zeros', limits.maxZeroPagesPerBatch, 'maxZeroPagesPerBatch');
  const dataPages = pages.length / PAGE_NUMBER_BYTES;
  if (dataPages === 0 && zeros.length === 0) {
    throw new MalformedRecordError('malformed pages record: it lists no pages; a batch holds at least one data or zero page');
  }
  const rawLength = count(h, 'rawLength', 'pages');
  if (rawLength !== dataPages * PAGE_SIZE_BYTES) {
    throw new MalformedRecordError(
      `malformed pages record: rawLength is ${rawLength} but ${dataPages} data pages of ${PAGE_SIZE_BYTES} bytes make ${dataPages * PAGE_SIZE_BYTES}`,
    );
  }
  return {
    type: 'pages',
    round: count(h, 'round', 'pages'),
    pages,
    zeros,
    codec: pageCodec(h, 'codec', 'pages'),
    rawLength,
    checksum: hex16(h, 'checksum', 'pages'),
    seq: count(h, 'seq', 'pages'),
  };
}

/**
 * Checks what can be checked of a payload without decompressing it: its length for `none`, the
 * uncompressed-size prefix for `lz4`, and that a batch without data pages has no payload.
 */
function checkPagesPayload(header: PagesHeader, payload: Uint8Array): void {
  if (header.rawLength === 0) {
    if (payload.length !== 0) {
      throw new MalformedRecordError(
        `malformed pages record: it has no data pages but a payload of ${payload.length} bytes; the payload must be empty`,
      );
    }
    return;
  }
  if (header.codec === 'none') {
    if (payload.length !== header.rawLength) {
      throw new MalformedRecordError(
        `malformed pages record: codec none needs a payload of rawLength (${header.rawLength}) bytes, got ${payload.length}`,
      );
    }
    return;
  }
  if (payload.length < LZ4_SIZE_PREFIX_BYTES) {
    throw new MalformedRecordError(
      `malformed pages record: an lz4 payload starts with a ${LZ4_SIZE_PREFIX_BYTES}-byte size, but the payload has ${payload.length} bytes`,
    );
  }
  const announced = (payload[0]! | (payload[1]! << 8) | (payload[2]! << 16) | (payload[3]! << 24)) >>> 0;
  if (announced !== header.rawLength) {
    throw new MalformedRecordError(
      `malformed pages record: the lz4 payload decompresses to ${announced} bytes by its size prefix, but rawLength is ${header.rawLength}`,
    );
  }
}

function domainDescriptor(value: unknown, limits: ProtocolLimits): DomainDescriptor {
  if (!isPlainObject(value)) throw fieldError('hello', 'domain', 'a map (the domain descriptor)', value);
  onlyFields(value, 'hello', ['kind', 'name', 'memoryBytes', 'pageSize', 'vcpus', 'config'], [], 'domain.');
  const kind = text(value, 'kind', 'hello', 1, 'domain.');
  const name = text(value, 'name', 'hello', 0, 'domain.');
  const pageSize = value.pageSize;
  if (pageSize !== PAGE_SIZE_BYTES) {
    throw fieldError('hello', 'domain.pageSize', `${PAGE_SIZE_BYTES} (the only page size of version 2)`, pageSize);
  }
  const memoryBytes = count(value, 'memoryBytes', 'hello', 'domain.');
  if (memoryBytes === 0 || memoryBytes % PAGE_SIZE_BYTES !== 0) {
    throw fieldError('hello', 'domain.memoryBytes', `a positive multiple of ${PAGE_SIZE_BYTES}`, memoryBytes);
  }
  if (memoryBytes > limits.maxGuestMemoryBytes) {
    throw new LimitExceededError(
      `the domain has ${memoryBytes} bytes of memory, over maxGuestMemoryBytes (${limits.maxGuestMemoryBytes}); ` +
        'raise the limit on the target or migrate a smaller domain',
    );
  }
  const vcpus = count(value, 'vcpus', 'hello', 'domain.');
  if (vcpus === 0) throw fieldError('hello', 'domain.vcpus', 'at least 1', vcpus);
  if (vcpus > limits.maxVcpus) {
    throw new LimitExceededError(`the domain has ${vcpus} vCPUs, over maxVcpus (${limits.maxVcpus}); raise the limit on the target`);
  }
  if (!isPlainObject(value.config)) throw fieldError('hello', 'domain.config', 'a map', value.config);
  // The header map is level 1, the descriptor level 2, its config level 3.
  const config = plainMap(value.config, 'domain.config', 3);
  return { kind, name, memoryBytes, pageSize, vcpus, config };
}

/**
 * Checks that a backend's config is plain data (what a msgpack map of strings, finite numbers,
 * booleans, nil, arrays and maps decodes to) and returns a copy of it. Map entries whose value is
 * `undefined` are left out, as JSON does; anything else (a Date, a typed array, a BigInt) is
 * refused, because msgpackr would encode it as an extension type that the decoder refuses.
 * `depth` is the nesting level of `value` within the header.
 */
function plainData(value: unknown, path: string, depth: number): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw fieldError('hello', path, 'a finite number', value);
    return value;
  }
  if (depth > MAX_HEADER_NESTING) {
    throw new MalformedRecordError(`malformed hello record: ${path} nests deeper than the header allows (${MAX_HEADER_NESTING} levels)`);
  }
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    for (let i = 0; i < value.length; i++) copy.push(plainData(value[i], `${path}[${i}]`, depth + 1));
    return copy;
  }
  if (isPlainObject(value)) return plainMap(value, path, depth);
  throw fieldError('hello', path, 'plain data (nil, boolean, number, string, array or map)', value);
}

function plainMap(value: Fields, path: string, depth: number): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (item === undefined) continue;
    // An own "__proto__" key would set the copy's prototype; msgpackr renames it on decoding.
    if (key === '__proto__') throw fieldError('hello', `${path}.__proto__`, 'absent (the key is reserved)', item);
    copy[key] = plainData(item, `${path}.${key}`, depth + 1);
  }
  return copy;
}

/** Rejects unknown fields and missing required ones; `undefined` counts as absent. */
function onlyFields(h: Fields, type: string, required: readonly string[], optional: readonly string[] = [], prefix = ''): void {
  for (const key of Object.keys(h)) {
    if (key === 'type' && prefix === '') continue;
    if (h[key] === undefined) continue;
    if (!required.includes(key) && !optional.includes(key)) {
      const allowed = [...required, ...optional];
      throw new MalformedRecordError(
        `malformed ${type} record: unknown field ${describe(prefix + key)}; version 2 allows ${allowed.length > 0 ? allowed.join(', ') : 'no fields'}` +
          (prefix === '' ? '' : ` in ${prefix.slice(0, -1)}`),
      );
    }
  }
  for (const key of required) {
    if (h[key] === undefined) {
      throw new MalformedRecordError(`malformed ${type} record: missing field "${prefix}${key}"`);
    }
  }
}

/** A safe non-negative integer (counts, rounds, sequence numbers, sizes). */
function count(h: Fields, key: string, type: string, prefix = ''): number {
  const value = h[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw fieldError(type, prefix + key, 'a non-negative safe integer', value);
  }
  return value;
}

function text(h: Fields, key: string, type: string, minChars: number, prefix = ''): string {
  const value = h[key];
  if (typeof value !== 'string' || value.length < minChars || value.length > MAX_TEXT_FIELD_CHARS) {
    throw fieldError(type, prefix + key, `a string of ${minChars} to ${MAX_TEXT_FIELD_CHARS} characters`, value);
  }
  return value;
}

function hex16(h: Fields, key: string, type: string): string {
  const value = h[key];
  if (typeof value !== 'string' || !HEX16.test(value)) {
    throw fieldError(type, key, '16 lowercase hex digits', value);
  }
  return value;
}

function pageCodec(h: Fields, key: string, type: string): PageCodec {
  const value = h[key];
  if (value !== 'none' && value !== 'lz4') throw fieldError(type, key, '"none" or "lz4"', value);
  return value;
}

/**
 * The longest time a peer may report, in milliseconds (a day): a duration past it is no
 * measurement but a corrupt or hostile field, and would poison every figure computed from it.
 */
export const MAX_PEER_TIME_MS = 86_400_000;

/** A time the peer measured on its own clock: finite, from 0 to {@link MAX_PEER_TIME_MS}. */
function peerTimeMs(h: Fields, key: string, type: string): number {
  const ms = h[key];
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_PEER_TIME_MS) {
    throw fieldError(type, key, `a finite number of milliseconds from 0 to ${MAX_PEER_TIME_MS}`, ms);
  }
  return ms;
}

function versionNumber(h: Fields, key: string, type: string): number {
  const value = h[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_PROTOCOL_VERSION_NUMBER) {
    throw fieldError(type, key, `an integer from 1 to ${MAX_PROTOCOL_VERSION_NUMBER}`, value);
  }
  return value;
}

function versionList(h: Fields, key: string, type: string): number[] {
  const value = h[key];
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_OFFERED_VERSIONS) {
    throw fieldError(type, key, `an array of 1 to ${MAX_OFFERED_VERSIONS} version numbers`, value);
  }
  const versions: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const v: unknown = value[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_PROTOCOL_VERSION_NUMBER) {
      throw fieldError(type, `${key}[${i}]`, `an integer from 1 to ${MAX_PROTOCOL_VERSION_NUMBER}`, v);
    }
    versions.push(v);
  }
  return versions;
}

/** A byte string, as a plain Uint8Array view of the same memory. */
function byteString(h: Fields, key: string, type: string): Uint8Array {
  const value = h[key];
  if (!(value instanceof Uint8Array)) throw fieldError(type, key, 'a byte string (msgpack bin)', value);
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

/** A byte string of exactly `length` bytes (nonces, proofs). */
function fixedBytes(h: Fields, key: string, type: string, length: number): Uint8Array {
  const bytes = byteString(h, key, type);
  if (bytes.length !== length) throw fieldError(type, key, `a byte string of exactly ${length} bytes`, bytes);
  return bytes;
}

function pageList(h: Fields, key: 'pages' | 'zeros', max: number, limitName: string): Uint8Array {
  const bytes = byteString(h, key, 'pages');
  if (bytes.length % PAGE_NUMBER_BYTES !== 0) {
    throw new MalformedRecordError(
      `malformed pages record: "${key}" is ${bytes.length} bytes long, not a multiple of ${PAGE_NUMBER_BYTES} (one u32 per page)`,
    );
  }
  const n = bytes.length / PAGE_NUMBER_BYTES;
  if (n > max) {
    throw new LimitExceededError(`a pages record lists ${n} ${key === 'pages' ? 'data' : 'zero'} pages, over ${limitName} (${max})`);
  }
  return bytes;
}

function isPlainObject(value: unknown): value is Fields {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function fieldError(type: string, field: string, expected: string, got: unknown): MalformedRecordError {
  return new MalformedRecordError(`malformed ${type} record: field "${field}" must be ${expected}, got ${describe(got)}`);
}

/** A short description of a value for error messages; never echoes more than a few characters. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'nil';
  if (typeof value === 'string') {
    return value.length <= 40 ? JSON.stringify(value) : `a string of ${value.length} characters`;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'bigint') return `the big integer ${value > 10n ** 30n ? 'beyond 10^30' : String(value)}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'a map';
  return typeof value;
}

function describeType(header: object): string {
  const type = (header as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'record';
}

function errorText(err: unknown): string {
  if (err instanceof MigrationError) return err.message;
  return err instanceof Error ? err.message.slice(0, 200) : 'unknown error';
}

function hexByte(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}

// ---------------------------------------------------------------------------------------------
// Page lists

/**
 * Reads a page list (u32 little-endian entries) into page numbers. When `bytes` is 4-byte
 * aligned and the host is little-endian the result is a view of the same memory; otherwise it
 * is a copy. msgpackr's byte strings often sit at odd offsets, so do not rely on either.
 *
 * @throws MalformedRecordError if the length is not a multiple of 4.
 */
export function readPageNumbers(bytes: Uint8Array): Uint32Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new InvalidArgumentError(`readPageNumbers expects a Uint8Array, got ${describe(bytes)}`);
  }
  if (bytes.length % PAGE_NUMBER_BYTES !== 0) {
    throw new MalformedRecordError(`a page list of ${bytes.length} bytes is not a multiple of ${PAGE_NUMBER_BYTES} bytes`);
  }
  const n = bytes.length / PAGE_NUMBER_BYTES;
  if (HOST_IS_LITTLE_ENDIAN && bytes.byteOffset % PAGE_NUMBER_BYTES === 0) {
    return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  }
  const out = new Uint32Array(n);
  if (HOST_IS_LITTLE_ENDIAN) {
    // Unaligned: one copy into aligned memory.
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(i * PAGE_NUMBER_BYTES, true);
  return out;
}

/**
 * Writes page numbers as a page list: `count` u32 little-endian entries in a fresh buffer.
 *
 * @param pfns Page numbers; each an integer from 0 to 2^32 - 1.
 * @param count How many of `pfns` to write, from the start; @default pfns.length
 * @throws InvalidArgumentError if `count` is out of range or an entry is not a u32.
 */
export function writePageNumbers(pfns: Uint32Array | readonly number[], count: number = pfns.length): Uint8Array {
  if (!Number.isSafeInteger(count) || count < 0 || count > pfns.length) {
    throw new InvalidArgumentError(`writePageNumbers: count ${String(count)} is not within 0..${pfns.length}`);
  }
  const out = new Uint8Array(count * PAGE_NUMBER_BYTES);
  if (pfns instanceof Uint32Array) {
    if (HOST_IS_LITTLE_ENDIAN) {
      out.set(new Uint8Array(pfns.buffer, pfns.byteOffset, count * PAGE_NUMBER_BYTES));
      return out;
    }
    const view = new DataView(out.buffer);
    for (let i = 0; i < count; i++) view.setUint32(i * PAGE_NUMBER_BYTES, pfns[i]!, true);
    return out;
  }
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    const pfn = pfns[i];
    if (typeof pfn !== 'number' || !Number.isInteger(pfn) || pfn < 0 || pfn > 0xffffffff) {
      throw new InvalidArgumentError(`writePageNumbers: entry ${i} (${describe(pfn)}) is not a page number (0..2^32-1)`);
    }
    view.setUint32(i * PAGE_NUMBER_BYTES, pfn, true);
  }
  return out;
}
