/**
 * When to stop iterating. The pre-copy loop asks a policy once per round, after reading the dirty
 * log and before sending: go on with another round, pause the guest and copy what is left, or
 * give up (the guest then keeps running on the source). The engine computes the estimates; the
 * policy only decides.
 */

import { median } from '../util/stats.js';
import type { SwitchoverReason } from './report.js';

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
  /**
   * Milliseconds until the nearest deadline passes (the completion deadline, or the stall
   * deadline should the bytes left set no new low meanwhile); `Infinity` with none.
   */
  deadlineInMs: number;
  /** The vCPU throttle in force, in percent. */
  throttlePercent: number;
  /** Raw page bytes sent so far. */
  bytesSent: number;
  /** Guest memory size in bytes. */
  memoryBytes: number;
  /**
   * The least any pause spends finding the dirty pages, in ms: for a scan-tracked guest, the
   * fastest scan of all memory this migration measured; 0 (or absent) for a dirty log.
   */
  findDirtyFloorMs?: number;
  /** The budget a downtime ramp ends at, in ms: `downtimeBudgetMs` without a ramp. */
  finalDowntimeBudgetMs?: number;
}

/** A policy's answer. */
export type PrecopyDecision = 'continue' | 'stop-and-copy' | 'abort';

/** A decision to switch over that says why (the report shows it as `switchoverReason`). */
export interface StopAndCopy {
  decision: 'stop-and-copy';
  reason: SwitchoverReason;
}

/**
 * Decides, once per round, whether pre-copy goes on. Must be synchronous and cheap. A plain
 * 'stop-and-copy' is reported as the reason 'policy'. `wouldStop`, if given, says without
 * deciding (and without changing what the policy remembers) whether it would switch over on
 * `stats`: the engine asks it with the figures it expects once the round being sent is
 * acknowledged, to have both sides collect their garbage before the pause (see "pause-soon" in
 * docs/protocol.md). Without it, the engine guesses from the budget.
 */
export type PrecopyPolicy = ((stats: PrecopyStats) => PrecopyDecision | StopAndCopy | NoPauseFits) & {
  wouldStop?: (stats: PrecopyStats) => boolean;
};

/**
 * A decision to give up because no pause can fit, saying why: the engine ends the migration with
 * `ERR_NO_PROGRESS` and this message, or, with the timeout action `force-switchover`, switches
 * over, as when the stall deadline passes.
 */
export interface NoPauseFits {
  decision: 'abort';
  noPauseFits: string;
}

/** The decision in a policy's answer, the reason given for a switchover, and why no pause fits. */
export function decisionOf(answer: PrecopyDecision | StopAndCopy | NoPauseFits): { decision: PrecopyDecision; reason?: SwitchoverReason; noPauseFits?: string } {
  return typeof answer === 'string' ? { decision: answer } : answer;
}

/**
 * When the default policy switches over once the expected pause fits the budget:
 * - `best`: keeps iterating while each round cuts the expected pause by a meaningful share
 *   (MIN_PAUSE_SHRINK_SHARE), and stops at the floor the pause shrinks to (within that share of
 *   the lowest it has been), when the extra time would pass the bound (EXTRA_TIME_SHARE of the
 *   time until the first fit, or EXTRA_PAUSE_MULTIPLE times the pause expected then, whichever is
 *   more), or when a deadline draws near;
 * - `first-fit`: at the first round whose expected pause fits.
 */
export type SwitchoverMode = 'best' | 'first-fit';

/** @see SwitchoverMode */
export const DEFAULT_SWITCHOVER: SwitchoverMode = 'best';

/**
 * Under `best`, the share by which the last round must have cut the expected pause for another
 * round to be worth it. A hot set the link outruns shrinks by a steady ratio each round (dirty
 * rate over bandwidth; 0.6-0.75 for a 256 MiB hot set at 450 MB/s), and a round costs about the
 * pause it would have been: at 10% a round still buys a tenth of the pause for about the pause's
 * time. Below that the dirty set has reached its floor (the pages the guest rewrites within one
 * round, or the switchover's fixed costs), and rounds only add time and noise. The same share
 * says what is near the floor: a pause more than this share above the lowest one seen met a
 * round that went slow (a busy host), and the next round likely lands lower again; one more round
 * is tried then, not two in a row, as a guest whose pause keeps rising is not coming back.
 */
export const MIN_PAUSE_SHRINK_SHARE = 0.1;

/**
 * Under `best`, the most extra time spent on rounds after the expected pause first fitted, as a
 * share of the time the migration had taken until then. The time until the first fit is about
 * what first-fit's migration takes, less its pause, so the bound keeps the total within a fifth
 * of first-fit's, whatever the guest's size. It rarely binds on a hot set that converges
 * geometrically, as its rounds shrink with the pause and the floor comes first
 * (docs/bench/switchover.md compares the totals).
 */
export const EXTRA_TIME_SHARE = 0.2;

/**
 * Under `best`, the extra time rounds may take after the first fit is at least this many times
 * the pause expected then, whatever the share above allows. A round sends about what the pause
 * would have sent, and a guest the link outruns by a ratio r shrinks by r each round, so driving
 * that pause down to its floor costs about 1 / (1 - r) times it: twice covers r up to one half.
 * Without it, a first pass that got faster tightened the share's bound, and a busy guest switched
 * over at its first fit's pause (docs/bench/switchover.md, the rerun).
 */
export const EXTRA_PAUSE_MULTIPLE = 2;

/**
 * Under `best`, a further round starts only if this many times its expected duration is left
 * before the nearest deadline: a round that ran into one would end the migration (or, with the
 * `force-switchover` action, pause it with the round half sent, over the budget), where the
 * switchover that fits now would not.
 */
export const DEADLINE_MARGIN = 2;

/**
 * Consecutive rounds after which the default policy gives up when finding the dirty pages alone
 * (`findDirtyFloorMs`, the fastest scan measured) takes longer than the final budget allows the
 * pause (with headroom): no pause can then fit, and iterating until the stall deadline (two
 * minutes by default) only costs time. Several rounds, and FLOOR_OVER_BUDGET_MS at least, as each
 * scan may set a new, lower floor once a busy host calms down.
 */
export const FLOOR_OVER_BUDGET_ROUNDS = 5;

/** The least time, in ms, the floor must stay over the budget before the default policy gives up. */
export const FLOOR_OVER_BUDGET_MS = 15_000;

/** What {@link defaultPolicy} remembers of the rounds so far. */
interface PolicyMemory {
  lastRound: number;
  /** The expected pause at the previous decision, and the lowest one so far, in ms. */
  previousMs: number;
  lowestMs: number;
  /** Whether the previous round was tried for a pause that had risen far above the lowest. */
  retried: boolean;
  /** `elapsedMs` when the expected pause first fitted, and that pause, in ms. */
  fittedAtMs: number | undefined;
  fittedPauseMs: number | undefined;
  /** Consecutive rounds so far whose `findDirtyFloorMs` alone did not fit the final budget, since `floorOverSinceMs`. */
  floorOverRounds: number;
  floorOverSinceMs: number;
}

/** Options of {@link defaultPolicy}. */
export interface DefaultPolicyOptions {
  /** @default DEFAULT_MAX_ROUNDS */
  maxRounds?: number;
  /** @default DEFAULT_BUDGET_HEADROOM */
  headroom?: number;
  /** @default DEFAULT_SWITCHOVER */
  switchover?: SwitchoverMode;
  /** Under `best`, see {@link EXTRA_TIME_SHARE}. @default EXTRA_TIME_SHARE */
  extraTimeShare?: number;
  /** Under `best`, see {@link EXTRA_PAUSE_MULTIPLE}. @default EXTRA_PAUSE_MULTIPLE */
  extraPauseMultiple?: number;
}

/**
 * Switches over once nothing is left dirty (the pause is then as short as it gets), or once the
 * expected pause fits the downtime budget in force (with `headroom`) and, under `best`, stopped
 * shrinking near the lowest it has been, or may not go on (see {@link SwitchoverMode}), or once
 * `maxRounds` rounds have run (accepting a longer pause rather than iterating for ever). Never
 * aborts: the engine's deadlines do that. Never switches over on an expected pause that does not
 * fit, except at `maxRounds`.
 *
 * Keeps what it saw of the rounds so far; a policy asked for round 1 again starts afresh, so one
 * may serve migrations one after another.
 */
export function defaultPolicy(options: DefaultPolicyOptions = {}): PrecopyPolicy {
  const maxRounds = options.maxRounds ?? DEFAULT_MAX_ROUNDS;
  const headroom = options.headroom ?? DEFAULT_BUDGET_HEADROOM;
  const best = (options.switchover ?? DEFAULT_SWITCHOVER) === 'best';
  const extraTimeShare = options.extraTimeShare ?? EXTRA_TIME_SHARE;
  const extraPauseMultiple = options.extraPauseMultiple ?? EXTRA_PAUSE_MULTIPLE;
  const fresh = (): PolicyMemory => ({
    lastRound: 0,
    previousMs: Number.POSITIVE_INFINITY,
    lowestMs: Number.POSITIVE_INFINITY,
    retried: false,
    fittedAtMs: undefined,
    fittedPauseMs: undefined,
    floorOverRounds: 0,
    floorOverSinceMs: 0,
  });
  const memory = fresh();
  const stop = (reason: SwitchoverReason): StopAndCopy => ({ decision: 'stop-and-copy', reason });
  const decide = (stats: PrecopyStats, m: PolicyMemory): PrecopyDecision | StopAndCopy | NoPauseFits => {
    if (stats.round <= m.lastRound) Object.assign(m, fresh());
    m.lastRound = stats.round;
    const expectedMs = stats.expectedDowntimeMs;
    const shrinking = expectedMs <= (1 - MIN_PAUSE_SHRINK_SHARE) * m.previousMs;
    const nearLowest = (1 - MIN_PAUSE_SHRINK_SHARE) * expectedMs <= m.lowestMs;
    const retry = !shrinking && !nearLowest && !m.retried;
    m.previousMs = expectedMs;
    m.lowestMs = Math.min(m.lowestMs, expectedMs);
    m.retried = false;
    // Nothing dirty: the pause is its fixed costs alone, which no further round can shorten.
    if (stats.dirtyPages === 0) return stop('nothing-dirty');
    const fits = expectedMs <= headroom * stats.downtimeBudgetMs;
    if (fits && !best) return stop('first-fit');
    if (stats.round >= maxRounds) return stop('max-rounds');
    if (!fits) return floorOverBudget(stats, m) ?? 'continue';
    // At the floor no round cuts much any more. Far above it after a slow round, the next may land
    // lower: one is tried.
    if (!shrinking && !retry) return stop('fits-and-stopped-shrinking');
    const fittedAtMs = (m.fittedAtMs ??= stats.elapsedMs);
    const fittedPauseMs = (m.fittedPauseMs ??= expectedMs);
    // The next round sends what is dirty now, at the pace the link has kept lately.
    const nextRoundMs = stats.bandwidthBytesPerSec > 0 ? (stats.dirtyBytes * 1000) / stats.bandwidthBytesPerSec : Number.POSITIVE_INFINITY;
    const extraMs = Math.max(extraTimeShare * fittedAtMs, extraPauseMultiple * fittedPauseMs);
    if (stats.elapsedMs - fittedAtMs + nextRoundMs > extraMs) return stop('bound-reached');
    if (DEADLINE_MARGIN * nextRoundMs >= stats.deadlineInMs) return stop('deadline-near');
    m.retried = retry;
    return 'continue';
  };
  // No pause fits when finding the dirty pages alone overruns the final budget round after round;
  // a round limit switches over at the limit instead, as its caller asked.
  const floorOverBudget = (stats: PrecopyStats, m: PolicyMemory): NoPauseFits | undefined => {
    const floorMs = stats.findDirtyFloorMs ?? 0;
    const finalBudgetMs = stats.finalDowntimeBudgetMs ?? stats.downtimeBudgetMs;
    const aimMs = headroom * finalBudgetMs;
    m.floorOverRounds = floorMs > aimMs ? m.floorOverRounds + 1 : 0;
    if (m.floorOverRounds === 1) m.floorOverSinceMs = stats.elapsedMs;
    const overMs = stats.elapsedMs - m.floorOverSinceMs;
    if (m.floorOverRounds < FLOOR_OVER_BUDGET_ROUNDS || overMs < FLOOR_OVER_BUDGET_MS || Number.isFinite(maxRounds)) return undefined;
    return {
      decision: 'abort',
      noPauseFits:
        `finding dirty pages takes at least ${Math.round(floorMs)} ms per pause, over the ${Math.round(aimMs)} ms the pause aims at ` +
        `(${Math.round(headroom * 100)}% of the ${Math.round(finalBudgetMs)} ms budget), ${m.floorOverRounds} rounds in a row over ${Math.round(overMs / 1000)} s: ` +
        'no pause can fit; ' +
        'raise the downtime budget, or give the host idle cores for the scan',
    };
  };
  const policy: PrecopyPolicy = (stats) => decide(stats, memory);
  policy.wouldStop = (stats) => decisionOf(decide(stats, { ...memory })).decision === 'stop-and-copy';
  return policy;
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
}

/** How long a round of `bytes` takes on `model`, in milliseconds. */
export function roundTimeAt(model: RoundTimeModel, bytes: number): number {
  return model.fixedMs + bytes * model.msPerByte;
}

/** One finished round as {@link paceOfRoundsLike} sees it. */
export interface RoundSample {
  /** Page data the round carried, in bytes (zero pages weighted by what they cost). */
  bytes: number;
  /** First batch to acknowledgement, in milliseconds. */
  ms: number;
}

/**
 * Rounds whose sizes are within this factor of a round to predict count as like it (see
 * {@link paceOfRoundsLike}).
 */
export const LIKE_ROUND_SIZE_RATIO = 2;

/**
 * How long a round of `bytes` will take, judged by recent rounds of about its size (the pause
 * model slows it down as much as the latest round went slower than the rounds like it; see
 * `DowntimeModel.roundTimeModel`): the median
 * time per byte (fixed part included) of the rounds within LIKE_ROUND_SIZE_RATIO of it, or with
 * none, of the one nearest in size. Rounds of one migration share guest, link and codec, but not
 * their cost per byte: a first pass writes memory the target never touched, and a big round
 * meets the target's collector more often, so rounds like the last one say best what it costs.
 * A round far smaller than any recent one pays the fixed part in proportion, as it does not fill
 * the pipeline the way they did. The median keeps one round that met a stall from setting the
 * pace. Undefined with no usable round. The measurements behind the model are in
 * docs/bench/README.md ("Calibration").
 */
export function paceOfRoundsLike(samples: readonly RoundSample[], bytes: number): RoundTimeModel | undefined {
  const usable = samples.filter((s) => s.bytes > 0 && s.ms > 0 && Number.isFinite(s.ms));
  if (usable.length === 0) return undefined;
  const distance = (s: RoundSample) => Math.abs(Math.log(s.bytes / bytes));
  let like = bytes > 0 ? usable.filter((s) => distance(s) <= Math.log(LIKE_ROUND_SIZE_RATIO)) : [];
  if (like.length === 0) {
    // The nearest in size; of equals, the most recent (the first given).
    const nearest = bytes > 0 ? usable.reduce((best, s) => (distance(s) < distance(best) ? s : best)) : usable[0]!;
    like = [nearest];
  }
  return { fixedMs: 0, msPerByte: median(like.map((s) => s.ms / s.bytes))! };
}

/** The parts of an expected pause, in milliseconds. */
export interface DowntimeEstimate {
  /** The last round: its pages sent, written on the target and acknowledged. */
  roundMs: number;
  /** Half a round trip: "go" reaching the target. */
  handshakeMs: number;
  /** What no term models: stopping the vCPUs here and starting them there, the state, the records. */
  overheadMs: number;
  /** The sum. */
  totalMs: number;
}

/**
 * The pause the switchover would cost now: a last round of `bytes` as recent rounds went
 * (`round`), then half of `rttMs` for "go", plus `overheadMs` (see {@link DowntimeEstimate}).
 * With nothing measured yet and something dirty, infinite.
 */
export function estimateDowntime(bytes: number, round: RoundTimeModel | undefined, rttMs: number, overheadMs: number): DowntimeEstimate {
  const roundMs = bytes === 0 ? 0 : round ? roundTimeAt(round, bytes) : Number.POSITIVE_INFINITY;
  const handshakeMs = rttMs / 2;
  return { roundMs, handshakeMs, overheadMs, totalMs: roundMs + handshakeMs + overheadMs };
}
