/**
 * XXH32 (seed 0) of whole pages as a WebAssembly module with 128-bit SIMD, assembled here from
 * its instructions. XXH32 keeps four 32-bit accumulators, one per 4-byte word of each 16-byte
 * stripe: exactly the four lanes of one `i32x4` vector, so a stripe is one load, two
 * multiplications and a rotation. A multiplication's latency would then bound one page's pace,
 * so `hash4` walks four pages at once, four independent chains. The result is bit for bit
 * XXH32's, which the tests check against the native implementation.
 *
 * Exports, over the memory imported as `env.memory`, for a `pageSize` that is a positive
 * multiple of 16:
 * - `hash4(ptr, pageSize, out)`: the hashes of the four pages back to back at `ptr`, stored as
 *   little-endian u32s at `out`;
 * - `hash1(ptr, pageSize, out)`: the same for one page;
 * - `compact(ptr, pageSize, count, flags)`: a gathered batch's zero pages flagged and its data
 *   pages moved together (see {@link compactFunction}), where the batch is about to be hashed.
 */

const PRIME1 = 2654435761;
const PRIME2 = 2246822519;
const PRIME3 = 3266489917;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer. */
function sleb(n: number): number[] {
  n |= 0;
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

// The few instructions used, by their binary encoding.
const op = {
  get: (i: number) => [0x20, ...uleb(i)],
  set: (i: number) => [0x21, ...uleb(i)],
  tee: (i: number) => [0x22, ...uleb(i)],
  i32: (n: number) => [0x41, ...sleb(n)],
  add: [0x6a],
  mul: [0x6c],
  xor: [0x73],
  shrU: [0x76],
  rotl: [0x77],
  ltU: [0x49],
  store: (offset: number) => [0x36, 0x02, ...uleb(offset)],
  loop: [0x03, 0x40],
  brIfLoop: [0x0d, 0x00],
  end: [0x0b],
  simd: (code: number) => [0xfd, ...uleb(code)],
};
const v128Load = [...op.simd(0x00), 0x00, 0x00];
const i32x4Add = op.simd(0xae);
const i32x4Mul = op.simd(0xb5);
const i32x4Shl = op.simd(0xab);
const i32x4ShrU = op.simd(0xad);
const v128Or = op.simd(0x50);
const lane = (n: number) => [...op.simd(0x1b), n];

/** `v128.const` of four u32 lanes. */
function v128(lanes: readonly number[]): number[] {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  lanes.forEach((x, i) => view.setUint32(i * 4, x >>> 0, true));
  return [...op.simd(0x0c), ...bytes];
}

const INITIAL = v128([PRIME1 + PRIME2, PRIME2, 0, -PRIME1]);
const SPLAT_PRIME1 = v128([PRIME1, PRIME1, PRIME1, PRIME1]);
const SPLAT_PRIME2 = v128([PRIME2, PRIME2, PRIME2, PRIME2]);

/** The body of a function hashing `pages` pages at once. Params 0-2: ptr, pageSize, out. */
function hashFunction(pages: number): number[] {
  // i32 locals: 3 p (the stripe's address in page 0), 4 end, 5 h; v128 locals: one per page, one scratch.
  const P = 3;
  const END = 4;
  const H = 5;
  const acc = (k: number) => 6 + k;
  const T = 6 + pages;
  const code: number[] = [];
  for (let k = 0; k < pages; k++) code.push(...INITIAL, ...op.set(acc(k)));
  code.push(...op.get(0), ...op.tee(P), ...op.get(1), ...op.add, ...op.set(END));
  code.push(...op.loop);
  for (let k = 0; k < pages; k++) {
    // acc = rotl(acc + stripe * PRIME2, 13) * PRIME1, lane by lane.
    code.push(...op.get(acc(k)), ...op.get(P));
    if (k > 0) code.push(...op.get(1), ...op.i32(k), ...op.mul, ...op.add);
    code.push(...v128Load, ...SPLAT_PRIME2, ...i32x4Mul, ...i32x4Add, ...op.tee(T));
    code.push(...op.i32(13), ...i32x4Shl, ...op.get(T), ...op.i32(19), ...i32x4ShrU, ...v128Or);
    code.push(...SPLAT_PRIME1, ...i32x4Mul, ...op.set(acc(k)));
  }
  code.push(...op.get(P), ...op.i32(16), ...op.add, ...op.tee(P), ...op.get(END), ...op.ltU, ...op.brIfLoop, ...op.end);
  for (let k = 0; k < pages; k++) {
    const rotated = (n: number, by: number) => [...op.get(acc(k)), ...lane(n), ...op.i32(by), ...op.rotl];
    code.push(...rotated(0, 1), ...rotated(1, 7), ...op.add, ...rotated(2, 12), ...op.add, ...rotated(3, 18), ...op.add);
    code.push(...op.get(1), ...op.add);
    // The avalanche: h ^= h >>> 15; h *= PRIME2; h ^= h >>> 13; h *= PRIME3; h ^= h >>> 16.
    code.push(...op.tee(H), ...op.get(H), ...op.i32(15), ...op.shrU, ...op.xor, ...op.i32(PRIME2), ...op.mul);
    code.push(...op.tee(H), ...op.get(H), ...op.i32(13), ...op.shrU, ...op.xor, ...op.i32(PRIME3), ...op.mul);
    code.push(...op.tee(H), ...op.get(H), ...op.i32(16), ...op.shrU, ...op.xor, ...op.set(H));
    code.push(...op.get(2), ...op.get(H), ...op.store(4 * k));
  }
  code.push(...op.end);
  const locals = [0x02, 3, 0x7f, pages + 1, 0x7b];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/**
 * The body of `compact(ptr, pageSize, count, flags)`: walks the `count` pages back to back at
 * `ptr`, stores 1 at `flags + i` for each page i that is all zeros and 0 for the others, moves
 * the data pages down over the zero ones (in order, back to back from `ptr`) and returns how many
 * data pages there are. A page's test stops at its first non-zero 16 bytes. `count` must be at
 * least 1.
 */
function compactFunction(): number[] {
  // Params 0 ptr, 1 pageSize, 2 count, 3 flags; i32 locals 4 i, 5 page, 6 end, 7 dst, 8 q, 9 data, 10 zero.
  const [PTR, PS, COUNT, FLAGS, I, PAGE, END, DST, Q, DATA, ZERO] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const block = [0x02, 0x40];
  const iff = [0x04, 0x40];
  const els = [0x05];
  const br = (depth: number) => [0x0c, depth];
  const ne = [0x47];
  const store8 = [0x3a, 0x00, 0x00];
  const anyTrue = op.simd(0x53);
  const memoryCopy = [0xfc, ...uleb(10), 0x00, 0x00];
  const code: number[] = [
    ...op.get(PTR), ...op.set(PAGE), ...op.get(PTR), ...op.set(DST),
    ...op.loop,
    ...op.get(PAGE), ...op.tee(Q), ...op.get(PS), ...op.add, ...op.set(END),
    ...op.i32(1), ...op.set(ZERO),
    ...block, ...op.loop,
    ...op.get(Q), ...v128Load, ...anyTrue, ...iff, ...op.i32(0), ...op.set(ZERO), ...br(2), ...op.end,
    ...op.get(Q), ...op.i32(16), ...op.add, ...op.tee(Q), ...op.get(END), ...op.ltU, ...op.brIfLoop,
    ...op.end, ...op.end,
    ...op.get(ZERO), ...iff,
    ...op.get(FLAGS), ...op.get(I), ...op.add, ...op.i32(1), ...store8,
    ...els,
    ...op.get(FLAGS), ...op.get(I), ...op.add, ...op.i32(0), ...store8,
    ...op.get(DST), ...op.get(PAGE), ...ne, ...iff, ...op.get(DST), ...op.get(PAGE), ...op.get(PS), ...memoryCopy, ...op.end,
    ...op.get(DST), ...op.get(PS), ...op.add, ...op.set(DST),
    ...op.get(DATA), ...op.i32(1), ...op.add, ...op.set(DATA),
    ...op.end,
    ...op.get(PAGE), ...op.get(PS), ...op.add, ...op.set(PAGE),
    ...op.get(I), ...op.i32(1), ...op.add, ...op.tee(I), ...op.get(COUNT), ...op.ltU, ...op.brIfLoop,
    ...op.end,
    ...op.get(DATA),
    ...op.end,
  ];
  const body = [1, 7, 0x7f, ...code];
  return [...uleb(body.length), ...body];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

function name(s: string): number[] {
  return [...uleb(s.length), ...Buffer.from(s, 'latin1')];
}

/** The module's binary. */
export function xxh32SimdModule(): Uint8Array {
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [2, 0x60, 3, 0x7f, 0x7f, 0x7f, 0, 0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f]),
    ...section(2, [1, ...name('env'), ...name('memory'), 0x02, 0x00, 0x01]),
    ...section(3, [3, 0, 0, 1]),
    ...section(7, [3, ...name('hash4'), 0x00, 0, ...name('hash1'), 0x00, 1, ...name('compact'), 0x00, 2]),
    ...section(10, [3, ...hashFunction(4), ...hashFunction(1), ...compactFunction()]),
  ];
  return Uint8Array.from(bytes);
}
