/**
 * `livemig bench`: a latency benchmark of live migration. It runs a matrix of migrations (guest
 * memory x workload x dirty rate x downtime budget x codec x link cap x auto-converge), several
 * runs per cell, to a target agent in a second process, and reports measured and predicted
 * downtime and total time for each cell, with the raw link between the same two processes as the
 * baseline measured in the same run (absolute speeds drift on a shared machine; ratios drift less).
 *
 * The far end is this same command started as `livemig bench --target-host`: a target agent, as
 * `livemig listen` runs one, plus a sink that swallows raw frames for the baseline. It destroys
 * each guest as soon as it has resumed there, so guests do not pile up, and a fresh one is started
 * for every run, which measures the raw link to it just before the migration.
 *
 * Runs are interleaved: pass 1 runs every cell once, pass 2 again, and so on. Whatever else the
 * machine does meanwhile then spreads over all cells instead of skewing the few that ran while it
 * happened, and an interrupted matrix still covers every cell.
 *
 * Outputs, in `--out DIR`: results.json (every run, per-cell median/min/max, machine), results.md
 * (tables for people), downtime.svg and total-time.svg.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { TargetAgent, type AgentEvent } from '../agent/target-agent.js';
import { validateSimConfig, type SimGuestConfig, type Workload, WORKLOADS } from '../domain/sim/config.js';
import { SimulatedGuest } from '../domain/sim/guest.js';
import { ConnectFailedError, ConnectionClosedError, InvalidArgumentError, asMigrationError } from '../errors.js';
import type { AutoConvergeMode } from '../precopy/auto-converge.js';
import { migrate, type MigrateOptions } from '../precopy/migration.js';
import type { MigrationReport } from '../precopy/report.js';
import type { PageCodec } from '../protocol/records.js';
import { stopChild } from '../util/child.js';
import type { Transport } from '../transport/transport.js';
import { connectWebSocket, listenWebSocket } from '../transport/ws-transport.js';
import { terminalProgress } from './render.js';
import { MARKERS, PALETTE, renderSvgChart, type ChartPanel, type ChartSeries, type LegendEntry } from './svg-chart.js';
import { median, roundTo as round } from '../util/stats.js';
import { pairwiseMatrix } from './bench-pairwise.js';
import { parseDuration, parsePositiveDuration, parseInteger, parseRate, parseSize } from './units.js';

// ---------------------------------------------------------------------------------------------
// Settings and their defaults

/** Auto-converge setting of a cell: the engine's modes. */
export type AutoConvergeSetting = AutoConvergeMode;

/** The values each axis of the matrix takes. */
export interface BenchAxes {
  /** Guest memory sizes, in bytes. */
  memoryBytes: number[];
  workloads: Workload[];
  /** Requested guest dirty rates, in bytes per second (ignored by `idle`, which runs at 0). */
  dirtyRatesBytesPerSec: number[];
  /** Downtime budgets, in milliseconds. */
  downtimeBudgetsMs: number[];
  codecs: PageCodec[];
  /** Link caps, in bytes per second; `null` is no cap. */
  linksBytesPerSec: Array<number | null>;
  /** `null` passes no setting, so the engine's default applies. */
  autoConverge: Array<AutoConvergeSetting | null>;
}

/** Everything a bench run was asked to do. */
export interface BenchPlan {
  axes: BenchAxes;
  /** Runs per cell. @default DEFAULT_BENCH_RUNS */
  runs: number;
  /** How long each guest runs before its migration starts, in milliseconds. @default DEFAULT_BENCH_WARMUP_MS */
  warmupMs: number;
  /** Output folder; undefined picks bench/results/latency-TIMESTAMP under the working folder. */
  outDir: string | undefined;
  json: boolean;
  vcpus: number;
  /** Hot set of the `hotset` workload, in bytes (capped at the guest's memory). @default DEFAULT_BENCH_HOT_SET_BYTES */
  hotSetBytes: number;
  seed: number;
  /** Run an all-pairs selection of the matrix instead of every combination. @default false */
  pairwise: boolean;
  /** Passed to the engine when set. */
  maxRounds: number | undefined;
  /** Let the engine re-read the source memory after the switchover; its cost then counts in totalMs. @default false */
  verify: boolean;
  /** A run still going after this long is cancelled and recorded as failed, in milliseconds. @default DEFAULT_BENCH_RUN_TIMEOUT_MS */
  runTimeoutMs: number;
  /** Bytes sent through the raw link for each baseline measurement. @default BASELINE_BYTES */
  baselineBytes: number;
}

/** The matrix `livemig bench` runs without axis flags: a few minutes on a 2-core machine. */
export const QUICK_AXES: Readonly<BenchAxes> = Object.freeze({
  memoryBytes: [256 * 2 ** 20],
  workloads: ['idle', 'hotset'],
  dirtyRatesBytesPerSec: [0, 50e6, 200e6, 1e9],
  downtimeBudgetsMs: [50, 300],
  codecs: ['lz4'],
  linksBytesPerSec: [null],
  autoConverge: [null],
} satisfies BenchAxes);

/** The matrix of `livemig bench --full`: every axis at every level; hours, not minutes. */
export const FULL_AXES: Readonly<BenchAxes> = Object.freeze({
  memoryBytes: [256 * 2 ** 20, 2 ** 30, 4 * 2 ** 30],
  workloads: ['idle', 'uniform', 'hotset', 'sequential'],
  dirtyRatesBytesPerSec: [0, 50e6, 200e6, 1e9],
  downtimeBudgetsMs: [50, 300, 1000],
  codecs: ['lz4', 'none'],
  linksBytesPerSec: [null, 1.25e9, 1.25e8],
  autoConverge: ['off', 'on', 'auto'],
} satisfies BenchAxes);

/** @see BenchPlan.runs */
export const DEFAULT_BENCH_RUNS = 3;

/** @see BenchPlan.warmupMs */
export const DEFAULT_BENCH_WARMUP_MS = 500;

/** @see BenchPlan.hotSetBytes */
export const DEFAULT_BENCH_HOT_SET_BYTES = 64 * 2 ** 20;

/** @see BenchPlan.runTimeoutMs */
export const DEFAULT_BENCH_RUN_TIMEOUT_MS = 10 * 60_000;

/** @see BenchPlan.baselineBytes */
export const BASELINE_BYTES = 256 * 2 ** 20;

/** Frame size of the raw-link baseline, as the loopback benchmark uses. */
export const BASELINE_FRAME_BYTES = 2 ** 20;

/** Frames of the baseline in flight at once. */
export const BASELINE_IN_FLIGHT_FRAMES = 8;

/** Bytes sent before each baseline measurement so that it measures a warm link and warm code. */
export const BASELINE_WARMUP_BYTES = 32 * 2 ** 20;

/** A prediction counts as accurate within this share of the measured downtime... */
export const PREDICTION_TOLERANCE_SHARE = 0.3;

/** ...or within this many milliseconds, whichever is larger. */
export const PREDICTION_TOLERANCE_MIN_MS = 5;

/** How long the far end may take to start listening, in milliseconds. */
export const TARGET_HOST_START_TIMEOUT_MS = 15_000;

/** How long the far end may take to exit after SIGTERM before it is killed, in milliseconds. */
export const TARGET_HOST_STOP_TIMEOUT_MS = 5_000;

/** How often partial results are written while the matrix runs, in milliseconds. */
export const PARTIAL_RESULTS_INTERVAL_MS = 10_000;

/** Frame rate over the rounds above this multiple of a link cap means the cap was not enforced. */
export const LINK_CAP_SLACK = 1.1;

/** The hidden flag that turns `livemig bench` into the far end of the benchmark. */
export const TARGET_HOST_FLAG = '--target-host';

/** The `livemig bench` flags, for parseArgs. */
export const BENCH_FLAGS = {
  memory: { type: 'string' },
  workload: { type: 'string' },
  'dirty-rate': { type: 'string' },
  'downtime-budget': { type: 'string' },
  compress: { type: 'string' },
  link: { type: 'string' },
  'auto-converge': { type: 'string' },
  runs: { type: 'string' },
  warmup: { type: 'string' },
  out: { type: 'string' },
  full: { type: 'boolean' },
  pairwise: { type: 'boolean' },
  json: { type: 'boolean' },
  vcpus: { type: 'string' },
  'hot-set': { type: 'string' },
  seed: { type: 'string' },
  'max-rounds': { type: 'string' },
  verify: { type: 'boolean' },
  'run-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Help text of `livemig bench`. */
export const BENCH_HELP = `usage: livemig bench [flags]

Runs a matrix of live migrations to a target agent in a second process and reports measured and
predicted downtime and total time per cell, against the raw link between the same two processes.
Axis flags take comma lists; every combination is a cell.

Axes (defaults give a matrix of a few minutes; --full runs every level of every axis):
  --memory SIZES             guest memory (default 256MiB; full: 256MiB,1GiB,4GiB)
  --workload KINDS           idle,uniform,hotset,sequential (default idle,hotset)
  --dirty-rate RATES         requested dirty rates (default 0,50MB/s,200MB/s,1GB/s); idle ignores it
  --downtime-budget DURS     downtime budgets (default 50ms,300ms; full: 50ms,300ms,1000ms)
  --compress CODECS          lz4,none (default lz4)
  --link RATES               link caps, or none (default none; full: none,10Gbit/s,1Gbit/s)
  --auto-converge MODES      off,on,auto (default: the engine's own default; full: off,on,auto)
  --full                     the full matrix; axis flags given beside it still win
  --pairwise                 instead of every combination, a few cells in which every level of
                             each axis meets every level of every other axis at least once
                             (--full --pairwise: about 20 cells instead of 2106)
Runs:
  --runs N                   runs per cell; medians and min-max ranges over them (default ${DEFAULT_BENCH_RUNS})
  --warmup DUR               guest run time before each migration (default ${DEFAULT_BENCH_WARMUP_MS}ms)
  --vcpus N                  vCPUs per guest (default 1)
  --hot-set SIZE             hot set of the hotset workload (default 64MiB, at most the memory)
  --seed N                   seed of every guest (default 1)
  --max-rounds N             passed to the engine (default: the engine's)
  --verify                   let the engine re-read the source memory after the switchover
                             (its cost then counts in the total time)
  --run-timeout DUR          cancel a run still going after this long (default 10min)
Output:
  --out DIR                  where results go (default bench/results/latency-TIMESTAMP)
  --json                     print only the final JSON summary on stdout
Progress goes to stderr.
`;

// ---------------------------------------------------------------------------------------------
// Flags and the matrix

type BenchValues = ReturnType<typeof parseBenchFlagValues>;

function parseBenchFlagValues(args: string[]) {
  try {
    return parseArgs({ args, options: BENCH_FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Splits a comma list, trims each item, refuses empty items, and drops repeats. */
function list<T>(text: string, flag: string, parse: (item: string) => T): T[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new InvalidArgumentError(`${flag} "${text}" has an empty item; give a comma list such as ${flag} a,b`);
  const values: T[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const value = parse(item);
    const key = JSON.stringify(value);
    if (!seen.has(key)) {
      seen.add(key);
      values.push(value);
    }
  }
  return values;
}

function oneOf<T extends string>(allowed: readonly T[], flag: string): (item: string) => T {
  return (item) => {
    if (!(allowed as readonly string[]).includes(item)) throw new InvalidArgumentError(`${flag} "${item}" is not one of ${allowed.join(', ')}`);
    return item as T;
  };
}

/**
 * Reads `livemig bench` flags into a plan. Throws InvalidArgumentError (exit status 2) naming the
 * flag and the value at fault.
 */
export function parseBenchArgs(args: string[]): BenchPlan {
  const v: BenchValues = parseBenchFlagValues(args);
  const base = v.full ? FULL_AXES : QUICK_AXES;
  const axes: BenchAxes = {
    memoryBytes: v.memory !== undefined ? list(v.memory, '--memory', (s) => parseSize(s, '--memory')) : [...base.memoryBytes],
    workloads: v.workload !== undefined ? list(v.workload, '--workload', oneOf(WORKLOADS, '--workload')) : [...base.workloads],
    dirtyRatesBytesPerSec:
      v['dirty-rate'] !== undefined ? list(v['dirty-rate'], '--dirty-rate', (s) => parseRate(s, '--dirty-rate')) : [...base.dirtyRatesBytesPerSec],
    downtimeBudgetsMs:
      v['downtime-budget'] !== undefined
        ? list(v['downtime-budget'], '--downtime-budget', (s) => {
            const ms = parseDuration(s, '--downtime-budget');
            if (!(ms > 0)) throw new InvalidArgumentError(`--downtime-budget "${s}" must be more than 0`);
            return ms;
          })
        : [...base.downtimeBudgetsMs],
    codecs: v.compress !== undefined ? list(v.compress, '--compress', oneOf<PageCodec>(['lz4', 'none'], '--compress')) : [...base.codecs],
    linksBytesPerSec:
      v.link !== undefined
        ? list(v.link, '--link', (s) => {
            if (s.toLowerCase() === 'none') return null;
            const rate = parseRate(s, '--link');
            if (!(rate > 0)) throw new InvalidArgumentError(`--link "${s}" must be a rate above 0, or none for no cap`);
            return rate;
          })
        : [...base.linksBytesPerSec],
    autoConverge:
      v['auto-converge'] !== undefined
        ? list(v['auto-converge'], '--auto-converge', oneOf<AutoConvergeSetting>(['off', 'on', 'auto'], '--auto-converge'))
        : [...base.autoConverge],
  };
  const plan: BenchPlan = {
    axes,
    runs: v.runs !== undefined ? parseInteger(v.runs, '--runs', 1, 1000) : DEFAULT_BENCH_RUNS,
    warmupMs: v.warmup !== undefined ? parseDuration(v.warmup, '--warmup') : DEFAULT_BENCH_WARMUP_MS,
    outDir: v.out,
    json: v.json ?? false,
    vcpus: v.vcpus !== undefined ? parseInteger(v.vcpus, '--vcpus', 1, 64) : 1,
    hotSetBytes: v['hot-set'] !== undefined ? parseSize(v['hot-set'], '--hot-set') : DEFAULT_BENCH_HOT_SET_BYTES,
    seed: v.seed !== undefined ? parseInteger(v.seed, '--seed', 0, 0xffffffff) : 1,
    pairwise: v.pairwise ?? false,
    maxRounds: v['max-rounds'] !== undefined ? parseInteger(v['max-rounds'], '--max-rounds', 1, 10_000) : undefined,
    verify: v.verify ?? false,
    runTimeoutMs: v['run-timeout'] !== undefined ? parsePositiveDuration(v['run-timeout'], '--run-timeout') : DEFAULT_BENCH_RUN_TIMEOUT_MS,
    baselineBytes: BASELINE_BYTES,
  };
  if (plan.outDir === '') throw new InvalidArgumentError('--out needs a folder');
  // Refuse now what a guest would refuse later, before any cell has run.
  for (const cell of matrixCells(plan)) validateSimConfig(guestConfig(cell, plan));
  return plan;
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
  codec: PageCodec;
  /** Link cap in bytes per second, or null for none. */
  linkBytesPerSec: number | null;
  /** null: the engine's default. */
  autoConverge: AutoConvergeSetting | null;
}

/**
 * Every combination of the axes, memory outermost and budget innermost. The `idle` workload
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
                cells.push({ index: cells.length + 1, memoryBytes, workload, dirtyRateBytesPerSec, downtimeBudgetMs, codec, linkBytesPerSec, autoConverge });
              }
            }
          }
        }
      }
    }
  }
  return cells;
}

/** The cells a plan runs: every combination of its axes, or an all-pairs selection of them. */
export function matrixCells(plan: Pick<BenchPlan, 'axes' | 'pairwise'>): BenchCell[] {
  return plan.pairwise ? pairwiseMatrix(plan.axes) : expandMatrix(plan.axes);
}

function guestConfig(cell: BenchCell, plan: BenchPlan): SimGuestConfig {
  return {
    memoryBytes: cell.memoryBytes,
    vcpus: plan.vcpus,
    workload: cell.workload,
    dirtyRateBytesPerSec: cell.dirtyRateBytesPerSec,
    hotSetBytes: Math.min(plan.hotSetBytes, cell.memoryBytes),
    seed: plan.seed,
  };
}

/** The options a cell passes to `migrate()`, besides the signal and progress callback. */
export function engineOptions(cell: BenchCell, plan: BenchPlan): MigrateOptions {
  return {
    codec: cell.codec,
    downtimeBudgetMs: cell.downtimeBudgetMs,
    verify: plan.verify,
    ...(plan.maxRounds !== undefined ? { maxRounds: plan.maxRounds } : {}),
    ...(cell.linkBytesPerSec !== null ? { maxBandwidthBytesPerSec: cell.linkBytesPerSec } : {}),
    ...(cell.autoConverge !== null ? { autoConverge: cell.autoConverge } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Runs and their statistics

/** What one migration of a cell gave. A failed run keeps its error code and what was measured. */
export interface BenchRun {
  /** 1-based: the pass of the matrix it ran in. */
  run: number;
  /** Raw link to the far end measured just before this run, in bytes per second. */
  rawLinkBytesPerSec?: number;
  /** The report's outcome, or `failed` if the run broke before the report (boot, connect). */
  outcome: 'completed' | 'failed' | 'cancelled' | 'indeterminate';
  error?: { code: string; message: string };
  migrationId?: string;
  downtimeMs?: number;
  predictedDowntimeMs?: number;
  downtimeUpperBoundMs?: number;
  totalMs?: number;
  bytesRaw?: number;
  bytesWire?: number;
  /** Rounds including the stop-and-copy round. */
  rounds?: number;
  /** Highest vCPU throttle auto-converge applied, in percent. */
  maxThrottlePercent?: number;
  /** Set when the engine forced the switchover after a deadline. */
  forcedSwitchover?: { code: string; message: string };
  /** Page data moved per second of the rounds (before compression; zero pages not counted), in bytes per second. */
  throughputBytesPerSec?: number;
  /** Frame bytes moved per second of the rounds, in bytes per second. */
  wireBytesPerSec?: number;
  /** Distinct pages dirtied per second during the first full pass, in bytes per second. */
  firstPassDirtyRateBytesPerSec?: number;
  /** Where the pause went, as the engine's report gives it. */
  switchover?: NonNullable<MigrationReport['switchover']>;
  /** Each round as the engine's report gives it, the stop-and-copy round last. */
  roundLog?: MigrationReport['rounds'];
}

/** Median, smallest and largest of a set of samples. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  /** Samples. */
  n: number;
}

/** Per-cell statistics over the completed runs. */
export interface CellStats {
  completed: number;
  failed: number;
  /** Failed runs by error code. */
  errors: Record<string, number>;
  downtimeMs?: Spread;
  predictedDowntimeMs?: Spread;
  downtimeUpperBoundMs?: Spread;
  totalMs?: Spread;
  bytesRaw?: Spread;
  bytesWire?: Spread;
  rounds?: Spread;
  maxThrottlePercent?: Spread;
  /** Page data rate over the rounds / the raw link measured for this cell. */
  throughputVsLink?: Spread;
  /** Frame rate over the rounds / the raw link measured for this cell. */
  wireVsLink?: Spread;
  /** Completed runs whose downtime was within the budget. */
  withinBudget: number;
  /** Completed runs whose prediction was within the tolerance of the measured downtime. */
  predictionAccurate: number;
  /** Completed runs that had a prediction to judge. */
  predicted: number;
  /**
   * Whether the median prediction is within the tolerance of the median measured downtime over
   * those runs: the cell's typical pause, which a pause that met a stall now and then does not
   * move. Absent when no run had a prediction.
   */
  medianPredictionAccurate?: boolean;
}

/** A cell with its runs and the baseline measured for it. */
export interface CellResult {
  cell: BenchCell;
  /** Median raw link over this cell's runs, in bytes per second; absent if never measured. */
  rawLinkBytesPerSec?: number;
  runs: BenchRun[];
  stats: CellStats;
  /** Things in this cell a reader should not miss (a cap the engine did not enforce, ...). */
  notes: string[];
}

/** Median, min and max of the finite values; undefined if there are none. */
export function spread(values: ReadonlyArray<number | undefined>): Spread | undefined {
  const finite = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  if (finite.length === 0) return undefined;
  return { median: median(finite)!, min: Math.min(...finite), max: Math.max(...finite), n: finite.length };
}

/** Whether a prediction is within max(30% of the measured downtime, 5 ms) of it. */
export function predictionWithinTolerance(predictedMs: number, measuredMs: number): boolean {
  return Math.abs(predictedMs - measuredMs) <= Math.max(PREDICTION_TOLERANCE_SHARE * measuredMs, PREDICTION_TOLERANCE_MIN_MS);
}

/**
 * Statistics of one cell's runs. A run's throughput is compared with the raw link measured just
 * before it, or with `rawLinkBytesPerSec` when the run has none.
 */
export function cellStats(cell: BenchCell, runs: readonly BenchRun[], rawLinkBytesPerSec?: number): CellStats {
  const ok = runs.filter((r) => r.outcome === 'completed');
  const errors: Record<string, number> = {};
  for (const r of runs) if (r.outcome !== 'completed') errors[r.error?.code ?? r.outcome] = (errors[r.error?.code ?? r.outcome] ?? 0) + 1;
  const judged = ok.filter((r) => r.downtimeMs !== undefined && r.predictedDowntimeMs !== undefined);
  const ratio = (r: BenchRun, x: number | undefined): number | undefined => {
    const link = r.rawLinkBytesPerSec ?? rawLinkBytesPerSec;
    return x !== undefined && link ? x / link : undefined;
  };
  const stats: CellStats = {
    completed: ok.length,
    failed: runs.length - ok.length,
    errors,
    withinBudget: ok.filter((r) => r.downtimeMs !== undefined && r.downtimeMs <= cell.downtimeBudgetMs).length,
    predictionAccurate: judged.filter((r) => predictionWithinTolerance(r.predictedDowntimeMs!, r.downtimeMs!)).length,
    predicted: judged.length,
  };
  if (judged.length > 0) {
    stats.medianPredictionAccurate = predictionWithinTolerance(median(judged.map((r) => r.predictedDowntimeMs!))!, median(judged.map((r) => r.downtimeMs!))!);
  }
  const put = (key: keyof CellStats, s: Spread | undefined): void => {
    if (s) (stats as unknown as Record<string, Spread>)[key] = s;
  };
  put('downtimeMs', spread(ok.map((r) => r.downtimeMs)));
  put('predictedDowntimeMs', spread(ok.map((r) => r.predictedDowntimeMs)));
  put('downtimeUpperBoundMs', spread(ok.map((r) => r.downtimeUpperBoundMs)));
  put('totalMs', spread(ok.map((r) => r.totalMs)));
  put('bytesRaw', spread(ok.map((r) => r.bytesRaw)));
  put('bytesWire', spread(ok.map((r) => r.bytesWire)));
  put('rounds', spread(ok.map((r) => r.rounds)));
  put('maxThrottlePercent', spread(ok.map((r) => r.maxThrottlePercent)));
  put('throughputVsLink', spread(ok.map((r) => ratio(r, r.throughputBytesPerSec))));
  put('wireVsLink', spread(ok.map((r) => ratio(r, r.wireBytesPerSec))));
  return stats;
}

/** What the whole matrix gave, in a few figures. */
export interface BenchSummary {
  cells: number;
  runs: number;
  completed: number;
  failed: number;
  /** Runs that did not complete, by error code. */
  failures: Record<string, number>;
  /** Completed runs whose downtime stayed within their cell's budget. */
  withinBudget: number;
  /** `withinBudget` / `completed`, in percent; null with no completed run. */
  withinBudgetPercent: number | null;
  /** Completed runs with a prediction. */
  predicted: number;
  /** Of which within max(30%, 5 ms) of the measured downtime. */
  predictionAccurate: number;
  /** `predictionAccurate` / `predicted`, in percent; null with no prediction. */
  predictionAccuratePercent: number | null;
  /** Cells with a prediction to judge. */
  cellsPredicted: number;
  /** Of which the median prediction was within max(30%, 5 ms) of the median measured downtime. */
  cellsPredictionAccurate: number;
  /** Median of (predicted - measured) downtime over completed runs, in ms: negative when the engine is optimistic. */
  medianPredictionErrorMs: number | null;
  /** The raw link over every measurement of the run, in bytes per second. */
  rawLinkBytesPerSec: Spread | null;
  /** Median over completed runs of page data rate / raw link. */
  medianThroughputVsLink: number | null;
}

function percent(part: number, whole: number): number | null {
  return whole > 0 ? Math.round((1000 * part) / whole) / 10 : null;
}

/** Totals over every cell. */
export function summarize(cells: readonly CellResult[]): BenchSummary {
  const runs = cells.flatMap((c) => c.runs);
  const completed = runs.filter((r) => r.outcome === 'completed');
  const failures: Record<string, number> = {};
  for (const c of cells) for (const [code, n] of Object.entries(c.stats.errors)) failures[code] = (failures[code] ?? 0) + n;
  const withinBudget = cells.reduce((n, c) => n + c.stats.withinBudget, 0);
  const predicted = cells.reduce((n, c) => n + c.stats.predicted, 0);
  const predictionAccurate = cells.reduce((n, c) => n + c.stats.predictionAccurate, 0);
  const cellsPredicted = cells.filter((c) => c.stats.medianPredictionAccurate !== undefined).length;
  const cellsPredictionAccurate = cells.filter((c) => c.stats.medianPredictionAccurate === true).length;
  const errors = completed.filter((r) => r.downtimeMs !== undefined && r.predictedDowntimeMs !== undefined).map((r) => r.predictedDowntimeMs! - r.downtimeMs!);
  const ratios = cells.flatMap((c) =>
    c.runs.flatMap((r) => {
      const link = r.rawLinkBytesPerSec ?? c.rawLinkBytesPerSec;
      return r.outcome === 'completed' && r.throughputBytesPerSec !== undefined && link ? [r.throughputBytesPerSec / link] : [];
    }),
  );
  const links = cells.flatMap((c) => {
    const perRun = c.runs.flatMap((r) => (r.rawLinkBytesPerSec !== undefined ? [r.rawLinkBytesPerSec] : []));
    return perRun.length > 0 ? perRun : c.rawLinkBytesPerSec !== undefined ? [c.rawLinkBytesPerSec] : [];
  });
  return {
    cells: cells.length,
    runs: runs.length,
    completed: completed.length,
    failed: runs.length - completed.length,
    failures,
    withinBudget,
    withinBudgetPercent: percent(withinBudget, completed.length),
    predicted,
    predictionAccurate,
    predictionAccuratePercent: percent(predictionAccurate, predicted),
    cellsPredicted,
    cellsPredictionAccurate,
    medianPredictionErrorMs: errors.length > 0 ? round(median(errors)!, 3) : null,
    rawLinkBytesPerSec: spread(links) ?? null,
    medianThroughputVsLink: ratios.length > 0 ? round(median(ratios)!, 3) : null,
  };
}

/** The record of one run, taken from its report. */
export function runFromReport(run: number, report: MigrationReport): BenchRun {
  const pre = report.rounds;
  const roundMs = pre.reduce((ms, r) => ms + r.durationMs, 0);
  const record: BenchRun = {
    run,
    outcome: report.outcome,
    migrationId: report.migrationId,
    totalMs: report.totalMs,
    bytesRaw: report.bytesRaw,
    bytesWire: report.bytesWire,
    rounds: report.rounds.length,
  };
  if (report.error) record.error = { code: report.error.code, message: report.error.message };
  if (report.downtimeMs !== undefined) record.downtimeMs = report.downtimeMs;
  if (report.predictedDowntimeMs !== undefined) record.predictedDowntimeMs = report.predictedDowntimeMs;
  if (report.downtimeUpperBoundMs !== undefined) record.downtimeUpperBoundMs = report.downtimeUpperBoundMs;
  record.maxThrottlePercent = report.maxThrottlePercent;
  if (report.forcedSwitchover) record.forcedSwitchover = report.forcedSwitchover;
  if (report.switchover) record.switchover = { ...report.switchover };
  if (pre.length > 0) record.roundLog = pre.map((r) => ({ ...r }));
  if (roundMs > 0) {
    record.throughputBytesPerSec = round((pre.reduce((b, r) => b + r.bytesRaw, 0) * 1000) / roundMs, 0);
    record.wireBytesPerSec = round((pre.reduce((b, r) => b + r.bytesWire, 0) * 1000) / roundMs, 0);
  }
  const first = pre.find((r) => !r.stopAndCopy);
  if (first && pre.length > 1) record.firstPassDirtyRateBytesPerSec = first.dirtyRateBytesPerSec;
  return record;
}

// ---------------------------------------------------------------------------------------------
// The far end: a target agent and a raw sink in a second process

/**
 * Runs the far end of the benchmark until SIGTERM or until its parent goes away (stdin ends):
 * prints one JSON line `{"type":"listening","url":...,"sinkUrl":...}`, then serves.
 */
async function serveTargetHost(): Promise<number> {
  const agent = await TargetAgent.start({ host: '127.0.0.1', port: 0 });
  // A guest that resumed here has served its purpose: destroying it at once keeps its vCPU
  // threads from competing with the next migration for the machine's cores.
  agent.on('event', (e: AgentEvent) => {
    if (e.type !== 'migration-resumed') return;
    const entry = agent.migrations.get(e.migrationId);
    const domain = entry?.domain;
    if (entry && domain) {
      entry.domain = undefined;
      void domain.destroy().catch(() => undefined);
    }
  });
  const sink = await listenWebSocket({ host: '127.0.0.1', port: 0 }, (transport) => void drainRawFrames(transport));
  process.stdout.write(`${JSON.stringify({ type: 'listening', url: agent.url, sinkUrl: sink.url })}\n`);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await agent.close();
    await sink.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  // Ctrl-C at the terminal reaches this process as well as the benchmark's. The benchmark cancels
  // its run (the guest stays on the source, the run is recorded as cancelled) and then stops this
  // host itself; dying here first would cut the run's connection and record a failure instead.
  process.on('SIGINT', () => undefined);
  process.stdin.on('end', () => void stop());
  process.stdin.on('error', () => void stop());
  process.stdin.resume();
  await new Promise(() => undefined);
  return 0;
}

/** The sink: the first frame announces a byte count in decimal; once that many arrived, it answers with the count seen. */
async function drainRawFrames(transport: Transport): Promise<void> {
  try {
    const first = await transport.receive();
    if (first === undefined) return;
    const expected = Number(Buffer.from(first).toString());
    let seen = 0;
    while (seen < expected) {
      const frame = await transport.receive();
      if (frame === undefined) break;
      seen += frame.length;
    }
    await transport.send(Buffer.from(String(seen)));
    await transport.close();
  } catch {
    transport.destroy();
  }
}

/** The far end as seen from here. */
export class TargetHost {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly sinkUrl: string,
  ) {}

  static async start(): Promise<TargetHost> {
    const bin = fileURLToPath(new URL('../../bin/livemig.js', import.meta.url));
    const child = spawn(process.execPath, [bin, 'bench', TARGET_HOST_FLAG], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = createInterface({ input: child.stdout! });
    let timer: NodeJS.Timeout | undefined;
    try {
      const first = await Promise.race([
        (async () => {
          for await (const line of lines) {
            const event = JSON.parse(line) as { type?: string; url?: string; sinkUrl?: string };
            if (event.type === 'listening' && event.url && event.sinkUrl) return { url: event.url, sinkUrl: event.sinkUrl };
          }
          throw new ConnectFailedError('the benchmark target host closed its output before listening');
        })(),
        once(child, 'exit').then(([code]) => {
          throw new ConnectFailedError(`the benchmark target host exited with status ${code} before listening`);
        }),
        new Promise<never>((_, reject) => {
          const late = new ConnectFailedError(`the benchmark target host did not listen within ${TARGET_HOST_START_TIMEOUT_MS} ms`);
          timer = setTimeout(() => reject(late), TARGET_HOST_START_TIMEOUT_MS);
        }),
      ]);
      // Keep reading so that nothing it prints later can fill the pipe and stall it.
      child.stdout!.resume();
      return new TargetHost(child, first.url, first.sinkUrl);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(): Promise<void> {
    await stopChild(this.child, TARGET_HOST_STOP_TIMEOUT_MS);
  }
}

/** Sends `bytes` in 1 MiB frames to the sink and returns the rate the sink confirmed, in bytes per second. */
export async function measureRawLink(sinkUrl: string, bytes: number): Promise<number> {
  const transport = await connectWebSocket(sinkUrl);
  try {
    const frame = Buffer.alloc(BASELINE_FRAME_BYTES, 0x5a);
    const frames = Math.max(1, Math.ceil(bytes / frame.length));
    const total = frames * frame.length;
    await transport.send(Buffer.from(String(total)));
    const started = performance.now();
    const inFlight: Array<Promise<void>> = [];
    for (let i = 0; i < frames; i++) {
      // The same buffer is sent again and again: it is never written, so reuse is safe.
      inFlight.push(transport.send(frame));
      if (inFlight.length >= BASELINE_IN_FLIGHT_FRAMES) await inFlight.shift();
    }
    await Promise.all(inFlight);
    const answer = await transport.receive();
    const ms = performance.now() - started;
    const seen = answer === undefined ? NaN : Number(Buffer.from(answer).toString());
    if (seen !== total) throw new ConnectionClosedError(`the raw sink confirmed ${seen} bytes of the ${total} sent`);
    return (total * 1000) / ms;
  } finally {
    await transport.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Running the matrix

/** Everything written to results.json. */
export interface BenchResults {
  tool: 'livemig bench';
  /** The command line, for reproducing the run. */
  command: string;
  startedAt: string;
  finishedAt?: string;
  /** False while the matrix runs, or if it was interrupted. */
  complete: boolean;
  machine: MachineInfo;
  plan: Omit<BenchPlan, 'json' | 'outDir'>;
  summary: BenchSummary;
  cells: CellResult[];
}

/** The machine the figures come from. */
export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemoryBytes: number;
  nodeVersion: string;
  platform: string;
  arch: string;
  /** 1, 5 and 15 minute load averages when the run started and when it ended: other work on the machine skews figures. */
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
}

function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemoryBytes: os.totalmem(),
    nodeVersion: process.version,
    platform: os.platform(),
    arch: os.arch(),
    loadAverageAtStart: os.loadavg().map((x) => round(x, 2)),
  };
}

/** Output files of a run. */
export interface BenchFiles {
  json: string;
  markdown: string;
  downtimeSvg: string;
  totalTimeSvg: string;
}

/**
 * `livemig bench [flags]`. Resolves with the exit status: 0 once the matrix ran and its outputs
 * are written (failed runs are data, recorded with their codes), 1 if no run completed or the run
 * was interrupted.
 */
export async function runBench(args: string[]): Promise<number> {
  if (args[0] === TARGET_HOST_FLAG && args.length === 1) return serveTargetHost();
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  const plan = parseBenchArgs(args);
  const cells = matrixCells(plan);
  const started = new Date();
  const outDir = resolve(plan.outDir ?? join('bench', 'results', `latency-${started.toISOString().replace(/[:.]/g, '-')}`));
  mkdirSync(outDir, { recursive: true });
  const files: BenchFiles = {
    json: join(outDir, 'results.json'),
    markdown: join(outDir, 'results.md'),
    downtimeSvg: join(outDir, 'downtime.svg'),
    totalTimeSvg: join(outDir, 'total-time.svg'),
  };
  const { json: _json, outDir: _out, ...planRecord } = plan;
  const results: BenchResults = {
    tool: 'livemig bench',
    command: ['livemig', 'bench', ...args].join(' '),
    startedAt: started.toISOString(),
    complete: false,
    machine: machineInfo(),
    plan: planRecord,
    summary: summarize([]),
    cells: [],
  };
  const say = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  say(`livemig bench: ${cells.length} cells x ${plan.runs} runs = ${cells.length * plan.runs} migrations; results in ${outDir}`);

  const interrupt = new AbortController();
  const onSigint = (): void => {
    say('interrupted: finishing with the runs done so far');
    interrupt.abort(new Error('interrupted'));
  };
  process.once('SIGINT', onSigint);
  const t0 = performance.now();
  const runs: BenchRun[][] = cells.map(() => []);
  const total = cells.length * plan.runs;
  let done = 0;
  let lastWrite = performance.now();
  const collect = (): CellResult[] => cells.map((cell, i) => cellResult(cell, runs[i]!));
  try {
    for (let pass = 1; pass <= plan.runs && !interrupt.signal.aborted; pass++) {
      for (const cell of cells) {
        if (interrupt.signal.aborted) break;
        const eta = done > 0 ? `, about ${formatDuration(((performance.now() - t0) / done) * (total - done))} left` : '';
        say(`[cell ${cell.index}/${cells.length}, run ${pass}/${plan.runs}${eta}] ${describeCell(cell)}`);
        const record = await runWithFreshTarget(cell, plan, pass, interrupt.signal);
        runs[cell.index - 1]!.push(record);
        done++;
        say(`  ${describeRun(record, cell)}`);
        // Partial results survive a crash or a kill; rewritten at most every few seconds.
        if (performance.now() - lastWrite > PARTIAL_RESULTS_INTERVAL_MS) {
          results.cells = collect();
          results.summary = summarize(results.cells);
          writeJsonAtomically(files.json, results);
          lastWrite = performance.now();
        }
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  results.cells = collect();
  results.complete = !interrupt.signal.aborted;
  results.finishedAt = new Date().toISOString();
  results.machine.loadAverageAtEnd = os.loadavg().map((x) => round(x, 2));
  results.summary = summarize(results.cells);
  writeJsonAtomically(files.json, results);
  writeFileSync(files.markdown, resultsMarkdown(results));
  const charts = benchCharts(results);
  writeFileSync(files.downtimeSvg, charts.downtimeSvg);
  writeFileSync(files.totalTimeSvg, charts.totalTimeSvg);

  const wallMs = performance.now() - t0;
  if (plan.json) {
    process.stdout.write(`${JSON.stringify({ ...results.summary, complete: results.complete, wallMs: Math.round(wallMs), outDir, files })}\n`);
  } else {
    process.stdout.write(`${formatSummary(results.summary, wallMs, files)}\n`);
  }
  return results.summary.completed === 0 || !results.complete ? 1 : 0;
}

function writeJsonAtomically(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Starts a fresh far end, measures the raw link to it, runs one migration, stops it. Never throws. */
async function runWithFreshTarget(cell: BenchCell, plan: BenchPlan, run: number, interrupt: AbortSignal): Promise<BenchRun> {
  let host: TargetHost;
  try {
    host = await TargetHost.start();
  } catch (err) {
    return { run, outcome: 'failed', error: asMigrationError(err, 'ERR_CONNECT_FAILED').toJSON() };
  }
  try {
    let rawLinkBytesPerSec: number | undefined;
    try {
      await measureRawLink(host.sinkUrl, BASELINE_WARMUP_BYTES);
      rawLinkBytesPerSec = round(await measureRawLink(host.sinkUrl, plan.baselineBytes), 0);
    } catch {
      // Recorded as a run without a baseline of its own: its ratios use the cell's median link.
    }
    const record = await runOnce(cell, plan, run, host.url, interrupt);
    return rawLinkBytesPerSec !== undefined ? { ...record, rawLinkBytesPerSec } : record;
  } finally {
    await host.stop();
  }
}

/** A cell's runs with their statistics and what a reader should notice. */
export function cellResult(cell: BenchCell, runs: BenchRun[]): CellResult {
  const rawLinkBytesPerSec = median(runs.flatMap((r) => (r.rawLinkBytesPerSec !== undefined ? [r.rawLinkBytesPerSec] : [])));
  const stats = cellStats(cell, runs, rawLinkBytesPerSec);
  const notes: string[] = [];
  const unmeasured = runs.filter((r) => r.rawLinkBytesPerSec === undefined && r.error?.code !== 'ERR_CONNECT_FAILED').length;
  if (unmeasured > 0) notes.push(`the raw link could not be measured before ${unmeasured} run(s); their ratios use the median raw link of the cell's other runs`);
  if (cell.linkBytesPerSec !== null && stats.wireVsLink && rawLinkBytesPerSec) {
    // The frame rate over the rounds cannot exceed a cap the engine enforces.
    const vsCap = (stats.wireVsLink.median * rawLinkBytesPerSec) / cell.linkBytesPerSec;
    if (vsCap > LINK_CAP_SLACK) notes.push(`frames moved at ${vsCap.toFixed(2)} x the ${linkLabel(cell.linkBytesPerSec)} cap: the cap was not enforced`);
  }
  const result: CellResult = { cell, runs, stats, notes };
  if (rawLinkBytesPerSec !== undefined) result.rawLinkBytesPerSec = rawLinkBytesPerSec;
  return result;
}

/** One migration: boot, let the guest run, migrate, clean up. Never throws. */
async function runOnce(cell: BenchCell, plan: BenchPlan, run: number, url: string, interrupt: AbortSignal): Promise<BenchRun> {
  let guest: SimulatedGuest | undefined;
  let onTarget = false;
  const progress = terminalProgress(process.stderr);
  try {
    guest = await SimulatedGuest.boot(guestConfig(cell, plan), `bench-${cell.index}-${run}`);
    await sleep(plan.warmupMs);
    const signal = AbortSignal.any([interrupt, AbortSignal.timeout(plan.runTimeoutMs)]);
    const transport = await connectWebSocket(url);
    const report = await migrate(guest, transport, { ...engineOptions(cell, plan), targetName: url, signal, onProgress: progress });
    onTarget = report.guestRunningOn === 'target';
    return runFromReport(run, report);
  } catch (err) {
    const error = asMigrationError(err);
    return { run, outcome: 'failed', error: error.toJSON() };
  } finally {
    progress.done();
    // A guest still here (failed, cancelled, or paused after an unclear switchover) ends with its run.
    if (guest && !onTarget) await guest.destroy().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Words and numbers for people

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

function formatGBps(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e9).toFixed(2)} GB/s`;
}

/** `1.52 GB/s median (1.31-1.60 GB/s over 12 measurements)`, or one figure for one measurement. */
function linkSpreadText(s: Spread): string {
  if (s.n === 1) return `${formatGBps(s.median)} (one measurement)`;
  return `${formatGBps(s.median)} median (${(s.min / 1e9).toFixed(2)}-${formatGBps(s.max)} over ${s.n} measurements)`;
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function ms(x: number | undefined): string {
  return x === undefined ? '-' : x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
}

function autoConvergeLabel(a: AutoConvergeSetting | null): string {
  return a ?? 'default';
}

function describeCell(c: BenchCell): string {
  const rate = c.workload === 'idle' ? '' : ` ${rateLabel(c.dirtyRateBytesPerSec)}`;
  return (
    `${sizeLabel(c.memoryBytes)} ${c.workload}${rate}, budget ${c.downtimeBudgetMs} ms, ${c.codec}, ` +
    `link ${linkLabel(c.linkBytesPerSec)}, auto-converge ${autoConvergeLabel(c.autoConverge)}`
  );
}

function describeRun(r: BenchRun, cell: BenchCell): string {
  if (r.outcome !== 'completed') return `${r.outcome} (${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''})`;
  const miss = r.downtimeMs !== undefined && r.downtimeMs > cell.downtimeBudgetMs ? ' OVER BUDGET' : '';
  const throttle = r.maxThrottlePercent ? `, throttle up to ${r.maxThrottlePercent}%` : '';
  return (
    `downtime ${ms(r.downtimeMs)} ms (predicted ${ms(r.predictedDowntimeMs)})${miss}, total ${formatDuration(r.totalMs ?? 0)}, ` +
    `${r.rounds} rounds${throttle}${r.rawLinkBytesPerSec ? `; raw link ${formatGBps(r.rawLinkBytesPerSec)}` : ''}`
  );
}

function formatSummary(s: BenchSummary, wallMs: number, files: BenchFiles): string {
  const fails = countsText(s.failures);
  const pct = (p: number | null): string => (p === null ? '-' : `${p}%`);
  const link = s.rawLinkBytesPerSec;
  const lines = [
    `livemig bench: ${s.cells} cells, ${s.runs} runs (${s.completed} completed, ${s.failed} failed${fails ? `: ${fails}` : ''}) in ${formatDuration(wallMs)}`,
    `  raw link        ${link ? linkSpreadText(link) : 'not measured'}`,
    `  within budget   ${s.withinBudget} of ${s.completed} completed runs (${pct(s.withinBudgetPercent)})`,
    `  prediction      ${s.predictionAccurate} of ${s.predicted} within 30% or 5 ms of measured (${pct(s.predictionAccuratePercent)})` +
      (s.medianPredictionErrorMs !== null ? `; median predicted - measured ${s.medianPredictionErrorMs.toFixed(1)} ms` : ''),
    `                  ${s.cellsPredictionAccurate} of ${s.cellsPredicted} cells with the median prediction within 30% or 5 ms of the median measured`,
    `  throughput      ${s.medianThroughputVsLink !== null ? `${s.medianThroughputVsLink.toFixed(2)} x the raw link (median page data rate over the rounds)` : '-'}`,
    `  results         ${files.json}`,
    `                  ${files.markdown}`,
    `  charts          ${files.downtimeSvg}`,
    `                  ${files.totalTimeSvg}`,
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// results.md

type AxisName = 'memory' | 'workload' | 'dirty rate' | 'budget' | 'compress' | 'link' | 'auto-converge';

const AXIS_VALUE: Record<AxisName, (c: BenchCell) => string> = {
  memory: (c) => sizeLabel(c.memoryBytes),
  workload: (c) => c.workload,
  'dirty rate': (c) => rateLabel(c.dirtyRateBytesPerSec),
  budget: (c) => `${c.downtimeBudgetMs} ms`,
  compress: (c) => c.codec,
  link: (c) => linkLabel(c.linkBytesPerSec),
  'auto-converge': (c) => autoConvergeLabel(c.autoConverge),
};

/** Axes that take more than one value among `cells`. */
function varyingAxes(cells: readonly BenchCell[], candidates: readonly AxisName[]): AxisName[] {
  return candidates.filter((a) => new Set(cells.map(AXIS_VALUE[a])).size > 1);
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const g = groups.get(k);
    if (g) g.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** `{ ERR_TIMEOUT: 2 }` -> `2 ERR_TIMEOUT`. */
function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([code, n]) => `${n} ${code}`)
    .join(', ');
}

function spreadText(s: Spread | undefined, format: (x: number) => string): string {
  if (!s) return '-';
  return s.n > 1 && s.min !== s.max ? `${format(s.median)} (${format(s.min)}-${format(s.max)})` : format(s.median);
}

/** The results as Markdown: summary, then one table per memory size and workload. */
export function resultsMarkdown(results: BenchResults): string {
  const s = results.summary;
  const m = results.machine;
  const out: string[] = [];
  const pct = (p: number | null): string => (p === null ? '-' : `${p}%`);
  out.push('# livemig latency benchmark', '');
  out.push(`\`${results.command}\`, started ${results.startedAt}${results.complete ? '' : ' (interrupted: partial results)'}.`, '');
  out.push(
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${sizeLabel(m.totalMemoryBytes)} memory, Node ${m.nodeVersion} on ${m.platform}/${m.arch}; ` +
      `load average ${m.loadAverageAtStart.join(' / ')} at the start${m.loadAverageAtEnd ? `, ${m.loadAverageAtEnd.join(' / ')} at the end` : ''}.`,
    '',
  );
  if (results.plan.pairwise) {
    out.push(
      'The cells are an all-pairs selection of the matrix (`--pairwise`): every level of each axis meets every level of ' +
        'every other axis in at least one cell, not every combination.',
      '',
    );
  }
  out.push(
    `Each cell ran ${results.plan.runs} migration${results.plan.runs > 1 ? 's' : ''}, each of a fresh guest (${results.plan.vcpus} vCPU, seed ${results.plan.seed}, ` +
      `${results.plan.warmupMs} ms warm-up) to a fresh target agent in a second process. Runs are interleaved (every cell once, ` +
      `then every cell again), so that other load on the machine spreads over all cells. Figures are medians with the ` +
      `min-max range in brackets, over completed runs. Before each run, the raw link is measured between the same two ` +
      `processes: 1 MiB frames through the same transport to a sink.` +
      (results.plan.verify ? '' : ' The engine\'s post-switchover verification was off, so total time ends when the source copy is destroyed.'),
    '',
  );
  out.push('## Summary', '');
  out.push(`| | |`, `| --- | --- |`);
  out.push(`| cells | ${s.cells} |`);
  const failures = countsText(s.failures);
  out.push(`| runs | ${s.runs}: ${s.completed} completed, ${s.failed} failed${failures ? ` (${failures})` : ''} |`);
  out.push(`| downtime within budget | ${s.withinBudget} of ${s.completed} completed runs (${pct(s.withinBudgetPercent)}) |`);
  out.push(`| prediction within 30% or 5 ms | ${s.predictionAccurate} of ${s.predicted} runs (${pct(s.predictionAccuratePercent)}) |`);
  out.push(`| cell median prediction within 30% or 5 ms of the median measured | ${s.cellsPredictionAccurate} of ${s.cellsPredicted} cells |`);
  out.push(`| median predicted - measured downtime | ${s.medianPredictionErrorMs === null ? '-' : `${s.medianPredictionErrorMs.toFixed(1)} ms`} |`);
  if (s.rawLinkBytesPerSec) {
    out.push(`| raw link | ${linkSpreadText(s.rawLinkBytesPerSec)} |`);
  }
  out.push(`| page data rate / raw link | ${s.medianThroughputVsLink === null ? '-' : `${s.medianThroughputVsLink.toFixed(2)} (median)`} |`);
  out.push('');
  out.push(
    'Columns: *downtime* as the engine measures it (pause to vCPUs running on the target); *predicted*, the engine\'s estimate ' +
      'when it stopped iterating; *upper*, pause until the target\'s "resumed" arrived; *in budget* and *pred. ok*, runs within ' +
      'the budget and predictions within 30% or 5 ms; *data/link* and *wire/link*, page data and frame bytes per second over the ' +
      'rounds against the raw link (data above 1 means compression and zero pages beat the link).',
    '',
  );

  const all = results.cells.map((c) => c.cell);
  const groupAxes: AxisName[] = ['memory', 'workload'];
  const rowAxes = varyingAxes(all, ['dirty rate', 'budget', 'compress', 'link', 'auto-converge']);
  const constant = (['dirty rate', 'budget', 'compress', 'link', 'auto-converge'] as AxisName[]).filter((a) => !rowAxes.includes(a));
  for (const [, group] of groupBy(results.cells, (c) => groupAxes.map((a) => AXIS_VALUE[a](c.cell)).join(', '))) {
    const first = group[0]!.cell;
    const fixed = constant.filter((a) => !(a === 'dirty rate' && first.workload === 'idle')).map((a) => `${a} ${AXIS_VALUE[a](first)}`);
    out.push(`## ${sizeLabel(first.memoryBytes)}, ${first.workload}${fixed.length ? ` (${fixed.join(', ')})` : ''}`, '');
    if (first.workload === 'idle') out.push('The idle workload writes 16 pages 10 times a second whatever the requested dirty rate; it runs at rate 0 only.', '');
    const header = [
      ...rowAxes,
      ...['downtime ms', 'predicted ms', 'upper ms', 'in budget', 'pred. ok', 'total s', 'rounds', 'wire MiB', 'data/link', 'wire/link', 'max throttle %', 'runs'],
    ];
    out.push(`| ${header.join(' | ')} |`, `| ${header.map((h, i) => (i < rowAxes.length ? '---' : '---:')).join(' | ')} |`);
    for (const c of group) {
      const st = c.stats;
      const runsText = st.failed > 0 ? `${st.completed} ok, ${countsText(st.errors)}` : `${st.completed}`;
      const row = [
        ...rowAxes.map((a) => AXIS_VALUE[a](c.cell)),
        spreadText(st.downtimeMs, ms),
        spreadText(st.predictedDowntimeMs, ms),
        spreadText(st.downtimeUpperBoundMs, ms),
        st.completed ? `${st.withinBudget}/${st.completed}` : '-',
        st.predicted ? `${st.predictionAccurate}/${st.predicted}` : '-',
        spreadText(st.totalMs, (x) => (x / 1000).toFixed(2)),
        spreadText(st.rounds, (x) => String(round(x, 1))),
        spreadText(st.bytesWire, (x) => (x / 2 ** 20).toFixed(0)),
        spreadText(st.throughputVsLink, (x) => x.toFixed(2)),
        spreadText(st.wireVsLink, (x) => x.toFixed(2)),
        spreadText(st.maxThrottlePercent, (x) => String(round(x, 1))),
        runsText,
      ];
      out.push(`| ${row.join(' | ')} |`);
    }
    out.push('');
  }

  const failed = results.cells.flatMap((c) => c.runs.filter((r) => r.outcome !== 'completed').map((r) => ({ c, r })));
  const forced = results.cells.flatMap((c) => c.runs.filter((r) => r.forcedSwitchover).map((r) => ({ c, r })));
  const notes = results.cells.flatMap((c) => c.notes.map((n) => ({ c, n })));
  if (failed.length + forced.length + notes.length > 0) {
    out.push('## Failures and notes', '');
    const where = (c: CellResult): string => `cell ${c.cell.index} (${describeCell(c.cell)})`;
    for (const { c, r } of failed) out.push(`- ${where(c)}, run ${r.run}: ${r.outcome}, ${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''}`);
    for (const { c, r } of forced) out.push(`- ${where(c)}, run ${r.run}: switchover forced by ${r.forcedSwitchover!.code}: ${r.forcedSwitchover!.message}`);
    for (const { c, n } of notes) out.push(`- ${where(c)}: ${n}`);
    out.push('');
  }
  out.push('Charts: [downtime](downtime.svg), [total time](total-time.svg).', '');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Charts

/**
 * downtime.svg and total-time.svg: against the requested dirty rate, one panel per memory size
 * and workload (and auto-converge setting when it varies), one colour per budget/codec/link
 * combination. Downtime shows the measured median (solid, filled markers, min-max bars) beside
 * the engine's prediction (dashed, hollow markers), with each budget as a dotted line.
 */
export function benchCharts(results: BenchResults): { downtimeSvg: string; totalTimeSvg: string } {
  const all = results.cells.map((c) => c.cell);
  const panelAxes: AxisName[] = ['memory', 'workload', ...varyingAxes(all, ['auto-converge'])];
  // The budget always names a series (the dotted budget lines refer to it); codec and link only when they vary.
  const seriesAxes: AxisName[] = ['budget', ...varyingAxes(all, ['compress', 'link'])];
  const seriesKey = (c: BenchCell): string =>
    seriesAxes.map((a) => (a === 'budget' ? `budget ${AXIS_VALUE[a](c)}` : a === 'link' ? `link ${AXIS_VALUE[a](c)}` : AXIS_VALUE[a](c))).join(', ');
  const keys = [...new Set(all.map(seriesKey))];
  const style = new Map(keys.map((k, i) => [k, { color: PALETTE[i % PALETTE.length]!, marker: MARKERS[Math.floor(i / PALETTE.length) % MARKERS.length]! }]));
  const panelTitle = (c: BenchCell): string =>
    panelAxes.map((a) => (a === 'auto-converge' ? `auto-converge ${AXIS_VALUE[a](c)}` : AXIS_VALUE[a](c))).join(', ');
  const panels = groupBy(results.cells, (c) => panelTitle(c.cell));

  const downtimePanels: ChartPanel[] = [];
  const totalPanels: ChartPanel[] = [];
  for (const [title, cells] of panels) {
    const down: ChartSeries[] = [];
    const total: ChartSeries[] = [];
    for (const [key, series] of groupBy(cells, (c) => seriesKey(c.cell))) {
      const { color, marker } = style.get(key)!;
      const sorted = [...series].sort((a, b) => a.cell.dirtyRateBytesPerSec - b.cell.dirtyRateBytesPerSec);
      const points = (pick: (s: CellStats) => Spread | undefined): ChartSeries['points'] =>
        sorted.flatMap((c) => {
          const s = pick(c.stats);
          return s ? [{ x: c.cell.dirtyRateBytesPerSec, y: s.median, low: s.min, high: s.max }] : [];
        });
      down.push({ label: key, color, marker, points: points((s) => s.downtimeMs) });
      down.push({ label: `${key} (predicted)`, color, marker, dashed: true, hollow: true, points: points((s) => s.predictedDowntimeMs) });
      total.push({ label: key, color, marker, points: points((s) => s.totalMs) });
    }
    const budgets = [...new Set(cells.map((c) => c.cell.downtimeBudgetMs))].sort((a, b) => a - b);
    downtimePanels.push({ title, series: down, references: budgets.map((b) => ({ y: b, label: `budget ${b} ms` })) });
    totalPanels.push({ title, series: total });
  }

  const colourLegend: LegendEntry[] = keys.map((k) => ({ label: k, color: style.get(k)!.color, marker: style.get(k)!.marker }));
  const runs = results.plan.runs;
  const link = results.summary.rawLinkBytesPerSec;
  const subtitle =
    `${runs} run${runs > 1 ? 's' : ''} per cell: median, bars from min to max` +
    (link ? `; raw link ${formatGBps(link.median)}` : '') +
    `; ${results.machine.cpus} CPUs, Node ${results.machine.nodeVersion}; ${results.startedAt.slice(0, 10)}`;
  const common = {
    xLabel: 'guest dirty rate, requested (MB/s)',
    xScale: 'category' as const,
    xFormat: (x: number) => (x === 0 ? '0' : String(Number((x / 1e6).toPrecision(3)))),
    dodge: true,
    subtitle,
  };
  const downtimeSvg = renderSvgChart({
    ...common,
    title: 'Downtime against dirty rate: measured and predicted',
    yLabel: 'downtime (ms)',
    yFormat: (y: number) => String(Number(y.toPrecision(3))),
    panels: downtimePanels,
    legend: [
      ...colourLegend,
      { label: 'measured (solid)', color: '#333333', marker: 'circle' },
      { label: 'predicted by the engine (dashed)', color: '#333333', marker: 'circle', dashed: true, hollow: true },
    ],
  });
  const totalTimeSvg = renderSvgChart({
    ...common,
    title: 'Total migration time against dirty rate',
    yLabel: 'total time (s)',
    yFormat: (y: number) => String(Number((y / 1000).toPrecision(3))),
    panels: totalPanels,
    legend: colourLegend,
  });
  return { downtimeSvg, totalTimeSvg };
}
