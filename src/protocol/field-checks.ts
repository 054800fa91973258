/**
 * The value checks a record's fields are made of (docs/protocol.md §3): each takes what arrived
 * in a header, the record type and field name to name in its error, and the limits, and returns
 * the typed value or throws `MalformedRecordError` (or `LimitExceededError` for a limit).
 * `record-fields.ts` says which field of which record gets which check.
 */

import { LimitExceededError, MalformedRecordError } from '../errors.js';
import type { ProtocolLimits } from './limits.js';

/** A decoded header or a record handed to the encoder: string keys, values not yet checked. */
export type Fields = Record<string, unknown>;

/** Checks one field's value and returns it typed; `field` is its path within the record. */
export type FieldCheck<V> = (value: unknown, record: string, field: string, limits: ProtocolLimits) => V;

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
 * The longest time a peer may report, in milliseconds (a day): a duration past it is no
 * measurement but a corrupt or hostile field, and would poison every figure computed from it.
 */
export const MAX_PEER_TIME_MS = 86_400_000;

const HEX16 = /^[0-9a-f]{16}$/;

/** A safe non-negative integer (counts, rounds, sequence numbers, sizes). */
export const count: FieldCheck<number> = (value, record, field) => {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw fieldError(record, field, 'a non-negative safe integer', value);
  }
  return value;
};

/** An array of 1 to `maxChannels` counts (per-channel batch counts), copied. */
export const channelCounts: FieldCheck<number[]> = (value, record, field, limits) => {
  if (!Array.isArray(value) || value.length === 0 || value.length > limits.maxChannels) {
    throw fieldError(record, field, `an array of 1 to ${limits.maxChannels} counts (maxChannels)`, value);
  }
  const counts: number[] = [];
  for (let i = 0; i < value.length; i++) counts.push(count(value[i], record, `${field}[${i}]`, limits));
  return counts;
};

/** A string of `minChars` to {@link MAX_TEXT_FIELD_CHARS} characters. */
export function text(minChars: number): FieldCheck<string> {
  return (value, record, field) => {
    if (typeof value !== 'string' || value.length < minChars || value.length > MAX_TEXT_FIELD_CHARS) {
      throw fieldError(record, field, `a string of ${minChars} to ${MAX_TEXT_FIELD_CHARS} characters`, value);
    }
    return value;
  };
}

/** One of `choices`. */
export function oneOf<T extends string>(choices: readonly T[]): FieldCheck<T> {
  return (value, record, field) => {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      throw fieldError(record, field, choices.length === 2 ? `"${choices[0]}" or "${choices[1]}"` : `one of ${choices.join(', ')}`, value);
    }
    return value as T;
  };
}

/** A 64-bit value as 16 lowercase hex digits (checksums and digests). */
export const hex16: FieldCheck<string> = (value, record, field) => {
  if (typeof value !== 'string' || !HEX16.test(value)) throw fieldError(record, field, '16 lowercase hex digits', value);
  return value;
};

export const boolean: FieldCheck<boolean> = (value, record, field) => {
  if (typeof value !== 'boolean') throw fieldError(record, field, 'a boolean', value);
  return value;
};

/** A time the peer measured on its own clock: finite, from 0 to {@link MAX_PEER_TIME_MS}. */
export const peerTimeMs: FieldCheck<number> = (value, record, field) => {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_PEER_TIME_MS) {
    throw fieldError(record, field, `a finite number of milliseconds from 0 to ${MAX_PEER_TIME_MS}`, value);
  }
  return value;
};

export const versionNumber: FieldCheck<number> = (value, record, field) => {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_PROTOCOL_VERSION_NUMBER) {
    throw fieldError(record, field, `an integer from 1 to ${MAX_PROTOCOL_VERSION_NUMBER}`, value);
  }
  return value;
};

/** 1 to {@link MAX_OFFERED_VERSIONS} version numbers, copied. */
export const versionList: FieldCheck<number[]> = (value, record, field, limits) => {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_OFFERED_VERSIONS) {
    throw fieldError(record, field, `an array of 1 to ${MAX_OFFERED_VERSIONS} version numbers`, value);
  }
  const versions: number[] = [];
  for (let i = 0; i < value.length; i++) versions.push(versionNumber(value[i], record, `${field}[${i}]`, limits));
  return versions;
};

/** A byte string, as a plain Uint8Array view of the same memory. */
export const byteString: FieldCheck<Uint8Array> = (value, record, field) => {
  if (!(value instanceof Uint8Array)) throw fieldError(record, field, 'a byte string (msgpack bin)', value);
  return value.constructor === Uint8Array ? value : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
};

/** A byte string of exactly `length` bytes (nonces, proofs). */
export function fixedBytes(length: number): FieldCheck<Uint8Array> {
  return (value, record, field, limits) => {
    const bytes = byteString(value, record, field, limits);
    if (bytes.length !== length) throw fieldError(record, field, `a byte string of exactly ${length} bytes`, bytes);
    return bytes;
  };
}

/** A state blob (a device state, or an inspected domain's) within `maxDeviceStateBytes`. */
export function stateBlob(what: string): FieldCheck<Uint8Array> {
  return (value, record, field, limits) => checkStateSize(byteString(value, record, field, limits), limits, what);
}

/** `state` (`what` names it in the error) if it is within `maxDeviceStateBytes`. */
export function checkStateSize(state: Uint8Array, limits: ProtocolLimits, what: string): Uint8Array {
  if (state.length > limits.maxDeviceStateBytes) {
    throw new LimitExceededError(
      `${what} of ${state.length} bytes is over maxDeviceStateBytes (${limits.maxDeviceStateBytes}); raise the limit on the receiving side`,
    );
  }
  return state;
}

export function isPlainObject(value: unknown): value is Fields {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The error for a field that is there but wrong: names the record, the field and what was expected. */
export function fieldError(record: string, field: string, expected: string, got: unknown): MalformedRecordError {
  return new MalformedRecordError(`malformed ${record} record: field "${field}" must be ${expected}, got ${describeValue(got)}`);
}

/** A short description of a value for error messages; never echoes more than a few characters. */
export function describeValue(value: unknown): string {
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
