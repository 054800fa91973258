/**
 * The structural walk of a msgpack header (docs/protocol.md §3), run before msgpackr sees it:
 * it bounds what decoding the header can cost by the header's own size.
 */

import { MalformedRecordError } from '../errors.js';

/**
 * Deepest nesting of maps and arrays in a header; the header map itself is level 1, so a hello
 * record's `domain.config` may nest up to {@link MAX_HEADER_NESTING} - 3 levels more.
 */
export const MAX_HEADER_NESTING = 32;

// What each leading byte of a msgpack value is, and its argument:
const INVALID = 0; // extension types and 0xc1: never in a version 2 header
const SKIP = 1; // a value of fixed size: skip `arg` bytes
const BYTES = 2; // a str or bin: a length of `arg` bytes, then that many bytes
const ARRAY = 3; // an array: its count in the byte itself (`arg` 0) or in `arg` bytes
const MAP = 4; // a map, likewise

const TOKEN_KIND = new Uint8Array(256);
const TOKEN_ARG = new Uint8Array(256);
{
  const set = (from: number, to: number, kind: number, arg: (token: number) => number): void => {
    for (let t = from; t <= to; t++) {
      TOKEN_KIND[t] = kind;
      TOKEN_ARG[t] = arg(t);
    }
  };
  set(0x00, 0x7f, SKIP, () => 0); // positive fixint
  set(0x80, 0x8f, MAP, () => 0); // fixmap
  set(0x90, 0x9f, ARRAY, () => 0); // fixarray
  set(0xa0, 0xbf, SKIP, (t) => t & 0x1f); // fixstr
  set(0xc0, 0xc0, SKIP, () => 0); // nil
  set(0xc2, 0xc3, SKIP, () => 0); // false, true
  set(0xc4, 0xc6, BYTES, (t) => 1 << (t - 0xc4)); // bin8/16/32
  set(0xca, 0xca, SKIP, () => 4); // float32
  set(0xcb, 0xcb, SKIP, () => 8); // float64
  set(0xcc, 0xcf, SKIP, (t) => 1 << (t - 0xcc)); // uint8/16/32/64
  set(0xd0, 0xd3, SKIP, (t) => 1 << (t - 0xd0)); // int8/16/32/64
  set(0xd9, 0xdb, BYTES, (t) => 1 << (t - 0xd9)); // str8/16/32
  set(0xdc, 0xdd, ARRAY, (t) => (t === 0xdc ? 2 : 4)); // array16/32
  set(0xde, 0xdf, MAP, (t) => (t === 0xde ? 2 : 4)); // map16/32
  set(0xe0, 0xff, SKIP, () => 0); // negative fixint
}

/** Whether `token` starts a string: the only kind of map key a header may have. */
function isStringToken(token: number): boolean {
  return (token >= 0xa0 && token <= 0xbf) || (token >= 0xd9 && token <= 0xdb);
}

/**
 * Walks a msgpack header once, without decoding or allocating, and rejects what version 2 never
 * sends: anything but a map at the top, non-string map keys, extension types (msgpackr would
 * give them meaning: dates, typed arrays, records, references), the reserved 0xc1, nesting
 * deeper than {@link MAX_HEADER_NESTING}, declared lengths running past the end, and trailing
 * bytes. What passes is plain msgpack whose every length is backed by bytes, so msgpackr's work
 * and allocations are bounded by the header's size and its recursion by the nesting limit.
 *
 * @throws MalformedRecordError naming the first problem and where it is.
 */
export function scanHeader(bytes: Uint8Array): void {
  const end = bytes.length;
  if (TOKEN_KIND[bytes[0]!] !== MAP) {
    throw new MalformedRecordError(`the header must be a msgpack map; it starts with byte 0x${hexByte(bytes[0]!)}`);
  }
  // Values still to read at each open level; for a map, keys and values alternate, keys on even counts.
  const remaining: number[] = [1];
  const isMap: boolean[] = [false];
  let pos = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n: number, what: string): void => {
    if (n > end - pos) throw new MalformedRecordError(`truncated header: ${what} at byte ${pos} runs past its end (${end} bytes)`);
  };
  const readLength = (width: number): number => {
    need(width, 'a length');
    const n = width === 1 ? bytes[pos]! : width === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += width;
    return n;
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
    if (isKey && !isStringToken(token)) {
      throw new MalformedRecordError(`the header has a map key that is not a string (byte 0x${hexByte(token)} at ${pos - 1})`);
    }
    const kind = TOKEN_KIND[token]!;
    const arg = TOKEN_ARG[token]!;
    if (kind === SKIP) {
      need(arg, 'a value');
      pos += arg;
    } else if (kind === BYTES) {
      const n = readLength(arg);
      need(n, 'a byte or text string');
      pos += n;
    } else if (kind === ARRAY || kind === MAP) {
      const n = arg === 0 ? token & 0x0f : readLength(arg);
      const map = kind === MAP;
      // Every element takes at least one byte, so a count beyond the bytes left is a lie.
      need(map ? n * 2 : n, map ? `a map of ${n} entries` : `an array of ${n} elements`);
      if (remaining.length > MAX_HEADER_NESTING) throw new MalformedRecordError(`the header nests deeper than ${MAX_HEADER_NESTING} levels`);
      if (n > 0) {
        remaining.push(map ? n * 2 : n);
        isMap.push(map);
      }
    } else {
      throw new MalformedRecordError(`the header holds msgpack type 0x${hexByte(token)} at byte ${pos - 1}; version 2 uses no extension types`);
    }
  }
  if (pos !== end) {
    throw new MalformedRecordError(`the header holds ${end - pos} bytes after its map; the header length must cover exactly one map`);
  }
}

function hexByte(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
