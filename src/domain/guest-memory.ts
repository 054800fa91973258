/**
 * Reading and writing guest pages through a {@link GuestMemory} description, in whichever thread
 * holds the description: the migration engine's, a channel worker's or a dirty-page scanner's.
 *
 * - Shared memory is used in place: reads copy out of it (or, for `readRun`, hand out a view of
 *   it), writes copy into it.
 * - A RAM backing file is read and written with positioned I/O (`fs.readSync`/`fs.writeSync`),
 *   Node having no mmap; reads land in the caller's buffer or in one buffer the accessor reuses,
 *   never in a fresh one per call. Runs of consecutive pages are moved in one call each.
 *
 * An accessor is not thread-safe: each thread opens its own from the description.
 */

import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { DomainFailedError, InvalidArgumentError, PageOutOfRangeError } from '../errors.js';
import type { GuestMemory, PageRunReader } from '../util/guest-memory-types.js';
import { asBuffer } from '../util/bytes.js';

export type { GuestMemory, PageRunReader } from '../util/guest-memory-types.js';

/** Pages of zeros a file accessor writes per call when it zeroes a run. */
const ZERO_CHUNK_PAGES = 64;

/**
 * Whether a target's memory of this kind reads as zeros everywhere until pages are written, so
 * that the zero pages of round 0 (which names each page once) need no writing: true of `shared`
 * memory, which a target backend allocates fresh for each migration (TargetDomain.memory).
 */
export function memoryFreshUntilRound1(memory: GuestMemory): boolean {
  return memory.kind === 'shared';
}

/** Page I/O over one guest memory, for one thread. */
export interface GuestMemoryAccess extends PageRunReader {
  /** Copies the pages `pfns` into `dst`, in order, back to back (`pfns.length` pages from offset 0). */
  readPages(pfns: Uint32Array, dst: Uint8Array): void;
  /** Writes `pfns.length` pages, back to back from offset 0 of `src`, to the pages `pfns`. */
  writePages(pfns: Uint32Array, src: Uint8Array): void;
  /** Fills the pages `pfns` with zeros. */
  zeroPages(pfns: Uint32Array): void;
  /** Releases what the accessor holds (a file descriptor). Idempotent; no call may follow. */
  close(): void;
}

/** Options of {@link openGuestMemory}. */
export interface OpenGuestMemoryOptions {
  /** Open a file for writing too. Shared memory is always writable. @default false */
  writable?: boolean;
}

/**
 * Opens page I/O over `memory`, whose pages are `pageSize` bytes. Throws InvalidArgumentError for
 * a description of kind `none` or one whose sizes do not add up, and DomainFailedError if the
 * file cannot be opened.
 */
export function openGuestMemory(memory: GuestMemory, pageSize: number, options: OpenGuestMemoryOptions = {}): GuestMemoryAccess {
  if (!(Number.isInteger(pageSize) && pageSize > 0)) throw new InvalidArgumentError(`page size must be a positive whole number, got ${pageSize}`);
  if (memory.kind === 'none') {
    throw new InvalidArgumentError('this guest memory is reachable only through its domain\'s page hooks (kind "none")');
  }
  const { byteOffset, byteLength } = memory;
  if (!(Number.isSafeInteger(byteOffset) && byteOffset >= 0 && Number.isSafeInteger(byteLength) && byteLength >= 0 && byteLength % pageSize === 0)) {
    throw new InvalidArgumentError(`guest memory of ${byteLength} bytes at offset ${byteOffset} is not a whole number of ${pageSize}-byte pages`);
  }
  if (memory.kind === 'shared') {
    if (byteOffset + byteLength > memory.buffer.byteLength) {
      throw new InvalidArgumentError(`guest memory of ${byteLength} bytes at offset ${byteOffset} overruns its ${memory.buffer.byteLength}-byte buffer`);
    }
    return new SharedGuestMemory(memory.buffer, byteOffset, byteLength, pageSize);
  }
  return new FileGuestMemory(memory.path, byteOffset, byteLength, pageSize, options.writable ?? false);
}

/**
 * Length of the run of consecutive page numbers starting at `pfns[i]`, each checked against
 * `pageCount`.
 */
function runAt(pfns: Uint32Array, i: number, pageCount: number): number {
  let n = 1;
  const first = pfns[i]!;
  while (i + n < pfns.length && pfns[i + n] === first + n) n++;
  if (first + n > pageCount) {
    throw new PageOutOfRangeError(`page ${Math.max(first, pageCount)} lies outside the guest's ${pageCount} pages`);
  }
  return n;
}

function checkBatch(pfns: Uint32Array, buffer: Uint8Array, pageSize: number): void {
  if (pfns.length * pageSize > buffer.length) {
    throw new InvalidArgumentError(`${pfns.length} pages do not fit a buffer of ${buffer.length} bytes`);
  }
}

/**
 * Calls `io` once per run of consecutive pages in `pfns` (checked against `pages` and the guest's
 * `pageCount`): where the run sits in `pages`, its length in bytes, and where it starts in guest
 * memory, in bytes.
 */
function forEachRun(pfns: Uint32Array, pages: Uint8Array, pageSize: number, pageCount: number, io: (offset: number, length: number, memoryOffset: number) => void): void {
  checkBatch(pfns, pages, pageSize);
  for (let i = 0; i < pfns.length; ) {
    const n = runAt(pfns, i, pageCount);
    io(i * pageSize, n * pageSize, pfns[i]! * pageSize);
    i += n;
  }
}

function checkRun(first: number, count: number, pageCount: number): void {
  if (!(Number.isInteger(first) && Number.isInteger(count) && first >= 0 && count >= 0 && first + count <= pageCount)) {
    throw new PageOutOfRangeError(`pages ${first} to ${first + count - 1} do not all lie in the guest's ${pageCount} pages`);
  }
}

/** Memory in a SharedArrayBuffer, used in place. */
class SharedGuestMemory implements GuestMemoryAccess {
  readonly pageCount: number;
  /** The memory as a Buffer: its `copy` and `compare` take ranges as numbers, making no view. */
  private readonly mem: Buffer;
  private readonly zero: Buffer;

  constructor(buffer: SharedArrayBuffer, byteOffset: number, byteLength: number, readonly pageSize: number) {
    this.mem = Buffer.from(buffer, byteOffset, byteLength);
    this.pageCount = byteLength / pageSize;
    this.zero = Buffer.alloc(pageSize);
  }

  // Both copies go through `Buffer.prototype.fill` with a source exactly as long as the range:
  // Node does that with a plain memcpy, where `copy` and `set` take V8's slower element-wise copy
  // for shared memory (docs/bench/README.md, "The data path").
  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    const to = asBuffer(dst);
    forEachRun(pfns, dst, this.pageSize, this.pageCount, (offset, length, from) => to.fill(this.mem.subarray(from, from + length), offset, offset + length));
  }

  writePages(pfns: Uint32Array, src: Uint8Array): void {
    forEachRun(pfns, src, this.pageSize, this.pageCount, (offset, length, to) => this.mem.fill(src.subarray(offset, offset + length), to, to + length));
  }

  zeroPages(pfns: Uint32Array): void {
    const ps = this.pageSize;
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i]!;
      if (pfn >= this.pageCount) throw new PageOutOfRangeError(`page ${pfn} lies outside the guest's ${this.pageCount} pages`);
      const start = pfn * ps;
      // A page never written reads as zeros without being backed; writing zeros would back it.
      // A fresh target receives about 40% of a guest as zero pages.
      if (this.mem.compare(this.zero, 0, ps, start, start + ps) !== 0) this.mem.fill(0, start, start + ps);
    }
  }

  readRun(first: number, count: number): Uint8Array {
    checkRun(first, count, this.pageCount);
    return this.mem.subarray(first * this.pageSize, (first + count) * this.pageSize);
  }

  close(): void {}
}

/** Memory in a file, reached with positioned reads and writes. */
class FileGuestMemory implements GuestMemoryAccess {
  readonly pageCount: number;
  private fd: number | undefined;
  /** Where `readRun` reads to; grown on demand, never shrunk. */
  private scratch = Buffer.alloc(0);
  private zeros: Buffer | undefined;

  constructor(
    private readonly path: string,
    private readonly base: number,
    byteLength: number,
    readonly pageSize: number,
    writable: boolean,
  ) {
    this.pageCount = byteLength / pageSize;
    try {
      this.fd = openSync(path, writable ? 'r+' : 'r');
    } catch (err) {
      throw new DomainFailedError(`cannot open guest memory file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private handle(): number {
    if (this.fd === undefined) throw new DomainFailedError(`guest memory file ${this.path} was closed`);
    return this.fd;
  }

  /** Reads exactly `length` bytes at file position `position` into `dst` at `offset`. */
  private readFully(dst: Uint8Array, offset: number, length: number, position: number): void {
    const fd = this.handle();
    while (length > 0) {
      const got = readSync(fd, dst, offset, length, position);
      if (got === 0) throw new DomainFailedError(`guest memory file ${this.path} ends at ${position}, inside the guest's memory`);
      offset += got;
      length -= got;
      position += got;
    }
  }

  /** Writes exactly `length` bytes of `src` at `offset` to file position `position`. */
  private writeFully(src: Uint8Array, offset: number, length: number, position: number): void {
    const fd = this.handle();
    while (length > 0) {
      const put = writeSync(fd, src, offset, length, position);
      offset += put;
      length -= put;
      position += put;
    }
  }

  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    forEachRun(pfns, dst, this.pageSize, this.pageCount, (offset, length, at) => this.readFully(dst, offset, length, this.base + at));
  }

  writePages(pfns: Uint32Array, src: Uint8Array): void {
    forEachRun(pfns, src, this.pageSize, this.pageCount, (offset, length, at) => this.writeFully(src, offset, length, this.base + at));
  }

  zeroPages(pfns: Uint32Array): void {
    const ps = this.pageSize;
    this.zeros ??= Buffer.alloc(ZERO_CHUNK_PAGES * ps);
    for (let i = 0; i < pfns.length; ) {
      const n = runAt(pfns, i, this.pageCount);
      for (let done = 0; done < n; done += ZERO_CHUNK_PAGES) {
        const pages = Math.min(ZERO_CHUNK_PAGES, n - done);
        this.writeFully(this.zeros, 0, pages * ps, this.base + (pfns[i]! + done) * ps);
      }
      i += n;
    }
  }

  readRun(first: number, count: number): Uint8Array {
    checkRun(first, count, this.pageCount);
    const bytes = count * this.pageSize;
    if (this.scratch.length < bytes) this.scratch = Buffer.allocUnsafe(bytes);
    this.readFully(this.scratch, 0, bytes, this.base + first * this.pageSize);
    return this.scratch.subarray(0, bytes);
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    closeSync(fd);
  }
}
