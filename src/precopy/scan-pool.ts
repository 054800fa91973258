/**
 * The dirty-page scan spread over worker threads: memory is cut into chunks, and each worker takes
 * the next chunk as soon as it is done with one, so a worker slowed by a busy core does less. Each
 * worker reads guest memory through its own accessor (positioned reads into its own reused
 * buffer) and hashes what it read, so a scan of a RAM file costs a read and an XXH32 of all memory
 * divided among the threads. The comparison is the one `HashScanner` makes, page for page: the
 * pages found are the same as a scan in one thread would find.
 */

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DomainFailedError, InvalidArgumentError } from '../errors.js';
import type { GuestMemory } from '../util/guest-memory-types.js';
import type { ScanJob, ScanReply, ScanWorkerData } from './scan-messages.js';

/** Most threads a scan uses, whatever the host has. @default 4 */
export const MAX_SCAN_THREADS = 4;

/** Pages per chunk handed to a worker: 16 MiB of 4 KiB pages, many chunks per thread for 1 GiB. */
export const SCAN_CHUNK_PAGES = 4096;

/** Options of {@link ScanPool}. */
export interface ScanPoolOptions {
  /** Worker threads. @default min(MAX_SCAN_THREADS, the host's available parallelism) */
  threads?: number;
  /** Pages per chunk. @default SCAN_CHUNK_PAGES */
  chunkPages?: number;
}

/** Scans guest memory against a hash table with worker threads. */
export class ScanPool {
  /** The table the workers compare with and record into: one u32 per page, shared. */
  private readonly table: Uint32Array;
  private readonly workers: Worker[];
  private readonly chunkPages: number;
  private closed = false;
  /** The jobs a scan stopped early still has under way: the next scan starts once they are answered. */
  private settling: Promise<void> = Promise.resolve();

  /**
   * Starts the workers; they sit idle, and keep no process alive, until a scan.
   * @param memory guest memory as `openGuestMemory` takes it (`shared` or `file`)
   * @param pageSize bytes per page
   * @param pageCount pages in the memory
   */
  constructor(
    memory: GuestMemory,
    pageSize: number,
    readonly pageCount: number,
    options: ScanPoolOptions = {},
  ) {
    if (memory.kind === 'none') throw new InvalidArgumentError('a scan needs memory it can read (kind "shared" or "file"), not "none"');
    const threads = options.threads ?? Math.min(MAX_SCAN_THREADS, availableParallelism());
    this.chunkPages = options.chunkPages ?? SCAN_CHUNK_PAGES;
    if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`scan threads must be a whole number of at least 1, not ${threads}`);
    if (!Number.isInteger(this.chunkPages) || this.chunkPages < 1) throw new InvalidArgumentError(`scan chunk pages must be a whole number of at least 1, not ${this.chunkPages}`);
    const shared = new SharedArrayBuffer(pageCount * Uint32Array.BYTES_PER_ELEMENT);
    this.table = new Uint32Array(shared);
    const workerData: ScanWorkerData = { memory, pageSize, table: shared };
    this.workers = Array.from({ length: Math.min(threads, Math.ceil(pageCount / this.chunkPages)) || 1 }, () => {
      const worker = new Worker(new URL('./scan-worker.js', import.meta.url), { workerData, execArgv: [] });
      worker.unref();
      return worker;
    });
  }

  /** Worker threads in use. */
  get threads(): number {
    return this.workers.length;
  }

  /** Chunks a scan cuts memory into. */
  get chunks(): number {
    return Math.ceil(this.pageCount / this.chunkPages);
  }

  /**
   * The pages whose contents hash differently from their entry in `hashes` (one per page,
   * `hashPage`), ascending, in a new array. `hashes` is read once, at the start.
   */
  async changedPages(hashes: Uint32Array): Promise<Uint32Array> {
    const found: Uint32Array[] = [];
    let total = 0;
    for await (const pages of this.changedRuns(hashes)) {
      found.push(pages);
      total += pages.length;
    }
    const all = new Uint32Array(total);
    let at = 0;
    for (const pages of found) {
      all.set(pages, at);
      at += pages.length;
    }
    return all;
  }

  /**
   * The same pages as {@link changedPages}, handed out chunk by chunk as the workers finish them:
   * one ascending run per chunk that holds any, in memory order, so a caller sends a chunk's pages
   * while the workers scan the next ones. A chunk finished early waits for those before it. A
   * caller that stops iterating early stops the scan: no further chunk is handed to a worker.
   */
  async *changedRuns(hashes: Uint32Array): AsyncGenerator<Uint32Array, void, undefined> {
    this.checkTable(hashes);
    await this.settling;
    this.table.set(hashes);
    const chunks = Math.ceil(this.pageCount / this.chunkPages);
    const ready = new Array<Uint32Array | undefined>(chunks);
    let wake: (() => void) | undefined;
    let failure: { error: unknown } | undefined;
    const halt = { halted: false };
    const scan = this.run('changed', halt, (chunk, pages) => {
      ready[chunk] = pages;
      wake?.();
    });
    scan.catch((error: unknown) => {
      failure = { error };
      wake?.();
    });
    try {
      for (let chunk = 0; chunk < chunks; chunk++) {
        while (ready[chunk] === undefined) {
          if (failure) throw failure.error;
          await new Promise<void>((resolve) => (wake = resolve));
        }
        const pages = ready[chunk]!;
        ready[chunk] = undefined;
        if (pages.length > 0) yield pages;
      }
      await scan;
    } finally {
      halt.halted = true;
      this.settling = scan.then(
        () => undefined,
        () => undefined,
      );
    }
  }

  /** Writes the current hash of every page into `hashes`. */
  async record(hashes: Uint32Array): Promise<void> {
    this.checkTable(hashes);
    await this.settling;
    await this.run('record', { halted: false }, () => undefined);
    hashes.set(this.table);
  }

  /** Lets the workers end and release guest memory. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const worker of this.workers) worker.postMessage({ op: 'close' } satisfies ScanJob);
  }

  private checkTable(hashes: Uint32Array): void {
    if (this.closed) throw new InvalidArgumentError('the scan pool was used after it was closed');
    if (hashes.length !== this.pageCount) {
      throw new InvalidArgumentError(`a hash table of ${hashes.length} pages does not fit a memory of ${this.pageCount} pages`);
    }
  }

  /**
   * Runs `op` over every chunk, passing each chunk's pages to `onChunk` as it is answered (in
   * whatever order the workers finish). Once `halt.halted`, no further chunk is handed out, and
   * the run resolves when the jobs under way are answered.
   */
  private run(op: 'changed' | 'record', halt: { halted: boolean }, onChunk: (chunk: number, pages: Uint32Array) => void): Promise<void> {
    const chunks = Math.ceil(this.pageCount / this.chunkPages);
    let next = 0;
    let busy = 0;
    return new Promise((resolve, reject) => {
      let settled = false;
      const listeners = new Map<Worker, { chunk: number; reply: (r: ScanReply) => void; error: (e: Error) => void; exit: (code: number) => void }>();
      const settle = (error?: Error): void => {
        if (settled) return;
        settled = true;
        for (const [w, l] of listeners) {
          w.off('message', l.reply).off('error', l.error).off('exit', l.exit);
          w.unref();
        }
        if (error) reject(error);
        else resolve();
      };
      const give = (worker: Worker): void => {
        if (next >= chunks || halt.halted) {
          if (busy === 0) settle();
          return;
        }
        const chunk = next++;
        const first = chunk * this.chunkPages;
        busy++;
        // The chunk a worker answers is the one it was given last: it runs one job at a time.
        listeners.get(worker)!.chunk = chunk;
        worker.postMessage({ op, first, count: Math.min(this.chunkPages, this.pageCount - first) } satisfies ScanJob);
      };
      for (const worker of this.workers) {
        const l = {
          chunk: -1,
          reply: (reply: ScanReply): void => {
            busy--;
            if ('error' in reply) return settle(new DomainFailedError(`a dirty-page scan thread could not read guest memory: ${reply.error}`));
            if (!settled) onChunk(l.chunk, reply.pages);
            give(worker);
          },
          error: (err: Error): void => settle(new DomainFailedError(`a dirty-page scan thread failed: ${err.message}`, { cause: err })),
          exit: (code: number): void => settle(new DomainFailedError(`a dirty-page scan thread exited (code ${code}) in the middle of a scan`)),
        };
        listeners.set(worker, l);
        worker.on('message', l.reply).on('error', l.error).on('exit', l.exit);
        worker.ref();
      }
      for (const worker of this.workers) give(worker);
    });
  }
}
