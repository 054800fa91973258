/**
 * What a source migration holds beyond the guest itself, part by part: the page-hash table, the
 * dirty log or scan table, the lists of pages to send, the send buffers of the control connection
 * and of every page channel, and the delta cache. Each part says how many bytes it holds now;
 * the ledger keeps the peak of their sum and what each part held at that peak, for the report.
 *
 * The bound ({@link DEFAULT_SOURCE_MEMORY_SHARE} of guest RAM) is what the defaults are sized
 * for: send buffers shrink their batches for a small guest, and the delta cache takes only what
 * the other parts leave of it (docs/library.md, "Memory").
 */

/** Extra source memory the defaults keep within, as a share of guest RAM. */
export const DEFAULT_SOURCE_MEMORY_SHARE = 0.1;

/**
 * Of the bound, the share the send buffers (control connection and page channels together) may
 * take by default: batches shrink below their default size to fit it.
 */
export const SEND_BUFFER_SHARE_OF_BOUND = 0.5;

/** The parts of a source migration's extra memory. */
export type SourceMemoryPart =
  /** The hash of every page sent (4 bytes a page): the batch checksums, the digest and the scan compare with it. */
  | 'pageHashes'
  /** A log-tracked domain's dirty bitmap (1 bit a page). */
  | 'dirtyLog'
  /** A scan-tracked domain's table of the hashes its scan workers found (4 bytes a page). */
  | 'scanTable'
  /** The list of pages the round being sent holds (4 bytes a page listed). */
  | 'pageLists'
  /** The control connection's batch buffers and its sample buffers. */
  | 'sendBuffers'
  /** The page channels' workers' frame and gather buffers. */
  | 'channelBuffers'
  /** The copies of pages last sent that deltas are made against. */
  | 'deltaCache'
  /** The hashes of the paused copy, read again after the switchover (4 bytes a page). */
  | 'verification';

/** The extra source memory a migration held, as its report gives it. */
export interface SourceMemoryReport {
  /** Guest RAM, in bytes: what the share is of. */
  guestBytes: number;
  /** The bound the defaults keep within, in bytes ({@link DEFAULT_SOURCE_MEMORY_SHARE} of guest RAM). */
  boundBytes: number;
  /** The most extra memory held at once, in bytes. */
  peakBytes: number;
  /** `peakBytes` over `guestBytes`. */
  peakShare: number;
  /** What each part held at the peak, in bytes; parts that held nothing are left out. */
  atPeak: Partial<Record<SourceMemoryPart, number>>;
}

/** Counts the extra memory of one source migration, part by part, and keeps its peak. */
export class SourceMemoryLedger {
  private readonly held = new Map<SourceMemoryPart, number>();
  private total = 0;
  private peak = 0;
  private atPeak: Partial<Record<SourceMemoryPart, number>> = {};

  /** @param guestBytes guest RAM in bytes; @param share the bound's share of it */
  constructor(
    readonly guestBytes: number,
    readonly share = DEFAULT_SOURCE_MEMORY_SHARE,
  ) {}

  /** The bound in bytes. */
  get boundBytes(): number {
    return Math.floor(this.guestBytes * this.share);
  }

  /** What all parts hold now, in bytes. */
  get bytes(): number {
    return this.total;
  }

  /** What `part` holds now, in bytes. */
  of(part: SourceMemoryPart): number {
    return this.held.get(part) ?? 0;
  }

  /** Records that `part` holds `bytes` now (not in addition to what it held). */
  set(part: SourceMemoryPart, bytes: number): void {
    this.total += bytes - (this.held.get(part) ?? 0);
    this.held.set(part, bytes);
    if (this.total > this.peak) {
      this.peak = this.total;
      this.atPeak = {};
      for (const [p, b] of this.held) if (b > 0) this.atPeak[p] = b;
    }
  }

  report(): SourceMemoryReport {
    return {
      guestBytes: this.guestBytes,
      boundBytes: this.boundBytes,
      peakBytes: this.peak,
      peakShare: this.guestBytes > 0 ? Math.round((this.peak / this.guestBytes) * 1e6) / 1e6 : 0,
      atPeak: { ...this.atPeak },
    };
  }
}

/**
 * Data pages per batch that keep `buffers` batch buffers of `bufferFactor` batches each (2 with a
 * compressing codec: the pages and their encoding) within `budgetBytes`: `preferred` when it fits,
 * else fewer, in steps of 16 pages, never fewer than 16.
 */
export function batchPagesWithin(budgetBytes: number, buffers: number, bufferFactor: number, pageSize: number, preferred: number): number {
  const fit = Math.floor(budgetBytes / (buffers * bufferFactor * pageSize));
  if (fit >= preferred) return preferred;
  return Math.max(16, Math.floor(fit / 16) * 16);
}
