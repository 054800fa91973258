/**
 * The benchmark matrix: the axes a run varies, one cell per combination of their values, and the
 * full cross product of them.
 */

import type { CodecChoice, MigrateOptions, Workload } from 'livemig';

/** Auto-converge setting of a cell: the engine's modes. */
export type AutoConvergeSetting = NonNullable<MigrateOptions['autoConverge']>;

/** Switchover policy of a cell: the engine's modes. */
export type SwitchoverSetting = NonNullable<MigrateOptions['switchover']>;

/** Delta encoding of a cell: the engine's modes. */
export type DeltaSetting = NonNullable<MigrateOptions['delta']>;

/** The values each axis of the matrix takes. */
export interface BenchAxes {
  /** Guest memory sizes, in bytes. */
  memoryBytes: number[];
  workloads: Workload[];
  /** Requested guest dirty rates, in bytes per second (ignored by `idle`, which runs at 0). */
  dirtyRatesBytesPerSec: number[];
  /** Downtime budgets, in milliseconds. */
  downtimeBudgetsMs: number[];
  codecs: CodecChoice[];
  /** Link caps, in bytes per second; `null` is no cap. */
  linksBytesPerSec: Array<number | null>;
  /** `null` passes no setting, so the engine's default applies. */
  autoConverge: Array<AutoConvergeSetting | null>;
  /** `null` passes no setting, so the engine's default applies. */
  switchover: Array<SwitchoverSetting | null>;
  /** `null` passes no setting, so the engine's default applies. */
  delta: Array<DeltaSetting | null>;
}

/** One combination of axis values. */
export interface BenchCell {
  /** 1-based position in the matrix. */
  index: number;
  memoryBytes: number;
  workload: Workload;
  /** Requested dirty rate, in bytes per second; 0 for `idle`. */
  dirtyRateBytesPerSec: number;
  downtimeBudgetMs: number;
  codec: CodecChoice;
  /** Link cap in bytes per second, or null for none. */
  linkBytesPerSec: number | null;
  /** null: the engine's default. */
  autoConverge: AutoConvergeSetting | null;
  /** null: the engine's default. */
  switchover: SwitchoverSetting | null;
  /** null: the engine's default. */
  delta: DeltaSetting | null;
}

/**
 * Every combination of the axes, memory outermost and the switchover policy and delta mode
 * innermost (so that the policies and modes of one setting run side by side). The `idle` workload
 * ignores the dirty rate (it writes 16 pages 10 times a second), so it gets one cell at rate 0
 * instead of one per requested rate.
 */
export function expandMatrix(axes: BenchAxes): BenchCell[] {
  const cells: BenchCell[] = [];
  for (const memoryBytes of axes.memoryBytes) {
    for (const workload of axes.workloads) {
      const rates = workload === 'idle' ? [0] : axes.dirtyRatesBytesPerSec;
      for (const dirtyRateBytesPerSec of rates) {
        for (const linkBytesPerSec of axes.linksBytesPerSec) {
          for (const autoConverge of axes.autoConverge) {
            for (const codec of axes.codecs) {
              for (const downtimeBudgetMs of axes.downtimeBudgetsMs) {
                for (const switchover of axes.switchover) {
                  for (const delta of axes.delta) {
                    cells.push({ index: cells.length + 1, memoryBytes, workload, dirtyRateBytesPerSec, downtimeBudgetMs, codec, linkBytesPerSec, autoConverge, switchover, delta });
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  return cells;
}

