/**
 * How fast a guest dirties memory, from the page counts each dirty-log read returns. The
 * pre-copy policy compares it with the link rate to decide whether another round can converge.
 * Pure: time is passed in, so tests drive it with a fake clock.
 */

import { InvalidArgumentError } from '../errors.js';

/**
 * Half-life of the smoothed rate, in milliseconds: a sample that old weighs half as much as a
 * fresh one.
 */
export const DEFAULT_DIRTY_RATE_HALF_LIFE_MS = 1000;

/** Options of a {@link DirtyRateMeter}. */
export interface DirtyRateMeterOptions {
  /**
   * Half-life of the exponentially weighted rate, in milliseconds.
   * @default DEFAULT_DIRTY_RATE_HALF_LIFE_MS
   */
  halfLifeMs?: number;
  /**
   * Time the counting started (when the dirty log was enabled), in milliseconds on the same clock
   * as the samples. Without it the first sample only sets the start, and its pages count toward
   * `totalPages` but not toward a rate, since the interval they cover is unknown.
   */
  startMs?: number;
}

/** Measures a dirty rate from `(pagesCollected, nowMs)` samples. */
export class DirtyRateMeter {
  private readonly halfLifeMs: number;
  private lastMs: number | undefined;
  /** Pages reported at the same instant as the previous sample, carried to the next interval. */
  private pendingPages = 0;
  private smoothed = 0;
  private last = 0;
  private intervalCount = 0;
  private total = 0;

  constructor(options: DirtyRateMeterOptions = {}) {
    const halfLifeMs = options.halfLifeMs ?? DEFAULT_DIRTY_RATE_HALF_LIFE_MS;
    if (!(Number.isFinite(halfLifeMs) && halfLifeMs > 0)) {
      throw new InvalidArgumentError(`dirty rate half-life must be a positive number of milliseconds, got ${halfLifeMs}`);
    }
    this.halfLifeMs = halfLifeMs;
    if (options.startMs !== undefined) {
      if (!Number.isFinite(options.startMs)) {
        throw new InvalidArgumentError(`dirty rate start time must be a finite number of milliseconds, got ${options.startMs}`);
      }
      this.lastMs = options.startMs;
    }
  }

  /**
   * Records that `pagesCollected` pages were found dirty at time `nowMs` (milliseconds), counting
   * since the previous sample. Samples at the same instant are added up; a clock that goes
   * backwards is treated as standing still.
   */
  sample(pagesCollected: number, nowMs: number): void {
    if (!(Number.isFinite(pagesCollected) && pagesCollected >= 0)) {
      throw new InvalidArgumentError(`dirty page count must be a non-negative number, got ${pagesCollected}`);
    }
    if (!Number.isFinite(nowMs)) {
      throw new InvalidArgumentError(`sample time must be a finite number of milliseconds, got ${nowMs}`);
    }
    this.total += pagesCollected;
    if (this.lastMs === undefined) {
      this.lastMs = nowMs;
      return;
    }
    const elapsedMs = nowMs - this.lastMs;
    if (elapsedMs <= 0) {
      this.pendingPages += pagesCollected;
      return;
    }
    const pages = this.pendingPages + pagesCollected;
    this.pendingPages = 0;
    this.lastMs = nowMs;
    const rate = (pages * 1000) / elapsedMs;
    this.last = rate;
    if (this.intervalCount === 0) {
      this.smoothed = rate;
    } else {
      // Weight by elapsed time, so a long interval counts for more than a short one.
      const keep = Math.pow(2, -elapsedMs / this.halfLifeMs);
      this.smoothed = this.smoothed * keep + rate * (1 - keep);
    }
    this.intervalCount++;
  }

  /** Exponentially weighted dirty rate, in pages per second; 0 until an interval completed. */
  get pagesPerSecond(): number {
    return this.smoothed;
  }

  /** Dirty rate over the most recent interval alone, in pages per second. */
  get lastPagesPerSecond(): number {
    return this.last;
  }

  /** Number of completed intervals (samples after the first that advanced the clock). */
  get intervals(): number {
    return this.intervalCount;
  }

  /** All pages reported so far, including the first sample's. */
  get totalPages(): number {
    return this.total;
  }

  /** The weighted dirty rate in bytes per second, for pages of `pageSize` bytes. */
  bytesPerSecond(pageSize: number): number {
    return this.smoothed * pageSize;
  }

  /** The last interval's dirty rate in bytes per second, for pages of `pageSize` bytes. */
  lastBytesPerSecond(pageSize: number): number {
    return this.last * pageSize;
  }
}
