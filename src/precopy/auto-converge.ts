/**
 * Auto-converge: when the guest dirties memory faster than the link drains it, pre-copy never
 * ends, so the source slows the guest's vCPUs down in steps until it does, and lifts the
 * throttle when the migration ends. The steps follow QEMU's (20%, then +10% a step, at most 99%);
 * the trigger differs: QEMU throttles whenever a round dirtied more than half of what it sent,
 * even if the pause would already fit the budget, while the `auto` mode here throttles only when
 * iterating alone stopped bringing the expected pause down to where the default policy stops.
 */

import { DEFAULT_BUDGET_HEADROOM } from './policy.js';

/** `off`: never throttle. `on`: throttle whenever rounds dirty more than half of what they send.
 * `auto`: throttle only when the expected pause is over the share of the budget the default
 * policy stops at (DEFAULT_BUDGET_HEADROOM) and stopped shrinking. */
export type AutoConvergeMode = 'off' | 'on' | 'auto';

/** Default auto-converge mode. */
export const DEFAULT_AUTO_CONVERGE: AutoConvergeMode = 'auto';

/** First throttle step, in percent of vCPU time taken away. */
export const AUTO_CONVERGE_INITIAL_PERCENT = 20;

/** Each further step, in percent. */
export const AUTO_CONVERGE_STEP_PERCENT = 10;

/** The most the vCPUs are slowed down, in percent. */
export const AUTO_CONVERGE_MAX_PERCENT = 99;

/** A round counts as not converging if it dirtied more than this share of what it sent. */
export const AUTO_CONVERGE_DIRTY_SHARE = 0.5;

/** Rounds in a row that must fail to converge before the throttle moves. */
export const AUTO_CONVERGE_TRIGGER_ROUNDS = 2;

/** `auto` counts a round as progress if the expected pause shrank by at least this share. */
export const AUTO_CONVERGE_PROGRESS_SHARE = 0.1;

/** What the controller looks at after each round. */
export interface RoundOutcome {
  /** Bytes the round sent. */
  sentBytes: number;
  /** Bytes dirtied while it was sent (what the next round must send). */
  dirtyBytes: number;
  /** Expected pause if the source stopped now, in milliseconds. */
  expectedDowntimeMs: number;
  /** The downtime budget in force, in milliseconds. */
  budgetMs: number;
}

/** Decides the throttle, round by round. Pure: no clock, no I/O. */
export class ThrottleController {
  /** The throttle in force, in percent. */
  percent = 0;
  /** The highest throttle applied so far, in percent. */
  maxPercent = 0;
  private strikes = 0;
  private previousExpectedMs = Number.POSITIVE_INFINITY;

  constructor(readonly mode: AutoConvergeMode) {}

  /** Takes one finished round into account; returns the throttle for the next one, in percent. */
  afterRound(round: RoundOutcome): number {
    const stuck = this.isStuck(round);
    this.previousExpectedMs = round.expectedDowntimeMs;
    if (this.mode === 'off') return this.percent;
    this.strikes = stuck ? this.strikes + 1 : 0;
    if (this.strikes >= AUTO_CONVERGE_TRIGGER_ROUNDS) {
      this.percent =
        this.percent === 0
          ? AUTO_CONVERGE_INITIAL_PERCENT
          : Math.min(AUTO_CONVERGE_MAX_PERCENT, this.percent + AUTO_CONVERGE_STEP_PERCENT);
      this.maxPercent = Math.max(this.maxPercent, this.percent);
      // A step needs a round or two to show; count afresh.
      this.strikes = 0;
    }
    return this.percent;
  }

  private isStuck(round: RoundOutcome): boolean {
    if (this.mode === 'on') return round.dirtyBytes > AUTO_CONVERGE_DIRTY_SHARE * round.sentBytes;
    // Over where the default policy stops, not over the budget itself: between the two the guest
    // would iterate until a prediction dipped under the stop by chance, and then often pause over
    // the budget (docs/bench/README.md, "Figures behind the engine's constants").
    const overBudget = round.expectedDowntimeMs > DEFAULT_BUDGET_HEADROOM * round.budgetMs;
    const shrank = round.expectedDowntimeMs <= (1 - AUTO_CONVERGE_PROGRESS_SHARE) * this.previousExpectedMs;
    // A guest that dirtied nothing is not what keeps the pause long: slowing it cannot help.
    return overBudget && !shrank && round.dirtyBytes > 0;
  }
}
