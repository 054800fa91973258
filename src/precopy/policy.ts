/**
 * When to stop iterating. The pre-copy loop asks a policy once per round, after reading the dirty
 * log and before sending: go on with another round, pause the guest and copy what is left, or
 * give up (the guest then keeps running on the source). The engine computes the estimates; the
 * policy only decides.
 */

/** The longest pause the default policy aims for, in milliseconds. */
export const DEFAULT_DOWNTIME_BUDGET_MS = 300;

/**
 * Share of the budget the default policy aims the expected pause at: the prediction is an
 * estimate, and a pause that lands a little over it still has to fit the budget.
 */
export const DEFAULT_BUDGET_HEADROOM = 0.85;

/**
 * Rounds after which the default policy stops iterating whatever the dirty rate: none. A guest
 * that does not converge is slowed down by auto-converge, or ends as the timeout action of the
 * stall and completion deadlines says; a round count would silently force a long pause instead.
 * Pass `maxRounds` to have that (Xen's save loop does, after a fixed number of iterations).
 */
export const DEFAULT_MAX_ROUNDS = Number.POSITIVE_INFINITY;

/** Rounds the pre-flight estimate plays forward before it calls a guest non-converging. */
export const ESTIMATE_MAX_ROUNDS = 30;

/**
 * Time the source needs to pause its vCPUs, and the target to start its own, in milliseconds:
 * assumed until measured (both are well under a millisecond for the simulated guest).
 */
export const DEFAULT_PAUSE_RESUME_MS = 1;

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
  /** Raw page bytes per second the link has absorbed lately (before compression). */
  bandwidthBytesPerSec: number;
  /** Bytes per second the guest dirtied during the previous round (distinct pages x page size). */
  dirtyRateBytesPerSec: number;
  /** Milliseconds the pause would last if it started now, as the engine estimates it. */
  expectedDowntimeMs: number;
  /** The downtime budget in force now (after any ramp), in milliseconds. */
  downtimeBudgetMs: number;
  /** The vCPU throttle in force, in percent. */
  throttlePercent: number;
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
  /** @default DEFAULT_MAX_ROUNDS */
  maxRounds?: number;
  /** @default DEFAULT_BUDGET_HEADROOM */
  headroom?: number;
}

/**
 * Stops as soon as the expected pause fits the downtime budget in force (with `headroom`), or
 * once `maxRounds` rounds have run (accepting a longer pause rather than iterating for ever).
 * Never aborts: the engine's deadlines do that.
 */
export function defaultPolicy(options: DefaultPolicyOptions = {}): PrecopyPolicy {
  const maxRounds = options.maxRounds ?? DEFAULT_MAX_ROUNDS;
  const headroom = options.headroom ?? DEFAULT_BUDGET_HEADROOM;
  return (stats) => {
    if (stats.expectedDowntimeMs <= headroom * stats.downtimeBudgetMs) return 'stop-and-copy';
    if (stats.round >= maxRounds) return 'stop-and-copy';
    return 'continue';
  };
}

/**
 * A downtime budget that starts low and rises in steps, as OpenStack Nova and KubeVirt do: a
 * guest that converges quickly gets a short pause, and one that does not gets a longer one
 * rather than none.
 */
export interface DowntimeRamp {
  /** The budget at the start, in milliseconds. */
  initialMs: number;
  /** Steps from `initialMs` up to the final budget. */
  steps: number;
  /** Time between steps, in milliseconds. */
  stepIntervalMs: number;
}

/** The budget in force `elapsedMs` into a migration whose final budget is `finalMs`. */
export function downtimeBudgetAt(elapsedMs: number, finalMs: number, ramp?: DowntimeRamp): number {
  if (!ramp || ramp.steps <= 0 || ramp.initialMs >= finalMs) return finalMs;
  const step = Math.min(ramp.steps, Math.floor(elapsedMs / ramp.stepIntervalMs));
  return ramp.initialMs + ((finalMs - ramp.initialMs) * step) / ramp.steps;
}

/** The parts of an expected pause, in milliseconds. */
export interface DowntimeEstimate {
  /** Handing what is dirty to the link at the measured sending rate. */
  transferMs: number;
  /**
   * The switchover's waits: for the target to drain its queue and acknowledge the last round
   * (measured as a pre-copy round's acknowledgement wait, which includes one round trip), then
   * half a round trip for "go" to arrive.
   */
  handshakeMs: number;
  /** Stopping the vCPUs here and starting them there. */
  pauseResumeMs: number;
  /** The sum. */
  totalMs: number;
}

/**
 * The pause the switchover would cost now: `bytes` at `sendBytesPerSec` (the rate at which
 * recent rounds were handed to the link), plus `ackMs` (how long recent rounds waited for their
 * acknowledgement after the last batch: the target draining what was still queued, and a round
 * trip), plus half of `rttMs` (the shortest acknowledgement seen), plus pause and resume.
 */
export function estimateDowntime(
  bytes: number,
  sendBytesPerSec: number,
  ackMs: number,
  rttMs: number,
  pauseResumeMs = DEFAULT_PAUSE_RESUME_MS,
): DowntimeEstimate {
  const transferMs = bytes === 0 ? 0 : sendBytesPerSec > 0 ? (bytes / sendBytesPerSec) * 1000 : Number.POSITIVE_INFINITY;
  const handshakeMs = ackMs + rttMs / 2;
  return { transferMs, handshakeMs, pauseResumeMs, totalMs: transferMs + handshakeMs + pauseResumeMs };
}
