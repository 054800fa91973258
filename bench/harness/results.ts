/**
 * What `livemig bench` records: each run as the engine reported it, the statistics of a cell and of
 * the whole matrix, and the shape of results.json.
 */

import type { MigrationReport } from 'livemig';
import { median, roundTo as round } from '#util/stats';
import { linkLabel } from './labels.js';
import type { BenchCell } from './matrix.js';
import type { BenchPlan } from './plan.js';

/** A prediction counts as accurate within this share of the measured downtime... */
export const PREDICTION_TOLERANCE_SHARE = 0.3;

/** ...or within this many milliseconds, whichever is larger. */
export const PREDICTION_TOLERANCE_MIN_MS = 5;

/** Frame rate over the rounds above this multiple of a link cap means the cap was not enforced. */
export const LINK_CAP_SLACK = 1.1;

/** What one migration of a cell gave. A failed run keeps its error code and what was measured. */
export interface BenchRun {
  /** 1-based: the pass of the matrix it ran in. */
  run: number;
  /** Raw link to the far end measured just before this run, in bytes per second. */
  rawLinkBytesPerSec?: number;
  /** The agent this run migrated to: a new one per run, or the same for all with `--agent shared`. */
  targetUrl?: string;
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
  /** The most extra memory the source held beyond the guest (the report's `memory.peakBytes`), in bytes. */
  sourceMemoryBytes?: number;
  /** The same as a share of guest RAM (the engine's defaults keep it within 0.1). */
  sourceMemoryShare?: number;
  /** What each part of it held at the peak, in bytes. */
  sourceMemoryParts?: NonNullable<MigrationReport['memory']>['atPeak'];
  /** Whether pages sent again went as deltas (or why not), as the report's `delta` gives it. */
  delta?: NonNullable<MigrationReport['delta']>;
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
  /** Extra source memory at its peak, as a share of guest RAM. */
  sourceMemoryShare?: Spread;
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
  /** Completed runs that sent deltas (`report.delta.on`): under `auto`, whether the engine chose them. */
  deltaOn: number;
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
    deltaOn: ok.filter((r) => r.delta?.on === true).length,
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
  put('sourceMemoryShare', spread(ok.map((r) => r.sourceMemoryShare)));
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
  /** The largest extra source memory of any completed run, as a share of its guest RAM; null without one. */
  maxSourceMemoryShare: number | null;
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
  const shares = completed.flatMap((r) => (r.sourceMemoryShare !== undefined ? [r.sourceMemoryShare] : []));
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
    maxSourceMemoryShare: shares.length > 0 ? Math.max(...shares) : null,
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
  if (report.memory) {
    record.sourceMemoryBytes = report.memory.peakBytes;
    record.sourceMemoryShare = report.memory.peakShare;
    record.sourceMemoryParts = { ...report.memory.atPeak };
  }
  if (report.delta) record.delta = { ...report.delta };
  return record;
}

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
  /** Node's options in this process, from its command line and NODE_OPTIONS (see NODE_FLAGS); absent in older results. */
  nodeOptions?: string[];
  /**
   * How guest memory was paged: the kernel's transparent huge page mode (`always`, `madvise`,
   * `never`; absent where it cannot be read) and this process's GLIBC_TUNABLES ('' for none), of
   * which `glibc.malloc.hugetlb=1` asks for huge pages under `madvise`. The cost of touching fresh
   * memory, and so round 0, depends on it (docs/bench/README.md). Absent in older results.
   */
  pages?: { transparentHugePages?: string; glibcTunables: string };
  /** 1, 5 and 15 minute load averages when the run started and when it ended: other work on the machine skews figures. */
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
}

/** Output files of a run. */
export interface BenchFiles {
  json: string;
  markdown: string;
  downtimeSvg: string;
  totalTimeSvg: string;
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
