/**
 * An all-pairs selection of the benchmark matrix: a few cells in which every level of each axis
 * meets every level of every other axis at least once. The full cross product of the seven axes
 * runs for hours; most effects on a pause (a slow link with a busy guest, a big guest with a small
 * budget, compression on a capped link) are interactions of two settings, which these cells
 * still show, in a small fraction of the time.
 *
 * The cells are built greedily, one at a time: start from a pair no cell covers yet, then give
 * each remaining axis the level that covers the most pairs still uncovered (the AETG strategy).
 * Ties go to the lowest level, so the same axes always give the same cells.
 */

import type { BenchAxes, BenchCell } from './bench-command.js';

/** The axes in the order cells are printed: memory outermost, as in the cross product. */
const AXES = ['memory', 'workload', 'rate', 'link', 'autoConverge', 'codec', 'budget'] as const;
const RATE = AXES.indexOf('rate');
const WORKLOAD = AXES.indexOf('workload');

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
  ];
  const idle = axes.workloads.indexOf('idle');
  const onlyIdle = axes.workloads.every((w) => w === 'idle');
  const uncovered = new Set<string>();
  for (let i = 0; i < AXES.length; i++) {
    for (let j = i + 1; j < AXES.length; j++) {
      for (let a = 0; a < levels[i]!; a++) {
        for (let b = 0; b < levels[j]!; b++) {
          if (!pairPossible(i, a, j, b, idle, onlyIdle)) continue;
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
      const gain = pairsOf(row, idle).filter((k) => uncovered.has(k)).length;
      if (!best || gain > best.gain) best = { row, gain };
    }
    for (const k of pairsOf(best!.row, idle)) uncovered.delete(k);
    rows.push(best!.row);
  }

  rows.sort((x, y) => {
    for (let i = 0; i < AXES.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return 0;
  });
  return rows.map((row, n) => ({
    index: n + 1,
    memoryBytes: axes.memoryBytes[row[0]!]!,
    workload: axes.workloads[row[WORKLOAD]!]!,
    dirtyRateBytesPerSec: row[RATE] === NONE ? 0 : axes.dirtyRatesBytesPerSec[row[RATE]!]!,
    linkBytesPerSec: axes.linksBytesPerSec[row[3]!]!,
    autoConverge: axes.autoConverge[row[4]!]!,
    codec: axes.codecs[row[5]!]!,
    downtimeBudgetMs: axes.downtimeBudgetsMs[row[6]!]!,
  }));
}

/** Whether a cell can hold both levels: an idle guest has no dirty rate. */
function pairPossible(i: number, a: number, j: number, b: number, idle: number, onlyIdle: boolean): boolean {
  if (i === RATE || j === RATE) {
    if (onlyIdle) return false;
    const [w, r] = i === WORKLOAD ? [a, b] : j === WORKLOAD ? [b, a] : [NONE, NONE];
    return !(w === idle && r !== NONE);
  }
  return true;
}

function pairKey(i: number, a: number, j: number, b: number): string {
  return `${i}:${a}/${j}:${b}`;
}

/** The pairs a full row covers. */
function pairsOf(row: readonly number[], idle: number): string[] {
  const keys: string[] = [];
  for (let i = 0; i < row.length; i++) {
    for (let j = i + 1; j < row.length; j++) {
      if (row[i] === NONE || row[j] === NONE) continue;
      if ((i === RATE || j === RATE) && row[WORKLOAD] === idle) continue;
      keys.push(pairKey(i, row[i]!, j, row[j]!));
    }
  }
  return keys;
}

/** A row holding the pair `key`, each other axis at the level that covers most uncovered pairs. */
function completeRow(key: string, levels: readonly number[], idle: number, uncovered: ReadonlySet<string>): number[] {
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
      if (axis === WORKLOAD && level === idle && row[RATE] !== NONE && levels[WORKLOAD]! > 1) continue;
      let gain = 0;
      for (let other = 0; other < levels.length; other++) {
        if (other === axis || row[other] === NONE) continue;
        if ((axis === RATE || other === RATE) && (level === idle && axis === WORKLOAD)) continue;
        const [i, a, j, b] = other < axis ? [other, row[other]!, axis, level] : [axis, level, other, row[other]!];
        if (uncovered.has(pairKey(i, a, j, b))) gain++;
      }
      if (gain > bestGain) {
        bestGain = gain;
        bestLevel = level;
      }
    }
    row[axis] = bestLevel;
    // An idle guest chosen for a row drops any rate: idle runs at none.
    if (axis === WORKLOAD && bestLevel === idle) row[RATE] = NONE;
  }
  return row;
}
