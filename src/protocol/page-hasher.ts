/**
 * The page hash of the migration stream (XXH32, seed 0: docs/protocol.md §5) of many pages in one
 * go. A call to the native hash per page costs about as much again as the hashing; the
 * WebAssembly module of xxh32-simd.ts hashes a batch's pages, four at a time, in the module's own
 * memory. So a hasher owns a memory: a region the caller lays its own buffers in (a source
 * gathers its batches there, and they are hashed where they lie), and room for pages copied in
 * from elsewhere (a target's received batches). Where WebAssembly's SIMD is not available, or
 * the page size is not a multiple of 16, it hashes page by page natively, with the same results.
 * Figures: docs/bench/README.md, "Huge pages, round 0's zero pages, and hashing a batch at a time".
 */

import { xxh32 } from '@node-rs/xxhash';
import { asBuffer } from '../util/bytes.js';
import { xxh32SimdModule } from './xxh32-simd.js';

const WASM_PAGE_BYTES = 65536;

/** Pages a receiver's hasher copies in at once: a default batch, 1 MiB of 4 KiB pages. */
export const HASH_COPY_PAGES = 256;

/** The part of WebAssembly's JavaScript API used here (the compiler's Node libraries leave it out). */
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: Record<string, Record<string, unknown>>);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    constructor(descriptor: { initial: number; maximum?: number });
    readonly buffer: ArrayBuffer;
  }
  function validate(bytes: Uint8Array): boolean;
}

interface HashExports {
  hash4(ptr: number, pageSize: number, out: number): void;
  hash1(ptr: number, pageSize: number, out: number): void;
  compact(ptr: number, pageSize: number, count: number, flags: number): number;
}

let compiled: WebAssembly.Module | null | undefined;

/** The compiled module, or null where this runtime cannot run it. */
function simdModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    const bytes = xxh32SimdModule();
    try {
      compiled = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** What a {@link PageHasher} is made to hold. */
export interface PageHasherOptions {
  /** Bytes of {@link PageHasher.region}, for the caller's buffers. Default 0. */
  regionBytes?: number;
  /** Most pages {@link PageHasher.hashPages} copies in at once; more are hashed in turns. Default 64. */
  copyPages?: number;
  /** Hash page by page natively even where the module runs: for comparisons. */
  native?: boolean;
}

export class PageHasher {
  /**
   * The caller's room in the hasher's memory, `regionBytes` long: buffers laid here are hashed in
   * place by {@link hashRegion}. It never moves or detaches.
   */
  readonly region: Buffer;
  private readonly copyPages: number;
  private readonly exports: HashExports | undefined;
  /** Where {@link hashPages} copies pages to, in the memory, as an offset and a view. */
  private readonly copyAt: number;
  private readonly copyRoom: Buffer | undefined;
  /** Where `compactRegion` flags zero pages, in the memory, and a view of the flags. */
  private readonly flagsAt: number;
  private readonly flags: Uint8Array;
  /** Where the module stores hashes, in the memory, and a view of them. */
  private readonly outAt: number;
  private readonly out: Uint32Array;

  constructor(
    readonly pageSize: number,
    options: PageHasherOptions = {},
  ) {
    const regionBytes = options.regionBytes ?? 0;
    this.copyPages = Math.max(1, options.copyPages ?? 64);
    const module = options.native === true || pageSize <= 0 || pageSize % 16 !== 0 ? null : simdModule();
    // Memory: the region, the copy room, then a hash for every page either can hold.
    this.copyAt = align16(regionBytes);
    this.outAt = this.copyAt + this.copyPages * pageSize;
    const hashSlots = Math.ceil(regionBytes / pageSize) + this.copyPages + 4;
    // Then a byte for every page of the region: `compactRegion`'s zero-page flags.
    this.flagsAt = this.outAt + hashSlots * 4;
    const flagSlots = Math.ceil(regionBytes / pageSize);
    let memory: WebAssembly.Memory | undefined;
    if (module !== null) {
      try {
        const pages = Math.ceil((this.flagsAt + flagSlots) / WASM_PAGE_BYTES);
        memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
        this.exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as HashExports;
      } catch {
        // No room for the module's memory (a limit on the process's address space, which V8
        // reserves generously for it): hash natively.
        memory = undefined;
        this.exports = undefined;
      }
    }
    if (memory === undefined) {
      this.region = Buffer.alloc(regionBytes);
      this.out = new Uint32Array(0);
      this.flags = new Uint8Array(0);
      return;
    }
    this.flags = new Uint8Array(memory.buffer, this.flagsAt, flagSlots);
    this.region = Buffer.from(memory.buffer, 0, regionBytes);
    this.copyRoom = Buffer.from(memory.buffer, this.copyAt, this.copyPages * pageSize);
    this.out = new Uint32Array(memory.buffer, this.outAt, hashSlots);
  }

  /** Whether pages are hashed by the SIMD module (else natively, page by page). */
  get simd(): boolean {
    return this.exports !== undefined;
  }

  /**
   * Stores in `out` from `outIndex` the hashes of the `count` pages lying back to back at
   * `offset` of {@link region}.
   */
  hashRegion(offset: number, count: number, out: Uint32Array, outIndex = 0): void {
    if (this.exports) this.hashAt(offset, count, out, outIndex);
    else hashNatively(this.region, offset, count, this.pageSize, out, outIndex);
  }

  /**
   * Sorts the `count` pages lying back to back at `offset` of {@link region} (whole pages inside
   * it): moves the data pages together, in order, from `offset`, and returns how many there are
   * and a view of one flag per page, in the order they lay (1: all zeros), valid until the next
   * call. Undefined where pages are hashed natively: the caller tests them itself.
   */
  compactRegion(offset: number, count: number): { data: number; zeroFlags: Uint8Array } | undefined {
    if (!this.exports || count === 0) return undefined;
    if (!(offset >= 0 && offset + count * this.pageSize <= this.region.length)) {
      throw new RangeError(`${count} pages at offset ${offset} do not lie in the hasher's ${this.region.length}-byte region`);
    }
    const data = this.exports.compact(offset, this.pageSize, count, this.flagsAt);
    return { data, zeroFlags: this.flags.subarray(0, count) };
  }

  /**
   * Stores in `out` from `outIndex` the hashes of the `count` pages lying back to back at
   * `offset` of `src`, any buffer: copied into the hasher's memory first, in turns of at most
   * `copyPages`, unless they lie in {@link region} already.
   */
  hashPages(src: Uint8Array, offset: number, count: number, out: Uint32Array, outIndex = 0): void {
    const ps = this.pageSize;
    if (!this.copyRoom) {
      hashNatively(src, offset, count, ps, out, outIndex);
      return;
    }
    // Pages already in the region (a frame that landed there) are hashed where they lie.
    const at = src.byteOffset + offset;
    if (src.buffer === this.region.buffer && at + count * ps <= this.region.length) {
      this.hashAt(at, count, out, outIndex);
      return;
    }
    const from = asBuffer(src);
    for (let done = 0; done < count; done += this.copyPages) {
      const n = Math.min(this.copyPages, count - done);
      const at = offset + done * ps;
      this.copyRoom.fill(from.subarray(at, at + n * ps), 0, n * ps);
      this.hashAt(this.copyAt, n, out, outIndex + done);
    }
  }

  private hashAt(ptr: number, count: number, out: Uint32Array, outIndex: number): void {
    const ps = this.pageSize;
    const { hash4, hash1 } = this.exports!;
    let k = 0;
    for (; k + 4 <= count; k += 4) hash4(ptr + k * ps, ps, this.outAt + k * 4);
    for (; k < count; k++) hash1(ptr + k * ps, ps, this.outAt + k * 4);
    out.set(this.out.subarray(0, count), outIndex);
  }
}

/** The native hash of each of `count` pages at `offset` of `src`, into `out` from `outIndex`. */
function hashNatively(src: Uint8Array, offset: number, count: number, pageSize: number, out: Uint32Array, outIndex: number): void {
  for (let i = 0; i < count; i++) out[outIndex + i] = xxh32(src.subarray(offset + i * pageSize, offset + (i + 1) * pageSize), 0);
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}
