/**
 * What the main thread and the page-channel workers say to each other (docs/protocol.md §15).
 * Everything here survives structured cloning; frame buffers travel by transfer, so a buffer
 * belongs to exactly one thread at a time.
 */

import type { PageCodec } from '../protocol/page-codecs.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import type { GuestMemory } from '../util/guest-memory-types.js';

/** `workerData` of a source channel worker (channel-worker.ts). */
export interface SourceWorkerData {
  memory: GuestMemory;
  pageSize: number;
  codec: PageCodec;
  dataPagesPerBatch: number;
  /** Frame buffers the worker owns; each frame in flight holds one until the main thread returns it. */
  buffers: number;
  /**
   * The target takes deltas: frames have room for a `delta` payload. The cache itself comes later
   * (`delta-cache`), once the source has decided to send deltas. @default false
   */
  delta?: boolean;
}

/** Main thread to source worker. */
export type SourceWorkerRequest =
  /**
   * Gather, frame and hand back the pages `pfns` as batches of `round`; with `codes`, the delta
   * cache's slot code of each page (`DeltaCache.assign`).
   */
  | { kind: 'job'; round: number; pfns: Uint32Array; codes?: Int32Array }
  /**
   * The delta cache's slots and their hashes (`DeltaCache.data`, `DeltaCache.hashes`), shared,
   * sent before the first job with `codes`: deltas were decided on before round 1. Never sent
   * when they were not.
   */
  | { kind: 'delta-cache'; cache: SharedArrayBuffer; hashes: SharedArrayBuffer }
  /** A frame buffer the main thread has finished sending, back for reuse. */
  | { kind: 'buffer'; buffer: ArrayBuffer };

/** Source worker to main thread. */
export type SourceWorkerReply =
  /**
   * One framed batch: `length` bytes at `offset` of `buffer` go on the wire as they are. The page
   * numbers and hashes are for the source's memory digest.
   */
  | {
      kind: 'frame';
      buffer: ArrayBuffer;
      offset: number;
      length: number;
      dataPfns: Uint32Array;
      hashes: Uint32Array;
      zeroPfns: Uint32Array;
      /** Pages of the batch sent as deltas; present for a `delta` batch. */
      deltas?: number;
    }
  /** Every batch of the job with `pages` pages has been handed back. */
  | { kind: 'job-done'; pages: number }
  | { kind: 'error'; code: string; message: string };

/** `workerData` of a target channel worker (channel-writer-worker.ts). */
export interface TargetWorkerData {
  memory: GuestMemory;
  pageSize: number;
  pageCount: number;
  limits: ProtocolLimits;
  /**
   * The memory is as the target backend created it, all zeros, until round 0 ends: zero pages of
   * round 0 need no write (each page comes once per round).
   */
  freshUntilRound1: boolean;
  /** The migration's version takes `delta` batches (docs/protocol.md §5): their bases are read from guest memory. */
  delta: boolean;
}

/** Main thread to target worker: one frame received on the channel. */
export interface TargetWorkerRequest {
  frame: Uint8Array;
}

/** Target worker to main thread, one per frame, in order. */
export type TargetWorkerReply =
  /** A batch checked and written: its pages and their hashes, for the target's digest. */
  | { kind: 'written'; seq: number; dataPfns: Uint32Array; hashes: Uint32Array; zeroPfns: Uint32Array }
  /** An unknown optional record, skipped. */
  | { kind: 'ignored' }
  | { kind: 'abort'; code: string; message: string }
  | { kind: 'error'; code: string; message: string };
