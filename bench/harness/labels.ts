/**
 * Words and numbers for people: sizes, rates and durations as the tables and charts print them,
 * and the axes of a cell by name, for grouping cells into tables and panels.
 */

import { roundTo as round } from '#util/stats';
import type { AutoConvergeSetting, BenchCell, DeltaSetting, SwitchoverSetting } from './matrix.js';

/** `268435456` -> `256 MiB`, `1073741824` -> `1 GiB`. */
export function sizeLabel(bytes: number): string {
  if (bytes >= 2 ** 30) return `${round(bytes / 2 ** 30, 1)} GiB`;
  if (bytes >= 2 ** 20) return `${round(bytes / 2 ** 20, 1)} MiB`;
  return `${round(bytes / 1024, 1)} KiB`;
}

/** `0` -> `0`, `5e7` -> `50 MB/s`, `1e9` -> `1 GB/s`. */
export function rateLabel(bytesPerSec: number): string {
  if (bytesPerSec === 0) return '0';
  if (bytesPerSec >= 1e9) return `${Number((bytesPerSec / 1e9).toPrecision(3))} GB/s`;
  return `${Number((bytesPerSec / 1e6).toPrecision(3))} MB/s`;
}

/** Link caps as they are quoted: `1.25e9` -> `10 Gbit/s`; null -> `none`. */
export function linkLabel(bytesPerSec: number | null): string {
  if (bytesPerSec === null) return 'none';
  const bits = bytesPerSec * 8;
  return bits >= 1e9 ? `${Number((bits / 1e9).toPrecision(3))} Gbit/s` : `${Number((bits / 1e6).toPrecision(3))} Mbit/s`;
}

/** `1.523e9` -> `1.52 GB/s`. */
export function formatGBps(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e9).toFixed(2)} GB/s`;
}

/** `850` -> `850 ms`, `12_300` -> `12.3 s`, `125_000` -> `2 min 5 s`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** Milliseconds with three significant digits or so; `-` when absent. */
export function msLabel(x: number | undefined): string {
  return x === undefined ? '-' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
}

function autoConvergeLabel(a: AutoConvergeSetting | null): string {
  return a ?? 'default';
}

function switchoverLabel(s: SwitchoverSetting | null): string {
  return s ?? 'default';
}

function deltaLabel(d: DeltaSetting | null): string {
  return d ?? 'default';
}

/** A cell on one line, every axis named (the switchover policy and delta mode only when set). */
export function describeCell(c: BenchCell): string {
  const rate = c.workload === 'idle' ? '' : ` ${rateLabel(c.dirtyRateBytesPerSec)}`;
  return (
    `${sizeLabel(c.memoryBytes)} ${c.workload}${rate}, budget ${c.downtimeBudgetMs} ms, ${c.codec}, ` +
    `link ${linkLabel(c.linkBytesPerSec)}, auto-converge ${autoConvergeLabel(c.autoConverge)}` +
    (c.switchover !== null ? `, switchover ${c.switchover}` : '') +
    (c.delta !== null ? `, delta ${c.delta}` : '')
  );
}

/** An axis of the matrix as tables and charts name it. */
export type AxisName = 'memory' | 'workload' | 'dirty rate' | 'budget' | 'compress' | 'link' | 'auto-converge' | 'switchover' | 'delta';

/** A cell's value on each axis, as printed. */
export const AXIS_VALUE: Readonly<Record<AxisName, (c: BenchCell) => string>> = {
  memory: (c) => sizeLabel(c.memoryBytes),
  workload: (c) => c.workload,
  'dirty rate': (c) => rateLabel(c.dirtyRateBytesPerSec),
  budget: (c) => `${c.downtimeBudgetMs} ms`,
  compress: (c) => c.codec,
  link: (c) => linkLabel(c.linkBytesPerSec),
  'auto-converge': (c) => autoConvergeLabel(c.autoConverge),
  switchover: (c) => switchoverLabel(c.switchover),
  delta: (c) => deltaLabel(c.delta),
};

/** Axes that take more than one value among `cells`. */
export function varyingAxes(cells: readonly BenchCell[], candidates: readonly AxisName[]): AxisName[] {
  return candidates.filter((a) => new Set(cells.map(AXIS_VALUE[a])).size > 1);
}

/** `items` grouped by `key`, groups and items in order of first appearance. */
export function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const g = groups.get(k);
    if (g) g.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
