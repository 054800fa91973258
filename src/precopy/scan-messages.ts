/**
 * What the main thread and a dirty-page scan worker (scan-worker.ts) say to each other. The hash
 * table is one SharedArrayBuffer that every worker views; each job touches only its own pages of it.
 */

import type { GuestMemory } from '../util/guest-memory-types.js';

/** `workerData` of a scan worker. */
export interface ScanWorkerData {
  memory: GuestMemory;
  pageSize: number;
  /** One u32 per guest page: the hashes a scan compares with, and where a record writes. */
  table: SharedArrayBuffer;
}

/**
 * One job: `changed` lists the pages among `first` to `first + count - 1` whose hash differs from
 * the table; `record` writes their hashes into the table. `close` (unanswered) releases the
 * worker's hold on guest memory and lets it end.
 */
export type ScanJob = { op: 'changed' | 'record'; first: number; count: number } | { op: 'close' };

/** A job's answer: the changed pages (ascending, the buffer transferred), or what went wrong. */
export type ScanReply = { pages: Uint32Array } | { error: string };
