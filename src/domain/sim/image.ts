/**
 * The initial memory image of a simulated guest. Every page's content is a pure function of
 * (seed, page number), so the source builds the whole image at boot and the replay oracle rebuilds
 * it, or any single page, without storing it.
 *
 * The mix imitates a booted guest closely enough to exercise zero-page detection and compression:
 * about 40% zero pages, 40% text-like pages that lz4 shrinks by 2-3x, and 20% random pages that do
 * not compress at all. A text page is 64 pieces of 64 bytes, each copied from a seeded offset of a
 * seeded 1 MiB corpus of short phrases: phrases repeat within a piece and across the page, but a
 * piece starts at an arbitrary point of the corpus, so no match runs past a piece and the ratio
 * stays near that of real text (about 2.3x per page) rather than that of a repeated block.
 *
 * Pages are filled through 32-bit words for speed, so the bytes of random pages follow the host's
 * byte order; every supported platform is little-endian.
 */

import { InvalidArgumentError } from '../../errors.js';
import { PAGE_SIZE_BYTES } from '../../protocol/records.js';

const PAGE_WORDS = PAGE_SIZE_BYTES / 4;
const PIECE_WORDS = 16;
const PIECES_PER_PAGE = PAGE_WORDS / PIECE_WORDS;
const CORPUS_BYTES = 1024 * 1024;
const CORPUS_WORDS = CORPUS_BYTES / 4;

/** What an initial page holds. */
export type PageKind = 'zero' | 'text' | 'random';

/** Words the text corpus is made of. */
const WORDS: readonly string[] = [
  'page', 'frame', 'kernel', 'buffer', 'socket', 'thread', 'memory', 'vector', 'mutex', 'queue',
  'driver', 'device', 'packet', 'record', 'stream', 'offset', 'length', 'header', 'status', 'signal',
  'timer', 'clock', 'cache', 'index', 'table', 'entry', 'value', 'state', 'error', 'event',
  'handle', 'process', 'module', 'symbol', 'region', 'segment', 'channel', 'request', 'reply', 'client',
  'server', 'worker', 'config', 'option', 'limit', 'range', 'count', 'total', 'start', 'stop',
  'open', 'close', 'read', 'write', 'flush', 'sync', 'mount', 'path', 'file', 'inode',
  'user', 'group', 'mode', 'flag', 'mask', 'bit', 'byte', 'word', 'line', 'block',
  'disk', 'node', 'link', 'host', 'port', 'route', 'slot', 'lock', 'wait', 'wake',
];

/** Distinct phrases (one to three words) a corpus is made of. */
const PHRASE_COUNT = 64;
const MAX_WORDS_PER_PHRASE = 3;

/** Mixes a 32-bit value into a well-spread 32-bit hash (an avalanche finaliser). */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

function pageHash(seed: number, pfn: number): number {
  return mix32(mix32(seed ^ 0x9e3779b9) ^ Math.imul(pfn, 0x85ebca6b));
}

function kindOf(hash: number): PageKind {
  const bucket = hash % 5;
  return bucket < 2 ? 'zero' : bucket < 4 ? 'text' : 'random';
}

/** What initial page `pfn` of a guest seeded with `seed` holds. */
export function pageKind(seed: number, pfn: number): PageKind {
  return kindOf(pageHash(seed, pfn));
}

let cachedCorpusSeed = -1;
let cachedCorpus: Uint32Array | undefined;

/**
 * The seeded text corpus, as 32-bit words: a random sequence of 64 seeded phrases of one to three
 * words each. Phrases rather than single words give lz4 matches long enough to pay for their
 * encoding; with single words a page shrinks by only about 1.6x. The last seed's corpus is kept.
 */
function corpusFor(seed: number): Uint32Array {
  if (cachedCorpus !== undefined && cachedCorpusSeed === seed) return cachedCorpus;
  let x = mix32(seed ^ 0x51ed270b) | 1;
  const next = (): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
  const phrases: number[][] = [];
  for (let i = 0; i < PHRASE_COUNT; i++) {
    const words: string[] = [];
    const length = 1 + (next() % MAX_WORDS_PER_PHRASE);
    for (let j = 0; j < length; j++) words.push(WORDS[next() % WORDS.length]!);
    const text = words.join(' ') + (next() % 4 === 0 ? '\n' : ' ');
    phrases.push(Array.from(text, (c) => c.charCodeAt(0)));
  }
  const bytes = new Uint8Array(CORPUS_BYTES);
  let n = 0;
  while (n < CORPUS_BYTES) {
    const phrase = phrases[next() % PHRASE_COUNT]!;
    for (let i = 0; i < phrase.length && n < CORPUS_BYTES; i++) bytes[n++] = phrase[i]!;
  }
  cachedCorpus = new Uint32Array(bytes.buffer);
  cachedCorpusSeed = seed;
  return cachedCorpus;
}

/** Writes a non-zero page of kind given by `hash` into `out` at word index `at`. */
function fillWords(hash: number, corpus: Uint32Array, out: Uint32Array, at: number): void {
  let x = mix32(hash ^ 0x6a09e667) | 1;
  if (kindOf(hash) === 'text') {
    const span = CORPUS_WORDS - PIECE_WORDS;
    for (let piece = 0; piece < PIECES_PER_PAGE; piece++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      let from = (x >>> 1) % span;
      const end = at + PIECE_WORDS;
      while (at < end) out[at++] = corpus[from++]!;
    }
    return;
  }
  // xorshift128: four words of state, one output word per step.
  let a = x;
  let b = mix32(x ^ 0xbb67ae85);
  let c = mix32(x ^ 0x3c6ef372);
  let d = mix32(x ^ 0xa54ff53a) | 1;
  const end = at + PAGE_WORDS;
  while (at < end) {
    let t = a ^ (a << 11);
    a = b;
    b = c;
    c = d;
    d = d ^ (d >>> 19) ^ t ^ (t >>> 8);
    out[at++] = d;
  }
}

/**
 * Builds the whole initial image of a guest seeded with `seed` into `mem`, which must be
 * zero-filled (as fresh memory is): zero pages are skipped. `mem.length` must be a multiple of
 * 4096 and `mem` must start at a 4-byte-aligned offset of its buffer. About 0.6 s per GiB.
 */
export function fillImage(mem: Uint8Array, seed: number): void {
  if (mem.length % PAGE_SIZE_BYTES !== 0 || mem.byteOffset % 4 !== 0) {
    throw new InvalidArgumentError(
      `memory image must be whole 4096-byte pages at a 4-byte-aligned offset (length ${mem.length}, offset ${mem.byteOffset})`,
    );
  }
  const words = new Uint32Array(mem.buffer, mem.byteOffset, mem.length / 4);
  const corpus = corpusFor(seed);
  const pageCount = mem.length / PAGE_SIZE_BYTES;
  for (let pfn = 0; pfn < pageCount; pfn++) {
    const hash = pageHash(seed, pfn);
    if (kindOf(hash) !== 'zero') fillWords(hash, corpus, words, pfn * PAGE_WORDS);
  }
}

const unalignedPage = new Uint32Array(PAGE_WORDS);

/**
 * Writes initial page `pfn` of a guest seeded with `seed` into `dst` at byte offset `dstOffset`
 * (4096 bytes, zeros included).
 */
export function fillPage(seed: number, pfn: number, dst: Uint8Array, dstOffset: number): void {
  if (!(Number.isInteger(dstOffset) && dstOffset >= 0 && dstOffset + PAGE_SIZE_BYTES <= dst.length)) {
    throw new InvalidArgumentError(`page at offset ${dstOffset} does not fit a buffer of ${dst.length} bytes`);
  }
  const hash = pageHash(seed, pfn);
  if (kindOf(hash) === 'zero') {
    dst.fill(0, dstOffset, dstOffset + PAGE_SIZE_BYTES);
    return;
  }
  const start = dst.byteOffset + dstOffset;
  if (start % 4 === 0) {
    fillWords(hash, corpusFor(seed), new Uint32Array(dst.buffer, start, PAGE_WORDS), 0);
  } else {
    fillWords(hash, corpusFor(seed), unalignedPage, 0);
    dst.set(new Uint8Array(unalignedPage.buffer), dstOffset);
  }
}
