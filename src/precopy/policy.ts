/**
 * When to stop iterating. The pre-copy loop asks a policy once per round, after reading the dirty
 * log and before sending: go on with another round, pause the guest and copy what is left, or
 * give up (the guest then keeps running on the source). The engine computes the estimates; the
 * policy only decides.
 */

import { median } from '../util/stats.js';

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

/**
 * How long a round takes from its first batch until the target acknowledged it written, as a
 * function of the page data it carries: `fixedMs + bytes x msPerByte`. The fixed part is what a
 * round pays whatever its size (the pre-flight estimate puts the link's latency there); a model
 * fitted to rounds ({@link fitRoundTime}) has none.
 */
export interface RoundTimeModel {
  fixedMs: number;
  msPerByte: number;
}

/** How long a round of `bytes` takes on `model`, in milliseconds. */
export function roundTimeAt(model: RoundTimeModel, bytes: number): number {
  return model.fixedMs + bytes * model.msPerByte;
}

/** One finished round as {@link fitRoundTime} sees it. */
export interface RoundSample {
  /** Page data the round carried, in bytes (zero pages weighted by what they cost). */
  bytes: number;
  /** First batch to acknowledgement, in milliseconds. */
  ms: number;
}

/**
 * Fits a {@link RoundTimeModel} to recent rounds: their time taken as proportional to their bytes,
 * at the median of their paces (milliseconds per byte), so that one round that met a stall does
 * not move it. The fixed part every round pays (the pipeline filling and draining) is then spread
 * over the bytes at the recent rounds' sizes, and what a much smaller last round pays beyond that
 * is among what the switchover calibration learns as overhead.
 *
 * A line through the rounds' times against their sizes was tried before, and predicted worse: the
 * first full pass, which also fills the target's fresh memory page by page, takes longer per byte
 * than any later round, and a line from it to the next round rises too steeply. Replayed over the
 * benchmark's saved rounds (492 switchovers on this protocol version), the median pace put 467
 * predictions within tolerance, the line 461; over 328 older ones, 307 each.
 */
export function fitRoundTime(samples: readonly RoundSample[]): RoundTimeModel | undefined {
  const paces = samples.filter((s) => s.bytes > 0 && s.ms > 0 && Number.isFinite(s.ms)).map((s) => s.ms / s.bytes);
  const msPerByte = median(paces);
  return msPerByte === undefined ? undefined : { fixedMs: 0, msPerByte };
}

/** The parts of an expected pause, in milliseconds. */
export interface DowntimeEstimate {
  /** The last round: its pages sent, written on the target and acknowledged. */
  roundMs: number;
  /** Half a round trip: "go" reaching the target. */
  handshakeMs: number;
  /** What no term models: stopping the vCPUs here and starting them there, the state, the records. */
  pauseResumeMs: number;
  /** The sum. */
  totalMs: number;
}

/**
 * The pause the switchover would cost now: a last round of `bytes` as recent rounds went
 * (`round`), then half of `rttMs` for "go", plus pause and resume. With nothing measured yet and
 * something dirty, infinite.
 */
export function estimateDowntime(
  bytes: number,
  round: RoundTimeModel | undefined,
  rttMs: number,
  pauseResumeMs = DEFAULT_PAUSE_RESUME_MS,
): DowntimeEstimate {
  const roundMs = bytes === 0 ? 0 : round ? roundTimeAt(round, bytes) : Number.POSITIVE_INFINITY;
  const handshakeMs = rttMs / 2;
  return { roundMs, handshakeMs, pauseResumeMs, totalMs: roundMs + handshakeMs + pauseResumeMs };
}
