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

import { InvalidArgumentError, LimitExceededError, MalformedRecordError, MigrationError } from '../errors.js';
import { describeValue, MAX_TEXT_FIELD_CHARS, type Fields } from './field-checks.js';
import { scanHeader } from './header-scan.js';
import { DEFAULT_MAX_DATA_PAGES_PER_BATCH, DEFAULT_MAX_ZERO_PAGES_PER_BATCH, resolveLimits } from './limits.js';
import type { ProtocolLimits } from './limits.js';
import { PAGE_NUMBER_BYTES } from './page-list.js';
import {
  checkDeviceStateFrame,
  checkInspectionFrame,
  checkPagesHeader,
  checkPagesPayload,
  checkRecord,
  OPTIONAL_RECORD_TYPES,
  RECORD_TYPES,
  type TabledRecord,
} from './record-fields.js';
import type { IgnoredRecord, MigrationRecord, PagesRecord } from './records.js';

/** Bytes of the header-length prefix in front of every frame. */
export const FRAME_PREFIX_BYTES = 4;

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

// msgpackr keeps one growing output buffer per Packr and returns subarrays of it, so every
// encoder copies `pack()`'s result into its frame before packing anything else.
const packr = new Packr({ useRecords: false, variableMapSize: true });

// int64AsType 'number': 64-bit integers come back as numbers, and anything beyond 2^53 then
// fails the safe-integer checks instead of surfacing as a BigInt.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

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
export function encodeRecord(record: TabledRecord, limits?: Partial<ProtocolLimits>): Uint8Array {
  const resolved = resolveLimits(limits);
  if (typeof record !== 'object' || record === null) {
    throw new InvalidArgumentError(`encodeRecord expects a record object, got ${describeValue(record)}`);
  }
  if ((record as { type?: unknown }).type === 'pages') {
    throw new InvalidArgumentError('encodeRecord does not encode pages records; use encodePages or encodePagesInPlace');
  }
  const clean = checkRecord(record as unknown as Fields, resolved);
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
    throw new InvalidArgumentError(`encodePages expects the payload as a Uint8Array, got ${describeValue(payload)}`);
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
 * @returns A Uint8Array (never a Buffer) covering the whole frame; it shares `buffer`'s memory.
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
        `within a buffer of ${buffer instanceof Uint8Array ? buffer.length : describeValue(buffer)} bytes`,
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
  // A plain Uint8Array even when `buffer` is a Buffer, whose slice() would not copy.
  return new Uint8Array(buffer.buffer, buffer.byteOffset + start, payloadEnd - start);
}

/** Copies the fields of a pages header, so nothing else (a stray `payload`) gets packed. */
function pagesFields(header: Omit<PagesRecord, 'type' | 'payload'>): Fields {
  if (typeof header !== 'object' || header === null) {
    throw new InvalidArgumentError(`expected a pages header object, got ${describeValue(header)}`);
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
  const { fields, payload } = splitFrame(frame, resolved);
  // Any record may say it is optional; only an unknown one is affected: it is skipped.
  const optional = fields.optional;
  if (optional !== undefined && typeof optional !== 'boolean') {
    throw new MalformedRecordError(`the "optional" field must be a boolean, got ${describeValue(optional)}`);
  }
  delete fields.optional;
  if (optional === true && typeof fields.type === 'string' && !RECORD_TYPES.has(fields.type)) {
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
  if (fields.type === 'device-state') return checkDeviceStateFrame(fields, payload, resolved);
  // An inspection: the domain state is the payload (a domainState field is unknown here).
  if (fields.type === 'status' && fields.digest !== undefined) return checkInspectionFrame(fields, payload, resolved);
  const record = checkRecord(fields, resolved);
  if (payload.length !== 0) {
    throw new MalformedRecordError(
      `a ${record.type} record carries a payload of ${payload.length} bytes; only pages, device-state and inspecting status records have a payload`,
    );
  }
  return record;
}

/**
 * Checks a frame's sizes, walks and decodes its header, and returns the header's fields (not yet
 * checked) and a view of the payload.
 */
function splitFrame(frame: Uint8Array, limits: ProtocolLimits): { fields: Fields; payload: Uint8Array } {
  if (!(frame instanceof Uint8Array)) {
    throw new MalformedRecordError(`a frame must be binary (a Uint8Array), got ${describeValue(frame)}`);
  }
  if (frame.length > limits.maxFrameBytes) {
    throw new LimitExceededError(
      `received a frame of ${frame.length} bytes, over maxFrameBytes (${limits.maxFrameBytes}); ` +
        'the peer must send smaller batches, or raise the limit on this side',
    );
  }
  if (frame.length < FRAME_PREFIX_BYTES) {
    throw new MalformedRecordError(`truncated frame: ${frame.length} bytes, less than the ${FRAME_PREFIX_BYTES}-byte header length`);
  }
  const headerLength = (frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24)) >>> 0;
  if (headerLength > limits.maxHeaderBytes) {
    throw new LimitExceededError(
      `frame announces a header of ${headerLength} bytes, over maxHeaderBytes (${limits.maxHeaderBytes}); ` +
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
    throw new MalformedRecordError(`the header must be a msgpack map, got ${describeValue(decoded)}`);
  }
  const payload = new Uint8Array(frame.buffer, frame.byteOffset + payloadOffset, frame.length - payloadOffset);
  return { fields: decoded as Fields, payload };
}

function describeType(header: object): string {
  const type = (header as { type?: unknown }).type;
  return typeof type === 'string' ? type : 'record';
}

function errorText(err: unknown): string {
  if (err instanceof MigrationError) return err.message;
  return err instanceof Error ? err.message.slice(0, 200) : 'unknown error';
}
