/**
 * An all-pairs selection of the benchmark matrix: a few cells in which every level of each axis
 * meets every level of every other axis at least once. The full cross product of the nine axes
 * runs for hours; most effects on a pause (a slow link with a busy guest, a big guest with a small
 * budget, compression on a capped link) are interactions of two settings, which these cells
 * still show, in a small fraction of the time.
 *
 * The cells are built greedily, one at a time: start from a pair no cell covers yet, then give
 * each remaining axis the level that covers the most pairs still uncovered (the AETG strategy).
 * Ties go to the lowest level, so the same axes always give the same cells.
 */

import type { BenchAxes, BenchCell } from './matrix.js';

/** The axes in the order cells are printed: memory outermost, as in the cross product. */
const AXES = ['memory', 'workload', 'rate', 'link', 'autoConverge', 'codec', 'budget', 'switchover', 'delta'] as const;
const [MEMORY, WORKLOAD, RATE, LINK, AUTO_CONVERGE, CODEC, BUDGET, SWITCHOVER, DELTA] = AXES.map((_, i) => i) as [number, number, number, number, number, number, number, number, number];

/** A level left unset, or the dirty rate of an idle guest (which has none). */
const NONE = -1;

/** Seeds tried per cell; the cell that covers the most new pairs is kept. */
const SEEDS_PER_CELL = 32;

/**
 * Cells covering every pair of levels of two axes. The `idle` workload has no dirty rate: its
 * cells run at rate 0 and cover no pair with the rate axis, and (idle, rate) pairs are not asked
 * for. Cells come in the order of {@link expandMatrix}'s, numbered from 1.
 */
export function pairwiseMatrix(axes: BenchAxes): BenchCell[] {
  const levels = [
    axes.memoryBytes.length,
    axes.workloads.length,
    axes.dirtyRatesBytesPerSec.length,
    axes.linksBytesPerSec.length,
    axes.autoConverge.length,
    axes.codecs.length,
    axes.downtimeBudgetsMs.length,
    axes.switchover.length,
    axes.delta.length,
  ];
  // Every row keeps to one rule: its rate is NONE exactly when its workload is idle.
  const idleAt = axes.workloads.indexOf('idle');
  const idle = idleAt < 0 ? undefined : idleAt;
  const onlyIdle = axes.workloads.every((w) => w === 'idle');
  const uncovered = new Set<string>();
  for (let i = 0; i < AXES.length; i++) {
    for (let j = i + 1; j < AXES.length; j++) {
      for (let a = 0; a < levels[i]!; a++) {
        for (let b = 0; b < levels[j]!; b++) {
          if (!pairPossible(i, a, j, idle, onlyIdle)) continue;
          uncovered.add(pairKey(i, a, j, b));
        }
      }
    }
  }

  const rows: number[][] = [];
  while (uncovered.size > 0) {
    let best: { row: number[]; gain: number } | undefined;
    let seeds = 0;
    for (const key of uncovered) {
      if (seeds++ === SEEDS_PER_CELL) break;
      const row = completeRow(key, levels, idle, uncovered);
      const gain = pairsOf(row).filter((k) => uncovered.has(k)).length;
      if (!best || gain > best.gain) best = { row, gain };
    }
    for (const k of pairsOf(best!.row)) uncovered.delete(k);
    rows.push(best!.row);
  }

  rows.sort((x, y) => {
    for (let i = 0; i < AXES.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return 0;
  });
  return rows.map((row, n) => ({
    index: n + 1,
    memoryBytes: axes.memoryBytes[row[MEMORY]!]!,
    workload: axes.workloads[row[WORKLOAD]!]!,
    dirtyRateBytesPerSec: row[RATE] === NONE ? 0 : axes.dirtyRatesBytesPerSec[row[RATE]!]!,
    linkBytesPerSec: axes.linksBytesPerSec[row[LINK]!]!,
    autoConverge: axes.autoConverge[row[AUTO_CONVERGE]!]!,
    codec: axes.codecs[row[CODEC]!]!,
    downtimeBudgetMs: axes.downtimeBudgetsMs[row[BUDGET]!]!,
    switchover: axes.switchover[row[SWITCHOVER]!]!,
    delta: axes.delta[row[DELTA]!]!,
  }));
}

/** Whether a cell can hold level `a` of axis `i` together with axis `j` (i < j): an idle guest has no dirty rate. */
function pairPossible(i: number, a: number, j: number, idle: number | undefined, onlyIdle: boolean): boolean {
  if (i !== RATE && j !== RATE) return true;
  // The workload axis comes before the rate axis, so (workload, rate) pairs have i = WORKLOAD.
  return !onlyIdle && !(i === WORKLOAD && a === idle);
}

function pairKey(i: number, a: number, j: number, b: number): string {
  return `${i}:${a}/${j}:${b}`;
}

/** The pairs a full row covers (an idle row's missing rate pairs with nothing). */
function pairsOf(row: readonly number[]): string[] {
  const keys: string[] = [];
  for (let i = 0; i < row.length; i++) {
    for (let j = i + 1; j < row.length; j++) {
      if (row[i] === NONE || row[j] === NONE) continue;
      keys.push(pairKey(i, row[i]!, j, row[j]!));
    }
  }
  return keys;
}

/** A row holding the pair `key`, each other axis at the level that covers most uncovered pairs. */
function completeRow(key: string, levels: readonly number[], idle: number | undefined, uncovered: ReadonlySet<string>): number[] {
  const row = levels.map(() => NONE);
  for (const part of key.split('/')) {
    const [axis, level] = part.split(':').map(Number);
    row[axis!] = level!;
  }
  for (let axis = 0; axis < levels.length; axis++) {
    if (row[axis] !== NONE) continue;
    if (axis === RATE && row[WORKLOAD] === idle) continue;
    let bestLevel = NONE;
    let bestGain = -1;
    for (let level = 0; level < levels[axis]!; level++) {
      // A rate already set asks for a workload that has one.
      if (axis === WORKLOAD && level === idle && row[RATE] !== NONE) continue;
      let gain = 0;
      for (let other = 0; other < levels.length; other++) {
        if (other === axis || row[other] === NONE) continue;
        const [i, a, j, b] = other < axis ? [other, row[other]!, axis, level] : [axis, level, other, row[other]!];
        if (uncovered.has(pairKey(i, a, j, b))) gain++;
      }
      if (gain > bestGain) {
        bestGain = gain;
        bestLevel = level;
      }
    }
    row[axis] = bestLevel;
  }
  return row;
}
