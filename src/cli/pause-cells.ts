/** How `vm list`, `pool status` and an evacuation plan show a guest's expected pause and total time. */

import type { PauseEstimate } from '../agent/control-types.js';

/** Milliseconds for people: one decimal under 10 ms, whole ones up to 10 s, seconds beyond. */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 10_000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** Seconds for people, two decimals. */
export function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/**
 * The pause and total cells of a guest: `~4.9 ms` and `~1.88 s`, the pause marked `(over budget)`
 * when it does not fit its host's budget even alone; `unknown` and `-` without an estimate.
 */
export function pauseCells(e: PauseEstimate | undefined): [pause: string, total: string] {
  if (e?.state !== 'known' || e.bestPauseMs === undefined || e.totalMs === undefined) return ['unknown', '-'];
  const over = e.fitsBudget === false ? ` (over ${e.downtimeBudgetMs} ms)` : '';
  return [`~${formatMs(e.bestPauseMs)}${over}`, `~${formatSeconds(e.totalMs)}`];
}

/** Where an estimate's figures come from, or why there is none, in a few words. */
export function pauseBasis(e: PauseEstimate | undefined): string {
  if (e === undefined) return 'no estimate from its host';
  if (e.state !== 'known') return e.reason ?? 'unknown';
  return `${e.dirtySource} dirty rate, ${e.linkSource} link`;
}
