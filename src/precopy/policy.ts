/**
 * When to stop iterating. The pre-copy loop asks a policy once per round, after reading the dirty
 * log and before sending: go on with another round, pause the guest and copy what is left, or
 * give up (the guest then keeps running on the source).
 */

/** The longest pause the default policy aims for, in milliseconds. */
export const DEFAULT_DOWNTIME_BUDGET_MS = 300;

/** Rounds after which the default policy stops iterating whatever the dirty rate. */
export const DEFAULT_MAX_ROUNDS = 30;

/**
 * Time the switchover costs besides sending the last pages (device state, the final handshake,
 * resume), in milliseconds, assumed until the engine measures it.
 */
export const DEFAULT_SWITCHOVER_OVERHEAD_MS = 5;

/** What the pre-copy loop knows when it asks the policy. */
export interface PrecopyStats {
  /** The round about to start (1 for the first after the full pass). */
  round: number;
  /** Milliseconds since the migration started. */
  elapsedMs: number;
  /** Pages dirtied since the previous round, which the next round (or the pause) must send. */
  dirtyPages: number;
  /** `dirtyPages` x page size. */
  dirtyBytes: number;
  /** Raw page bytes per second the link has moved so far (before compression). */
  bandwidthBytesPerSec: number;
  /** Bytes per second the guest dirtied during the previous round. */
  dirtyRateBytesPerSec: number;
  /** Milliseconds the pause would last if it started now, as the engine estimates it. */
  expectedDowntimeMs: number;
  /** Raw page bytes sent so far. */
  bytesSent: number;
  /** Guest memory size in bytes. */
  memoryBytes: number;
}

/** A policy's answer. */
export type PrecopyDecision = 'continue' | 'stop-and-copy' | 'abort';

/** Decides, once per round, whether pre-copy goes on. Must be synchronous and cheap. */
export type PrecopyPolicy = (stats: PrecopyStats) => PrecopyDecision;

/** Options of {@link defaultPolicy}. */
export interface DefaultPolicyOptions {
  /** @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** @default DEFAULT_MAX_ROUNDS */
  maxRounds?: number;
}

/**
 * Stops as soon as what is dirty can be sent within the downtime budget at the bandwidth measured
 * so far, or once `maxRounds` rounds have run (accepting a longer pause rather than iterating
 * for ever). Never aborts.
 */
export function defaultPolicy(options: DefaultPolicyOptions = {}): PrecopyPolicy {
  const budgetMs = options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS;
  const maxRounds = options.maxRounds ?? DEFAULT_MAX_ROUNDS;
  return (stats) => {
    if (stats.expectedDowntimeMs <= budgetMs) return 'stop-and-copy';
    if (stats.round >= maxRounds) return 'stop-and-copy';
    return 'continue';
  };
}

/** Milliseconds to send `bytes` at `bytesPerSec`, plus a fixed switchover cost. */
export function expectedDowntimeMs(bytes: number, bytesPerSec: number, overheadMs: number): number {
  if (bytes === 0) return overheadMs;
  if (!(bytesPerSec > 0)) return Number.POSITIVE_INFINITY;
  return (bytes / bytesPerSec) * 1000 + overheadMs;
}
