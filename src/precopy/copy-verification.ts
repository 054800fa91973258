/**
 * The check after the switchover: does the memory the source's guest held at the pause equal
 * what the target now holds? The digest in `complete` cannot say: it is built from the hashes of
 * what was *sent*, so it proves the target holds what was sent. This one is built from what the
 * paused memory *holds*, so it also catches a write the dirty tracking missed (a page changed
 * after it was last sent and never sent again) and a page damaged in place.
 *
 * How the paused memory is read depends on the backend:
 * - `scan` tracking: nothing is read. The scan in the pause compared every page with the hash of
 *   what was sent, and every page that differed was sent again, so the digest of what was sent is
 *   the digest of the memory at the pause.
 * - `log` tracking, memory other threads reach (`shared`, `file`): hashed where it lies, by worker
 *   threads in parallel for a large guest, else by this thread.
 * - `log` tracking, memory reachable only through `readPages`: this thread reads and hashes it.
 * This thread yields to the event loop between slices, so an agent's other work goes on meanwhile.
 */

import { availableParallelism } from 'node:os';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { HashScanner } from '../dirtylog/hash-scan.js';
import type { GuestMemory, SourceDomain } from '../domain/backend.js';
import { openGuestMemory } from '../domain/guest-memory.js';
import { CancelledError, DomainFailedError, MigrationError, type MigrationErrorCode } from '../errors.js';
import { DIGEST_CHUNK_PAGES, digestOfHashes, hashMemory, type PageDigest } from '../protocol/page-digest.js';

/** Most worker threads one verification uses. */
export const MAX_VERIFY_THREADS = 4;
/**
 * Guest memory per worker thread of the check. Starting a worker costs tens of milliseconds on a
 * quiet machine and a few hundred on a loaded one, so a smaller guest is checked in this thread
 * (docs/bench/README.md, "The check after the switchover").
 */
export const VERIFY_BYTES_PER_THREAD = 512 * 1024 * 1024;
/** Pages this thread hashes between two turns of the event loop: 16 MiB of 4 KiB pages. */
const SLICE_PAGES = 4096;

/** Worker threads for checking `memoryBytes` of guest memory: 0 means this thread. */
export function verifyThreadsFor(memoryBytes: number): number {
  return Math.min(MAX_VERIFY_THREADS, availableParallelism(), Math.floor(memoryBytes / VERIFY_BYTES_PER_THREAD));
}

/** What a page-hash worker is given (src/precopy/page-hash-worker.ts). */
export interface PageHashJob {
  memory: GuestMemory;
  pageSize: number;
  first: number;
  count: number;
}

/** What a page-hash worker answers: the hashes of its pages, in order, or why it could not. */
export type PageHashReply = { hashes: Uint32Array } | { error: { code: MigrationErrorCode; message: string } };

/** The outcome of checking the paused copy. */
export interface CopyCheck {
  /** Digest of the memory at the pause (docs/protocol.md §6), comparable with the target's. */
  digest: string;
  /**
   * Pages whose memory at the pause differs from what was last sent: writes the dirty tracking
   * missed. 0 for a `scan` backend, whose pause made them equal.
   */
  missedPages: number;
  /** How the memory was read. */
  method: 'sent-hashes' | 'workers' | 'this-thread';
  /** From the check's start to its outcome, in milliseconds. */
  ms: number;
}

/**
 * Checks `domain`'s paused memory against `sent`, the per-page hashes of what the source sent,
 * as the module comment says. Started once, by {@link start}; {@link cancel} stops the workers
 * (for a guest about to run here again) and makes the result reject with CancelledError.
 */
export class PausedCopyCheck {
  private running: Promise<CopyCheck> | undefined;
  private readonly workers = new Set<Worker>();
  private cancelled = false;

  /** @param threads worker threads to use where the memory allows; @default verifyThreadsFor(the guest's memory) */
  constructor(
    private readonly domain: SourceDomain,
    private readonly sent: PageDigest,
    private readonly threads = verifyThreadsFor(domain.descriptor.memoryBytes),
  ) {}

  /** Starts the check if it has not started; returns its outcome. Idempotent. */
  start(): Promise<CopyCheck> {
    this.running ??= this.run();
    return this.running;
  }

  /** Stops a check under way. Idempotent; a check not started never starts. */
  cancel(): void {
    this.cancelled = true;
    this.stopWorkers();
  }

  private stopWorkers(): void {
    for (const worker of this.workers) void worker.terminate();
    this.workers.clear();
  }

  private async run(): Promise<CopyCheck> {
    const startedAt = performance.now();
    if (this.domain.dirtyTracking === 'scan') {
      return { digest: this.sent.digest(), missedPages: 0, method: 'sent-hashes', ms: performance.now() - startedAt };
    }
    const { pageCount } = this.domain;
    const { pageSize } = this.domain.descriptor;
    const memory = this.domain.memory();
    let hashes: Uint32Array;
    let method: CopyCheck['method'];
    if (memory.kind !== 'none' && this.threads >= 1) {
      hashes = await this.hashInWorkers(memory, pageCount, pageSize, this.threads);
      method = 'workers';
    } else {
      hashes = await this.hashHere(memory, pageCount, pageSize);
      method = 'this-thread';
    }
    const sentHashes = this.sent.hashes;
    let missedPages = 0;
    for (let pfn = 0; pfn < pageCount; pfn++) if (hashes[pfn] !== sentHashes[pfn]) missedPages++;
    return { digest: digestOfHashes(hashes, pageSize), missedPages, method, ms: performance.now() - startedAt };
  }

  /** Every page's hash, computed in this thread: in place where it can reach the memory. */
  private async hashHere(memory: GuestMemory, pageCount: number, pageSize: number): Promise<Uint32Array> {
    if (memory.kind === 'none') {
      let reads = 0;
      return hashMemory(pageCount, pageSize, async (pfns, dst) => {
        if (++reads % (SLICE_PAGES / DIGEST_CHUNK_PAGES) === 0) await yieldToLoop();
        this.throwIfCancelled();
        await this.domain.readPages(pfns, dst);
      });
    }
    const access = openGuestMemory(memory, pageSize);
    try {
      const hashes = new Uint32Array(pageCount);
      const scanner = new HashScanner(access, hashes);
      for (let first = 0; first < pageCount; first += SLICE_PAGES) {
        this.throwIfCancelled();
        scanner.record(first, Math.min(SLICE_PAGES, pageCount - first));
        await yieldToLoop();
      }
      return hashes;
    } finally {
      access.close();
    }
  }

  private throwIfCancelled(): void {
    if (this.cancelled) throw new CancelledError('the check of the paused copy was cancelled');
  }

  /** Every page's hash, `threads` workers each hashing one contiguous range. */
  private async hashInWorkers(memory: GuestMemory, pageCount: number, pageSize: number, threads: number): Promise<Uint32Array> {
    const hashes = new Uint32Array(pageCount);
    const per = Math.ceil(pageCount / threads);
    const ranges = Array.from({ length: threads }, (_, i) => ({ first: i * per, count: Math.min(per, pageCount - i * per) }));
    try {
      await Promise.all(
        ranges.map(async ({ first, count }) => {
          const part = await this.inWorker({ memory, pageSize, first, count });
          hashes.set(part, first);
        }),
      );
    } finally {
      // Only after a failure do any still run: the others are not waited for.
      this.stopWorkers();
    }
    return hashes;
  }

  private inWorker(job: PageHashJob): Promise<Uint32Array> {
    if (this.cancelled) return Promise.reject(new CancelledError('the check of the paused copy was cancelled'));
    const worker = new Worker(new URL('./page-hash-worker.js', import.meta.url), { workerData: job, execArgv: [] });
    this.workers.add(worker);
    return new Promise((resolve, reject) => {
      worker.once('message', (reply: PageHashReply) => {
        if ('hashes' in reply) resolve(reply.hashes);
        else reject(new MigrationError(reply.error.code, `checking the paused copy failed: ${reply.error.message}`));
      });
      worker.once('error', (err) => reject(new DomainFailedError(`a thread checking the paused copy failed: ${err.message}`, { cause: err })));
      worker.once('exit', (code) => {
        this.workers.delete(worker);
        // After a reply this settles nothing; before one, the worker was stopped or died.
        if (this.cancelled) reject(new CancelledError('the check of the paused copy was cancelled'));
        else reject(new DomainFailedError(`a thread checking the paused copy exited with code ${code} before answering`));
      });
    });
  }
}
