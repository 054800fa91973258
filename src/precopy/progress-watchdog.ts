/**
 * Deadlines based on progress, not on the wall clock alone: a completion deadline that grows
 * with the guest's memory (as OpenStack Nova's completion timeout does), and a stall detector
 * that fires when the bytes left to send set no new low for a while. Either one triggers the
 * migration's timeout action.
 */

import { CompletionTimeoutError, NoProgressError, type MigrationError } from '../errors.js';

/** Completion deadline per GiB of guest memory, in milliseconds (Nova's default: 800 s/GiB). */
export const DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB = 800_000;

/** How long the bytes left may set no new low, in milliseconds. */
export const DEFAULT_STALL_TIMEOUT_MS = 120_000;

/** What happens when a deadline passes. `abort`: the guest keeps running on the source.
 * `force-switchover`: pause now and copy what is left, accepting a longer pause. */
export type TimeoutAction = 'abort' | 'force-switchover';

/** Default timeout action. */
export const DEFAULT_TIMEOUT_ACTION: TimeoutAction = 'abort';

/** Watches one migration's progress. Pure: the caller passes the time. */
export class ProgressWatchdog {
  private lowestBytes = Number.POSITIVE_INFINITY;
  private lowSince: number;
  private readonly deadline: number;

  constructor(
    private readonly startMs: number,
    memoryBytes: number,
    private readonly completionTimeoutMsPerGiB: number,
    private readonly stallTimeoutMs: number,
  ) {
    this.deadline = startMs + (completionTimeoutMsPerGiB * memoryBytes) / 2 ** 30;
    this.lowSince = startMs;
  }

  /** Records the bytes still to send at `nowMs`. */
  observe(remainingBytes: number, nowMs: number): void {
    if (remainingBytes < this.lowestBytes) {
      this.lowestBytes = remainingBytes;
      this.lowSince = nowMs;
    }
  }

  /**
   * Milliseconds from `nowMs` until the nearer deadline passes, should the bytes left set no new
   * low meanwhile; `Infinity` with neither.
   */
  msLeft(nowMs: number): number {
    return Math.min(this.deadline, this.lowSince + this.stallTimeoutMs) - nowMs;
  }

  /** The deadline that has passed at `nowMs`, if any, as the error to report. */
  check(nowMs: number): MigrationError | undefined {
    if (nowMs >= this.deadline) {
      return new CompletionTimeoutError(
        `the migration did not complete within ${Math.round(this.deadline - this.startMs)} ms ` +
          `(${this.completionTimeoutMsPerGiB} ms per GiB of guest memory)`,
      );
    }
    if (nowMs - this.lowSince >= this.stallTimeoutMs) {
      return new NoProgressError(
        `the bytes left to send (lowest ${this.lowestBytes}) set no new low for ${this.stallTimeoutMs} ms: ` +
          `the guest dirties memory as fast as the link sends it; enable auto-converge, raise the downtime budget, or use a faster link`,
      );
    }
    return undefined;
  }
}
