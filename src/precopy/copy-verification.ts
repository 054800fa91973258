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
 * - `log` tracking, memory other threads reach (`shared`, `file`): worker threads hash ranges of
 *   pages where they lie, in parallel, leaving this thread free.
 * - `log` tracking, memory reachable only through `readPages`: this thread reads and hashes it.
 */

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { GuestMemory, SourceDomain } from '../domain/backend.js';
import { CancelledError, DomainFailedError, MigrationError, type MigrationErrorCode } from '../errors.js';
import { digestOfHashes, hashMemory, type PageDigest } from '../protocol/page-digest.js';

/** Most worker threads one verification uses. */
export const MAX_VERIFY_THREADS = 4;
/** Guest memory per verification thread: below it a worker's start costs more than it saves. */
export const VERIFY_BYTES_PER_THREAD = 64 * 1024 * 1024;

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

  constructor(
    private readonly domain: SourceDomain,
    private readonly sent: PageDigest,
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
    const threads = Math.min(MAX_VERIFY_THREADS, availableParallelism(), Math.floor((pageCount * pageSize) / VERIFY_BYTES_PER_THREAD));
    let hashes: Uint32Array;
    let method: CopyCheck['method'];
    if (memory.kind !== 'none' && threads >= 1) {
      hashes = await this.hashInWorkers(memory, pageCount, pageSize, threads);
      method = 'workers';
    } else {
      hashes = await hashMemory(pageCount, pageSize, (pfns, dst) => {
        if (this.cancelled) throw new CancelledError('the check of the paused copy was cancelled');
        return this.domain.readPages(pfns, dst);
      });
      method = 'this-thread';
    }
    const sentHashes = this.sent.hashes;
    let missedPages = 0;
    for (let pfn = 0; pfn < pageCount; pfn++) if (hashes[pfn] !== sentHashes[pfn]) missedPages++;
    return { digest: digestOfHashes(hashes, pageSize), missedPages, method, ms: performance.now() - startedAt };
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
