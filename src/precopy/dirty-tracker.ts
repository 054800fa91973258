/**
 * The pages a running guest changed, whichever way its backend declares they are found
 * (`SourceDomain.dirtyTracking`): from the backend's own dirty log, or by a scan that compares
 * every page's hash with the hash of what was last sent. The engine talks to this and never asks
 * which backend is behind it.
 */

import { HashScanner } from '../dirtylog/hash-scan.js';
import { mergeSorted } from '../dirtylog/page-lists.js';
import type { SourceDomain } from '../domain/backend.js';
import { openGuestMemory, type GuestMemoryAccess } from '../domain/guest-memory.js';
import { InvalidArgumentError } from '../errors.js';
import { ScanPool } from './scan-pool.js';

/** Finds the pages a running guest changed. */
export interface DirtyTracker {
  /** Starts tracking; called once, and the first page is read only after it returned (or settled). */
  start(): void | Promise<void>;
  /** Ends tracking and releases what it holds; called once, whatever the outcome. Idempotent. */
  stop(): void;
  /** The pages changed since the previous call (or `start`), ascending, each once. */
  take(): Uint32Array | Promise<Uint32Array>;
  /**
   * What `take` returns, in ascending runs handed out as they are found, so the caller sends one
   * while the next is being found; absent where `take` costs next to nothing (a log). Stopping
   * early stops the search; the pages not handed out then count as unchanged.
   */
  takeRuns?(): AsyncIterable<Uint32Array>;
  /**
   * How many pages `take` would return now: exact for a log in this process, the latest count
   * read for a log in another, estimated for a scan. Cheap.
   */
  peek(): number;
  /** How many pages `take` would return now, exactly, without taking them; may scan memory. */
  count(): number | Promise<number>;
  /** Counts what memory holds now as unchanged from here on (for a scan, its hashes are recorded). */
  rebase(): void | Promise<void>;
  /**
   * What a `take` in the pause is expected to cost on top of sending its pages, in ms: for a
   * scan, a read and hash of all memory, as fast as one went in this migration (in the pause the
   * guest's vCPUs no longer compete with the scan for cores); for a log in another process, its
   * fastest read so far; 0 for a log in this process.
   */
  takeMs(): number;
  /**
   * How much of the shorter of the pause's `take` and the sending of its pages cannot overlap
   * the other, as a share of it: 1 when the pages come all at once (`take`), for `takeRuns` the
   * first runs found before the send can start and the last ones sent after the search ended.
   */
  takeLagShare(): number;
}

/**
 * `pending` (ascending) merged into `runs` (ascending runs, each after the one before): ascending
 * runs of the union, each page once, so the pages of a round found by a scan and the pages left
 * over from before go out together in memory order.
 */
export async function* mergeIntoRuns(pending: Uint32Array, runs: AsyncIterable<Uint32Array>): AsyncGenerator<Uint32Array, void, undefined> {
  let at = 0;
  for await (const run of runs) {
    const last = run[run.length - 1]!;
    let upTo = at;
    while (upTo < pending.length && pending[upTo]! <= last) upTo++;
    yield mergeSorted(pending.subarray(at, upTo), run);
    at = upTo;
  }
  if (at < pending.length) yield pending.subarray(at);
}

/**
 * The tracker `domain` declares. `hashes` holds, per page, the hash (`hashPage`) of what the
 * receiving side holds, which a scan compares memory with; the engine passes its `PageDigest`'s
 * table of what it sent, kept up to date as it sends. Throws InvalidArgumentError for a domain
 * that declares a scan but whose memory cannot be read from here, or an unknown declaration.
 */
export function dirtyTrackerFor(domain: SourceDomain, hashes: Uint32Array): DirtyTracker {
  const tracking: unknown = domain.dirtyTracking;
  if (tracking === 'log') return new LogTracker(domain);
  if (tracking === 'scan') {
    if (domain.memory().kind === 'none') {
      throw new InvalidArgumentError(`the ${domain.descriptor.kind} domain asks for dirty pages to be found by a scan, but its memory cannot be read from here (kind "none")`);
    }
    return new ScanTracker(domain, hashes);
  }
  throw new InvalidArgumentError(`the ${domain.descriptor.kind} domain declares dirty tracking ${String(tracking)}; expected "log" or "scan"`);
}

/**
 * The backend's own dirty log. A log that lives in another process answers with promises: the
 * tracker times its reads (what a read in the pause costs) and keeps one peek pending at a time,
 * answering `peek` with the latest count it has.
 */
class LogTracker implements DirtyTracker {
  private started = false;
  /** The latest count a pending peek brought, and whether one is pending. */
  private peeked = 0;
  private peeking = false;
  /** Bumped by each read: a peek that began before a read is stale when it lands. */
  private reads = 0;
  /** The fastest asynchronous read so far, in ms (0 before the first, and for a synchronous log). */
  private fastestReadMs = 0;

  constructor(private readonly domain: SourceDomain) {}

  start(): void | Promise<void> {
    this.started = true;
    return this.domain.enableDirtyLog();
  }

  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.domain.disableDirtyLog();
  }

  take(): Uint32Array | Promise<Uint32Array> {
    this.reads++;
    this.peeked = 0;
    const pages = this.domain.readDirtyLog();
    if (!(pages instanceof Promise)) return pages;
    const startedAt = performance.now();
    return pages.then((read) => {
      const ms = performance.now() - startedAt;
      this.fastestReadMs = this.fastestReadMs > 0 ? Math.min(this.fastestReadMs, ms) : ms;
      return read;
    });
  }

  peek(): number {
    if (this.peeking) return this.peeked;
    const count = this.domain.peekDirtyCount();
    if (typeof count === 'number') return count;
    this.peeking = true;
    const reads = this.reads;
    count.then(
      (n) => {
        if (reads === this.reads) this.peeked = n;
      },
      // A failed peek changes no estimate; the next read reports the failure.
      () => undefined,
    ).finally(() => (this.peeking = false));
    return this.peeked;
  }

  count(): number | Promise<number> {
    return this.domain.peekDirtyCount();
  }

  rebase(): void | Promise<void> {
    const pages = this.take();
    if (pages instanceof Promise) return pages.then(() => undefined);
  }

  takeMs(): number {
    return this.fastestReadMs;
  }

  takeLagShare(): number {
    return 1;
  }
}

/**
 * A scan of all memory against the hashes of what was sent, spread over worker threads
 * (`ScanPool`); the exact count and the rebase of the pre-migration estimate scan in this thread.
 * Between scans the count is estimated from the last scan: as many pages as it found, scaled by
 * the share of its interval that has passed since (0 before the first scan, when nothing is known
 * yet).
 */
class ScanTracker implements DirtyTracker {
  private access: GuestMemoryAccess | undefined;
  private scanner: HashScanner | undefined;
  private pool: ScanPool | undefined;
  private lastAt = 0;
  private lastFound = 0;
  private lastIntervalMs = 0;
  /** The fastest scan so far, in ms (0 before the first). */
  private fastestScanMs = 0;

  constructor(
    private readonly domain: SourceDomain,
    private readonly hashes: Uint32Array,
  ) {}

  start(): void {
    const memory = this.domain.memory();
    this.access = openGuestMemory(memory, this.domain.descriptor.pageSize);
    this.scanner = new HashScanner(this.access, this.hashes);
    this.pool = new ScanPool(memory, this.domain.descriptor.pageSize, this.domain.pageCount);
    this.lastAt = performance.now();
  }

  stop(): void {
    this.access?.close();
    this.pool?.close();
    this.access = undefined;
    this.scanner = undefined;
    this.pool = undefined;
  }

  private started(): HashScanner {
    if (!this.scanner) throw new InvalidArgumentError('the dirty-page scan was used before it was started or after it was stopped');
    return this.scanner;
  }

  async take(): Promise<Uint32Array> {
    this.started();
    const scanStart = performance.now();
    const pages = await this.pool!.changedPages(this.hashes);
    this.scanned(scanStart, pages.length);
    return pages;
  }

  async *takeRuns(): AsyncGenerator<Uint32Array, void, undefined> {
    this.started();
    const scanStart = performance.now();
    let found = 0;
    for await (const run of this.pool!.changedRuns(this.hashes)) {
      found += run.length;
      yield run;
    }
    this.scanned(scanStart, found);
  }

  /** Counts a whole scan that started at `scanStart` and found `found` pages. */
  private scanned(scanStart: number, found: number): void {
    const now = performance.now();
    const scanMs = now - scanStart;
    this.fastestScanMs = this.fastestScanMs > 0 ? Math.min(this.fastestScanMs, scanMs) : scanMs;
    this.lastIntervalMs = now - this.lastAt;
    this.lastFound = found;
    this.lastAt = now;
  }

  peek(): number {
    if (this.lastIntervalMs <= 0) return 0;
    return Math.round(this.lastFound * Math.min(1, (performance.now() - this.lastAt) / this.lastIntervalMs));
  }

  count(): number {
    return this.started().changedPages().length;
  }

  rebase(): void {
    this.started().record();
  }

  takeMs(): number {
    return this.fastestScanMs;
  }

  /**
   * The workers finish about one chunk each at a time, and runs go out in memory order: the send
   * starts about `threads` chunks into the scan, and the last `threads` chunks' pages go out
   * after it ended.
   */
  takeLagShare(): number {
    const pool = this.pool;
    if (!pool) return 1;
    return Math.min(1, pool.threads / pool.chunks);
  }
}
