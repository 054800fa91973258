/**
 * The order in which an evacuation starts its guests, and which of them move alone, from each
 * guest's pause estimate (its host's expectation of its pause and total time alone on the link;
 * `GuestInfo.pauseEstimate`). Priority always comes first; the estimate orders within a priority:
 *
 * 1. guests expected over the budget even alone, the longest pause first;
 * 2. busy guests, whose pause alone is at least BUSY_PAUSE_SHARE of the budget, the longest first;
 * 3. the other guests whose pause is known, the longest total time first;
 * 4. guests whose pause is unknown, larger first.
 *
 * Groups 1 and 2 move alone: a migration sharing the window shares the link and the cores, and
 * its pause grows. They go first because the window is empty at the start anyway (no one waits
 * for it to drain), their estimates are freshest then, and a guest that fails or overruns is known
 * early, while every target still has room for its retry. Longest first in group 3 keeps the
 * window busy to the end instead of leaving one long migration running alone there. Group 4 goes
 * last: the window drains at the end, so a guest that may be busy meets the least company there.
 */

import type { GuestInfo } from '../agent/control-types.js';
import type { PlanEntry } from './pool-types.js';

/**
 * Share of the budget from which a guest's expected pause alone makes it move alone. A shared
 * window can more than double a busy guest's pause (docs/pool.md, "Order"), so a pause at
 * half the budget alone may well exceed it shared.
 */
export const BUSY_PAUSE_SHARE = 0.5;

/** How a guest's estimate classes it, in start order. */
type PauseClass = 'over' | 'busy' | 'known' | 'unknown';
const RANK: Record<PauseClass, number> = { over: 0, busy: 1, known: 2, unknown: 3 };

/** What {@link orderMoves} is told. */
export interface OrderOptions {
  /** The evacuation's budget, in milliseconds; each estimate's own (its host's default) when absent. */
  downtimeBudgetMs?: number;
  /** Order by the estimates and move busy guests alone; false keeps the given order, all sharing the window. */
  byPause: boolean;
}

/**
 * `moves` (in priority, then size order) annotated with each guest's expected pause and total,
 * whether it is over budget, whether it moves alone, and why it starts where it does; sorted into
 * start order. See the module comment for the rule.
 */
export function orderMoves(moves: readonly PlanEntry[], guests: readonly GuestInfo[], options: OrderOptions): PlanEntry[] {
  const byId = new Map(guests.map((g) => [g.id, g]));
  const annotated = moves.map((move, index) => {
    const estimate = byId.get(move.guestId)?.pauseEstimate;
    const entry: PlanEntry = { ...move };
    let cls: PauseClass = 'unknown';
    let budget = options.downtimeBudgetMs;
    if (estimate?.state === 'known' && estimate.bestPauseMs !== undefined && estimate.totalMs !== undefined) {
      budget ??= estimate.downtimeBudgetMs;
      entry.expectedPauseMs = estimate.bestPauseMs;
      entry.expectedTotalMs = estimate.totalMs;
      cls = estimate.bestPauseMs > budget ? 'over' : estimate.bestPauseMs >= BUSY_PAUSE_SHARE * budget ? 'busy' : 'known';
      if (cls === 'over') entry.overBudget = true;
    }
    if (options.byPause && (cls === 'over' || cls === 'busy')) entry.alone = true;
    entry.orderReason = options.byPause ? reasonFor(cls, entry, budget ?? 0, estimate?.reason) : 'priority, then larger first (ordering by pause is off)';
    return { entry, cls, index };
  });
  if (!options.byPause) return annotated.map((a) => a.entry);
  annotated.sort((a, b) => b.entry.priority - a.entry.priority || RANK[a.cls] - RANK[b.cls] || within(a.cls, a.entry, b.entry) || a.index - b.index);
  return annotated.map((a) => a.entry);
}

/** Order within a class: see the module comment. */
function within(cls: PauseClass, a: PlanEntry, b: PlanEntry): number {
  switch (cls) {
    case 'over':
    case 'busy':
      return b.expectedPauseMs! - a.expectedPauseMs!;
    case 'known':
      return b.expectedTotalMs! - a.expectedTotalMs!;
    case 'unknown':
      return 0;
  }
}

function reasonFor(cls: PauseClass, e: PlanEntry, budgetMs: number, unknownReason: string | undefined): string {
  const pause = `expected pause ${ms(e.expectedPauseMs)}`;
  switch (cls) {
    case 'over':
      return `${pause} exceeds the ${budgetMs} ms budget even alone: moves alone, before the guests that share the window`;
    case 'busy':
      return `${pause} is ${Math.round((e.expectedPauseMs! / budgetMs) * 100)}% of the ${budgetMs} ms budget: moves alone, as a shared window lengthens pauses`;
    case 'known':
      return `${pause}, total ${(e.expectedTotalMs! / 1000).toFixed(2)} s: shares the window, longest total first`;
    case 'unknown':
      return `pause unknown${unknownReason ? ` (${unknownReason})` : ''}: shares the window, after the guests whose pause is known`;
  }
}

function ms(x: number | undefined): string {
  return x === undefined ? '?' : `${x < 10 ? x.toFixed(1) : Math.round(x)} ms`;
}
