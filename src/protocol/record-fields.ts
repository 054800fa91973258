/**
 * The fields of every record of version 2 (docs/protocol.md §4), as tables: for each record, each
 * field's check and whether it may be left out. The tables are typed against `records.ts`, so a
 * field added to a record type and not here (or the other way round) does not compile.
 *
 * The same checks serve the decoder and the encoder: a header that arrives, and a record this side
 * is asked to send, pass or fail alike. A header holds exactly the fields of its record's table: an
 * unknown field, a missing required one or a wrong value is `MalformedRecordError` naming the
 * record, the field and what was expected; a value past a limit is `LimitExceededError`.
 */

import { InvalidArgumentError, LimitExceededError, MalformedRecordError } from '../errors.js';
import { AUTH_NONCE_BYTES, AUTH_PROOF_BYTES } from './auth.js';
import {
  boolean,
  byteString,
  channelCounts,
  checkStateSize,
  count,
  describeValue,
  fieldError,
  fixedBytes,
  hex16,
  isPlainObject,
  oneOf,
  peerTimeMs,
  stateBlob,
  text,
  versionList,
  versionNumber,
  type FieldCheck,
  type Fields,
} from './field-checks.js';
import { MAX_HEADER_NESTING } from './header-scan.js';
import type { ProtocolLimits } from './limits.js';
import { BATCH_CODECS, checkBatchPayload, PAGE_CODECS } from './page-codecs.js';
import { PAGE_NUMBER_BYTES } from './page-list.js';
import {
  PAGE_SIZE_BYTES,
  type DeviceStateRecord,
  type DomainDescriptor,
  type IgnoredRecord,
  type MigrationRecord,
  type PagesRecord,
  type RecordType,
  type StatusRecord,
} from './records.js';

/** Records whose fields live in {@link RECORD_FIELDS}; `pages` has its own table. */
type TabledType = Exclude<RecordType, 'ignored' | 'pages'>;

/** Every record but `pages` and `ignored`, as the encoder takes it and the decoder returns it. */
export type TabledRecord = Exclude<MigrationRecord, PagesRecord | IgnoredRecord>;

/** The checked fields of a pages header (everything but its payload). */
export type PagesHeader = Omit<PagesRecord, 'payload'>;

interface FieldRule<V> {
  readonly check: FieldCheck<V>;
  /** True if the field may be left out (it is never sent as nil). */
  readonly optional: boolean;
}

const required = <V>(check: FieldCheck<V>): FieldRule<V> & { optional: false } => ({ check, optional: false });
const optional = <V>(check: FieldCheck<V>): FieldRule<V> & { optional: true } => ({ check, optional: true });

/** A rule for every field of `R` but its type, optional exactly where `R` makes the field optional. */
type FieldTable<R> = {
  readonly [K in Exclude<keyof R, 'type'>]-?: object extends Pick<R, K>
    ? FieldRule<NonNullable<R[K]>> & { optional: true }
    : FieldRule<R[K]> & { optional: false };
};

/** The domain descriptor of a `hello`, checked in the order its fields are listed. */
const DOMAIN_FIELDS: FieldTable<DomainDescriptor> = {
  kind: required(text(1)),
  name: required(text(0)),
  pageSize: required((value, record, field) => {
    if (value !== PAGE_SIZE_BYTES) throw fieldError(record, field, `${PAGE_SIZE_BYTES} (the only page size of version 2)`, value);
    return value;
  }),
  memoryBytes: required((value, record, field, limits) => {
    const bytes = count(value, record, field, limits);
    if (bytes === 0 || bytes % PAGE_SIZE_BYTES !== 0) throw fieldError(record, field, `a positive multiple of ${PAGE_SIZE_BYTES}`, bytes);
    if (bytes > limits.maxGuestMemoryBytes) {
      throw new LimitExceededError(
        `the domain has ${bytes} bytes of memory, over maxGuestMemoryBytes (${limits.maxGuestMemoryBytes}); ` +
          'raise the limit on the target or migrate a smaller domain',
      );
    }
    return bytes;
  }),
  vcpus: required((value, record, field, limits) => {
    const vcpus = count(value, record, field, limits);
    if (vcpus === 0) throw fieldError(record, field, 'at least 1', vcpus);
    if (vcpus > limits.maxVcpus) {
      throw new LimitExceededError(`the domain has ${vcpus} vCPUs, over maxVcpus (${limits.maxVcpus}); raise the limit on the target`);
    }
    return vcpus;
  }),
  // The header map is level 1, the descriptor level 2, its config level 3.
  config: required((value, record, field) => {
    if (!isPlainObject(value)) throw fieldError(record, field, 'a map', value);
    return plainMap(value, record, field, 3);
  }),
};

const domainDescriptor: FieldCheck<DomainDescriptor> = (value, record, field, limits) => {
  if (!isPlainObject(value)) throw fieldError(record, field, 'a map (the domain descriptor)', value);
  return copyFields(value, record, DOMAIN_FIELDS, limits, `${field}.`, {}) as unknown as DomainDescriptor;
};

const pageCodec = oneOf(PAGE_CODECS);
const batchCodec = oneOf(BATCH_CODECS);

/** Largest evacuation priority a `guest` record may carry, either way from 0. */
export const MAX_GUEST_PRIORITY = 1_000_000;

const guestPriority: FieldCheck<number> = (value, record, field) => {
  if (typeof value !== 'number' || !Number.isInteger(value) || Math.abs(value) > MAX_GUEST_PRIORITY) {
    throw fieldError(record, field, `an integer from -${MAX_GUEST_PRIORITY} to ${MAX_GUEST_PRIORITY}`, value);
  }
  return value;
};

/** How many page channels a migration has: 2 to `maxChannels` (one channel is no channel-hello). */
const channelTotal: FieldCheck<number> = (value, record, field, limits) => {
  const n = count(value, record, field, limits);
  if (n < 2) throw fieldError(record, field, 'at least 2', n);
  if (n > limits.maxChannels) {
    throw new LimitExceededError(`the migration asks for ${n} page channels, over maxChannels (${limits.maxChannels}); ask for fewer`);
  }
  return n;
};

/** The fields of each record type but `pages`, in the order they are checked. */
const RECORD_FIELDS: { readonly [T in TabledType]: FieldTable<Extract<MigrationRecord, { type: T }>> } = {
  'auth-hello': { nonce: required(fixedBytes(AUTH_NONCE_BYTES)) },
  'auth-challenge': { nonce: required(fixedBytes(AUTH_NONCE_BYTES)) },
  'auth-proof': { proof: required(fixedBytes(AUTH_PROOF_BYTES)) },
  'auth-ok': { proof: optional(fixedBytes(AUTH_PROOF_BYTES)) },
  hello: {
    versions: required(versionList),
    migrationId: required(text(1)),
    domain: required(domainDescriptor),
    codec: required(pageCodec),
  },
  guest: { id: required(text(1)), priority: required(guestPriority) },
  ready: { version: required(versionNumber), migrationId: required(text(1)) },
  'round-end': { round: required(count), pages: required(count), channels: optional(channelCounts) },
  'channel-hello': { migrationId: required(text(1)), channel: required(count), of: required(channelTotal) },
  'channel-ready': { channel: required(count) },
  'pause-soon': {},
  collected: { ms: required(peerTimeMs) },
  'round-ack': { round: required(count), batches: required(count) },
  // The record as a caller hands it to the encoder; on the wire the state is the payload.
  'device-state': { state: required(stateBlob('device state')) },
  complete: { batches: required(count), digest: required(hex16) },
  prepared: { digest: required(hex16) },
  go: {},
  resumed: { resumeMs: required(peerTimeMs), digest: required(hex16) },
  abort: { code: required(text(1)), message: required(text(0)) },
  query: { migrationId: required(text(1)), inspect: required(boolean) },
  // An inspection reports digest and domainState together; on the wire the state is the payload.
  status: {
    migrationId: required(text(1)),
    state: required(oneOf<StatusRecord['state']>(['unknown', 'receiving', 'prepared', 'running', 'discarded'])),
    digest: optional(hex16),
    domainState: optional(stateBlob('status domain state')),
  },
};

/** Page lists, within their limit; `which` names the pages in the error. */
function pageList(which: 'data' | 'zero', limitName: 'maxDataPagesPerBatch' | 'maxZeroPagesPerBatch'): FieldCheck<Uint8Array> {
  return (value, record, field, limits) => {
    const bytes = byteString(value, record, field, limits);
    if (bytes.length % PAGE_NUMBER_BYTES !== 0) {
      throw new MalformedRecordError(
        `malformed ${record} record: "${field}" is ${bytes.length} bytes long, not a multiple of ${PAGE_NUMBER_BYTES} (one u32 per page)`,
      );
    }
    const n = bytes.length / PAGE_NUMBER_BYTES;
    if (n > limits[limitName]) {
      throw new LimitExceededError(`a pages record lists ${n} ${which} pages, over ${limitName} (${limits[limitName]})`);
    }
    return bytes;
  };
}

const PAGES_FIELDS: FieldTable<PagesHeader> = {
  round: required(count),
  pages: required(pageList('data', 'maxDataPagesPerBatch')),
  zeros: required(pageList('zero', 'maxZeroPagesPerBatch')),
  codec: required(batchCodec),
  rawLength: required(count),
  checksum: required(hex16),
  seq: required(count),
};

/** The header of an inspecting `status` on the wire: its domain state is the payload. */
const INSPECTION_HEADER_FIELDS = {
  migrationId: RECORD_FIELDS.status.migrationId,
  state: RECORD_FIELDS.status.state,
  digest: required(hex16),
};

/** Every record type of version 2, in the order of the spec's table. */
export const RECORD_TYPES: ReadonlySet<string> = new Set<string>(
  Object.keys(RECORD_FIELDS).flatMap((type) => (type === 'ready' ? [type, 'pages'] : [type])),
);

/**
 * Record types the encoder always marks `optional: true`: hints a peer can do without, which a
 * peer that does not know them skips instead of refusing (docs/protocol.md §7).
 */
export const OPTIONAL_RECORD_TYPES: ReadonlySet<string> = new Set<RecordType>(['pause-soon', 'collected', 'guest']);

/** Checks a record of any type but `pages` and returns a fresh copy holding only its fields. */
export function checkRecord(h: Fields, limits: ProtocolLimits): TabledRecord {
  const type = h.type;
  if (typeof type !== 'string' || !RECORD_TYPES.has(type)) {
    throw new MalformedRecordError(
      `unknown record type ${describeValue(type)}; version 2 knows ${[...RECORD_TYPES].join(', ')} ` +
        '(a newer peer marks the records an older one may skip with optional: true)',
    );
  }
  if (type === 'pages') throw new InvalidArgumentError('pages records are checked by checkPagesHeader');
  const record = copyFields(h, type, RECORD_FIELDS[type as TabledType], limits, '', { type }) as unknown as TabledRecord;
  if (record.type === 'status' && (record.digest === undefined) !== (record.domainState === undefined)) {
    throw new MalformedRecordError('malformed status record: "digest" and "domainState" come together (an inspection) or not at all');
  }
  return record;
}

/** Checks a pages header (without its payload) and returns a fresh copy of its fields. */
export function checkPagesHeader(h: Fields, limits: ProtocolLimits): PagesHeader {
  const header = copyFields(h, 'pages', PAGES_FIELDS, limits, '', { type: 'pages' }) as unknown as PagesHeader;
  const dataPages = header.pages.length / PAGE_NUMBER_BYTES;
  if (dataPages === 0 && header.zeros.length === 0) {
    throw new MalformedRecordError('malformed pages record: it lists no pages; a batch holds at least one data or zero page');
  }
  if (header.rawLength !== dataPages * PAGE_SIZE_BYTES) {
    throw new MalformedRecordError(
      `malformed pages record: rawLength is ${header.rawLength} but ${dataPages} data pages of ${PAGE_SIZE_BYTES} bytes make ${dataPages * PAGE_SIZE_BYTES}`,
    );
  }
  return header;
}

/**
 * Checks what can be checked of a payload without decoding it: that a batch without data pages
 * has none, whatever its codec, and otherwise what its codec checks (docs/protocol.md §5).
 */
export function checkPagesPayload(header: PagesHeader, payload: Uint8Array): void {
  if (header.rawLength === 0) {
    if (payload.length !== 0) {
      throw new MalformedRecordError(
        `malformed pages record: it has no data pages but a payload of ${payload.length} bytes; the payload must be empty`,
      );
    }
    return;
  }
  checkBatchPayload(header.codec, payload, header.rawLength);
}

/** A `device-state` frame: the header holds nothing but the type, the state is the payload. */
export function checkDeviceStateFrame(h: Fields, payload: Uint8Array, limits: ProtocolLimits): DeviceStateRecord {
  checkFieldNames(h, 'device-state', {}, '');
  return { type: 'device-state', state: checkStateSize(payload, limits, 'device state') };
}

/** An inspecting `status` frame: the header has a digest (and no domainState), the state is the payload. */
export function checkInspectionFrame(h: Fields, payload: Uint8Array, limits: ProtocolLimits): StatusRecord {
  checkFieldNames(h, 'status', INSPECTION_HEADER_FIELDS, '');
  return checkRecord({ ...h, domainState: payload }, limits) as StatusRecord;
}

/**
 * Checks `h` against `table` and copies each field present, checked, into `out`. `prefix` is the
 * path of a nested map (`domain.`) for error messages.
 */
function copyFields(h: Fields, record: string, table: object, limits: ProtocolLimits, prefix: string, out: Fields): Fields {
  const rules = table as Readonly<Record<string, FieldRule<unknown>>>;
  checkFieldNames(h, record, rules, prefix);
  for (const key in rules) {
    const value = h[key];
    if (value !== undefined) out[key] = rules[key]!.check(value, record, prefix + key, limits);
  }
  return out;
}

/** Rejects unknown fields and missing required ones; `undefined` counts as absent. */
function checkFieldNames(h: Fields, record: string, rules: Readonly<Record<string, FieldRule<unknown>>>, prefix: string): void {
  for (const key of Object.keys(h)) {
    if ((key === 'type' && prefix === '') || h[key] === undefined) continue;
    if (!Object.hasOwn(rules, key)) {
      const allowed = Object.keys(rules);
      throw new MalformedRecordError(
        `malformed ${record} record: unknown field ${describeValue(prefix + key)}; version 2 allows ${allowed.length > 0 ? allowed.join(', ') : 'no fields'}` +
          (prefix === '' ? '' : ` in ${prefix.slice(0, -1)}`),
      );
    }
  }
  for (const key in rules) {
    if (!rules[key]!.optional && h[key] === undefined) {
      throw new MalformedRecordError(`malformed ${record} record: missing field "${prefix}${key}"`);
    }
  }
}

/**
 * Checks that a backend's config is plain data (what a msgpack map of strings, finite numbers,
 * booleans, nil, arrays and maps decodes to) and returns a copy of it. Map entries whose value is
 * `undefined` are left out, as JSON does; anything else (a Date, a typed array, a BigInt) is
 * refused, because msgpackr would encode it as an extension type that the decoder refuses.
 * `depth` is the nesting level of `value` within the header.
 */
function plainData(value: unknown, record: string, path: string, depth: number): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw fieldError(record, path, 'a finite number', value);
    return value;
  }
  if (depth > MAX_HEADER_NESTING) {
    throw new MalformedRecordError(`malformed ${record} record: ${path} nests deeper than the header allows (${MAX_HEADER_NESTING} levels)`);
  }
  if (Array.isArray(value)) {
    const copy: unknown[] = [];
    for (let i = 0; i < value.length; i++) copy.push(plainData(value[i], record, `${path}[${i}]`, depth + 1));
    return copy;
  }
  if (isPlainObject(value)) return plainMap(value, record, path, depth);
  throw fieldError(record, path, 'plain data (nil, boolean, number, string, array or map)', value);
}

function plainMap(value: Fields, record: string, path: string, depth: number): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(value)) {
    const item = value[key];
    if (item === undefined) continue;
    // An own "__proto__" key would set the copy's prototype; msgpackr renames it on decoding.
    if (key === '__proto__') throw fieldError(record, `${path}.__proto__`, 'absent (the key is reserved)', item);
    copy[key] = plainData(item, record, `${path}.${key}`, depth + 1);
  }
  return copy;
}
