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
 * function of the page data it carries: `fixedMs + bytes x msPerByte`. The fixed part is what any
 * round pays whatever its size: the pipeline filling and draining (a batch is gathered, then
 * compressed, sent, decompressed and written, each step on its own thread or process) and the
 * acknowledgement's way back.
 */
export interface RoundTimeModel {
  fixedMs: number;
  msPerByte: number;
  /**
   * The smallest round the model was fitted to, in bytes. A smaller round pays the fixed part in
   * proportion to its size only: it does not fill the pipeline the way the fitted rounds did (a
   * last round of 3.6 MB after pre-copy rounds of 22 and 174 MB took 9 ms where the full fixed
   * part predicted 18). @default 0 (the fixed part in full at any size)
   */
  fixedFromBytes?: number;
}

/** How long a round of `bytes` takes on `model`, in milliseconds. */
export function roundTimeAt(model: RoundTimeModel, bytes: number): number {
  const from = model.fixedFromBytes ?? 0;
  const share = from > 0 ? Math.min(1, bytes / from) : 1;
  return model.fixedMs * share + bytes * model.msPerByte;
}

/** One finished round as {@link fitRoundTime} sees it. */
export interface RoundSample {
  /** Page data the round carried, in bytes (zero pages weighted by what they cost). */
  bytes: number;
  /** First batch to acknowledgement, in milliseconds. */
  ms: number;
}

/** Rounds whose sizes differ by less than this factor say more about noise than about a slope. */
export const ROUND_FIT_MIN_SIZE_RATIO = 1.25;

/**
 * Fits a {@link RoundTimeModel} to recent rounds. The slope is the median over pairs of rounds of
 * clearly different sizes (Theil-Sen: one slow round does not tilt it), the fixed part the median
 * of what each round took beyond its bytes at that slope, at least zero and at most the quickest
 * round. With no such pair (one round, or rounds of one size) the rounds' time is taken as
 * proportional to their bytes, which is exact near the size they had. A last round a little
 * smaller than the recent ones then keeps its fixed cost (scaled proportionally, one of 14 MB
 * after rounds of 21 to 260 MB was predicted 33 ms and took 47), and one far smaller than any of
 * them pays it in proportion (see {@link RoundTimeModel.fixedFromBytes}).
 */
export function fitRoundTime(samples: readonly RoundSample[]): RoundTimeModel | undefined {
  const usable = samples.filter((s) => s.bytes > 0 && s.ms > 0 && Number.isFinite(s.ms));
  if (usable.length === 0) return undefined;
  const slopes: number[] = [];
  for (let i = 0; i < usable.length; i++) {
    for (let j = i + 1; j < usable.length; j++) {
      const a = usable[i]!;
      const b = usable[j]!;
      if (Math.max(a.bytes, b.bytes) >= ROUND_FIT_MIN_SIZE_RATIO * Math.min(a.bytes, b.bytes)) {
        slopes.push((b.ms - a.ms) / (b.bytes - a.bytes));
      }
    }
  }
  const slope = median(slopes);
  if (slope === undefined || !(slope > 0)) {
    const bytes = usable.reduce((sum, s) => sum + s.bytes, 0);
    const ms = usable.reduce((sum, s) => sum + s.ms, 0);
    return { fixedMs: 0, msPerByte: ms / bytes };
  }
  const quickest = Math.min(...usable.map((s) => s.ms));
  const fixedMs = Math.min(quickest, Math.max(0, median(usable.map((s) => s.ms - slope * s.bytes))!));
  return { fixedMs, msPerByte: slope, fixedFromBytes: Math.min(...usable.map((s) => s.bytes)) };
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
