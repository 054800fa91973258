// `livemig bench` without migrations: flags into a matrix, engine options per cell, and the
// statistics, tables and charts made from synthetic runs.
import { describe, expect, it } from 'vitest';
import { benchCharts } from '../dist/bench/charts.js';
import { describeCell } from '../dist/bench/labels.js';
import { expandMatrix, type BenchCell } from '../dist/bench/matrix.js';
import { engineOptions, parseBenchArgs } from '../dist/bench/plan.js';
import { resultsMarkdown } from '../dist/bench/report.js';
import {
  cellResult,
  cellStats,
  predictionWithinTolerance,
  runFromReport,
  spread,
  summarize,
  type BenchResults,
  type BenchRun,
  type CellResult,
} from '../dist/bench/results.js';
import { median } from '../dist/util/stats.js';
import { InvalidArgumentError } from '../dist/errors.js';
import type { MigrationReport } from '../dist/precopy/report.js';

const MiB = 2 ** 20;

describe('flags into a matrix', () => {
  it('defaults to a quick matrix, with idle run once per budget', () => {
    const plan = parseBenchArgs([]);
    const cells = expandMatrix(plan.axes);
    expect(plan.runs).toBe(3);
    expect(plan.warmupMs).toBe(500);
    // idle: one rate x 2 budgets; hotset: 4 rates x 2 budgets.
    expect(cells).toHaveLength(2 + 8);
    expect(cells.filter((c) => c.workload === 'idle').every((c) => c.dirtyRateBytesPerSec === 0)).toBe(true);
    expect(cells.map((c) => c.index)).toEqual(cells.map((_, i) => i + 1));
  });

  it('crosses every axis given as a comma list, memory outermost and budget innermost', () => {
    const plan = parseBenchArgs([
      '--memory', '256MiB,1GiB',
      '--workload', 'idle,hotset',
      '--dirty-rate', '0,100MB/s,400MB/s',
      '--downtime-budget', '50ms,300ms',
      '--compress', 'lz4,none',
      '--runs', '2',
    ]);
    const cells = expandMatrix(plan.axes);
    expect(cells).toHaveLength(2 * (1 + 3) * 2 * 2);
    expect(plan.runs).toBe(2);
    expect(cells[0]).toMatchObject({ memoryBytes: 256 * MiB, workload: 'idle', dirtyRateBytesPerSec: 0, codec: 'lz4', downtimeBudgetMs: 50, linkBytesPerSec: null, autoConverge: null, switchover: null, delta: null });
    expect(cells[1]).toMatchObject({ downtimeBudgetMs: 300, codec: 'lz4' });
    expect(cells[2]).toMatchObject({ downtimeBudgetMs: 50, codec: 'none' });
    expect(cells.at(-1)).toMatchObject({ memoryBytes: 1024 * MiB, workload: 'hotset', dirtyRateBytesPerSec: 400e6, codec: 'none', downtimeBudgetMs: 300 });
    // Every combination once.
    expect(new Set(cells.map((c) => JSON.stringify({ ...c, index: 0 }))).size).toBe(cells.length);
  });

  it('--full runs every level of every axis, and axis flags beside it still win', () => {
    const full = parseBenchArgs(['--full']);
    expect(expandMatrix(full.axes)).toHaveLength(3 * (1 + 3 * 4) * 3 * 3 * 3 * 3);
    expect(full.axes.linksBytesPerSec).toEqual([null, 1.25e9, 1.25e8]);
    expect(full.axes.autoConverge).toEqual(['off', 'on', 'auto']);
    const narrowed = parseBenchArgs(['--full', '--memory', '256MiB', '--workload', 'hotset']);
    expect(expandMatrix(narrowed.axes)).toHaveLength(4 * 3 * 3 * 3 * 3);
  });

  it('reads links, auto-converge modes and the other flags, dropping repeats', () => {
    const plan = parseBenchArgs(['--link', 'none, 10Gbit/s,1Gbit/s,none', '--auto-converge', 'off,auto', '--warmup', '1s', '--out', '/tmp/x', '--json', '--max-rounds', '5', '--hot-set', '16MiB']);
    expect(plan.axes.linksBytesPerSec).toEqual([null, 1.25e9, 1.25e8]);
    expect(plan.axes.autoConverge).toEqual(['off', 'auto']);
    expect(plan).toMatchObject({ warmupMs: 1000, outDir: '/tmp/x', json: true, maxRounds: 5, hotSetBytes: 16 * MiB, verify: false });
  });

  it.each([
    [['--memory', '12XB'], /--memory "12XB" has an unknown unit/],
    [['--memory', '1000'], /memoryBytes must be a positive multiple of 4096/],
    [['--workload', 'idle,busy'], /--workload "busy" is not one of idle, uniform, hotset, sequential/],
    [['--dirty-rate', '0,,50MB/s'], /--dirty-rate "0,,50MB\/s" has an empty item/],
    [['--dirty-rate', 'fast'], /--dirty-rate "fast" is not a number/],
    [['--downtime-budget', '0ms'], /--downtime-budget "0ms" must be more than 0/],
    [['--compress', 'zstd'], /--compress "zstd" is not one of auto, lz4, none/],
    [['--link', '0'], /--link "0" must be a rate above 0, or none/],
    [['--auto-converge', 'maybe'], /--auto-converge "maybe" is not one of off, on, auto/],
    [['--runs', '0'], /--runs must be between 1 and 1000/],
    [['--warmup', 'soon'], /--warmup "soon" is not a number/],
    [['--bogus'], /Unknown option '--bogus'/],
  ])('refuses %j with InvalidArgumentError', (args, message) => {
    expect(() => parseBenchArgs(args as string[])).toThrow(InvalidArgumentError);
    expect(() => parseBenchArgs(args as string[])).toThrow(message as RegExp);
  });

  it('passes the link cap and auto-converge to the engine only when the cell sets them', () => {
    const plan = parseBenchArgs(['--link', 'none,1Gbit/s', '--auto-converge', 'on']);
    const [uncapped, capped] = expandMatrix(plan.axes).filter((c) => c.workload === 'hotset' && c.dirtyRateBytesPerSec === 50e6 && c.downtimeBudgetMs === 50);
    expect(engineOptions(uncapped!, plan)).toEqual({ codec: 'auto', downtimeBudgetMs: 50, verify: false, autoConverge: 'on' });
    expect(engineOptions(capped!, plan)).toEqual({ codec: 'auto', downtimeBudgetMs: 50, verify: false, autoConverge: 'on', maxBandwidthBytesPerSec: 1.25e8 });
    const plain = parseBenchArgs(['--workload', 'hotset', '--dirty-rate', '50MB/s', '--downtime-budget', '300ms']);
    const options = engineOptions(expandMatrix(plain.axes)[0]!, plain);
    expect(options).not.toHaveProperty('maxBandwidthBytesPerSec');
    expect(options).not.toHaveProperty('autoConverge');
    expect(options).not.toHaveProperty('switchover');
    expect(options).not.toHaveProperty('delta');
  });

  it('runs each delta mode of a setting side by side, passes each to the engine and names it in the cell', () => {
    const plan = parseBenchArgs(['--workload', 'hotset', '--dirty-rate', '200MB/s', '--downtime-budget', '300ms', '--link', '1Gbit/s', '--delta', 'auto, on,off,on']);
    expect(plan.axes.delta).toEqual(['auto', 'on', 'off']);
    const cells = expandMatrix(plan.axes);
    expect(cells.map((c) => c.delta)).toEqual(['auto', 'on', 'off']);
    expect(engineOptions(cells[1]!, plan)).toEqual({ codec: 'auto', downtimeBudgetMs: 300, verify: false, maxBandwidthBytesPerSec: 1.25e8, delta: 'on' });
    expect(describeCell(cells[2]!)).toBe('256 MiB hotset 200 MB/s, budget 300 ms, auto, link 1 Gbit/s, auto-converge default, delta off');
    expect(describeCell(expandMatrix(parseBenchArgs(['--workload', 'idle', '--downtime-budget', '300ms']).axes)[0]!)).not.toMatch(/delta/);
    expect(parseBenchArgs([]).axes.delta).toEqual([null]);
    expect(parseBenchArgs(['--full']).axes.delta).toEqual([null]);
    expect(() => parseBenchArgs(['--delta', 'on,sometimes'])).toThrow(/--delta "sometimes" is not one of auto, on, off/);
    expect(() => parseBenchArgs(['--delta', 'on,'])).toThrow(/--delta "on," has an empty item/);
  });

  it('runs both switchover policies of a setting side by side, and passes each to the engine', () => {
    const plan = parseBenchArgs(['--workload', 'hotset', '--dirty-rate', '400MB/s', '--downtime-budget', '50ms,300ms', '--switchover', 'best,first-fit']);
    const cells = expandMatrix(plan.axes);
    expect(cells.map((c) => [c.downtimeBudgetMs, c.switchover])).toEqual([
      [50, 'best'],
      [50, 'first-fit'],
      [300, 'best'],
      [300, 'first-fit'],
    ]);
    expect(engineOptions(cells[1]!, plan)).toEqual({ codec: 'auto', downtimeBudgetMs: 50, verify: false, switchover: 'first-fit' });
    expect(parseBenchArgs(['--full']).axes.switchover).toEqual([null]);
    expect(() => parseBenchArgs(['--switchover', 'best,late'])).toThrow(/--switchover "late" is not one of best, first-fit/);
  });
});

describe('statistics', () => {
  it('median, min and max', () => {
    expect(median([])).toBeUndefined();
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(spread([5, undefined, 1, 9, Number.NaN])).toEqual({ median: 5, min: 1, max: 9, n: 3 });
    expect(spread([undefined])).toBeUndefined();
  });

  it('a prediction is accurate within 30% of the measured downtime or 5 ms, whichever is larger', () => {
    expect(predictionWithinTolerance(10, 8)).toBe(true); // 2 ms off, under 5 ms
    expect(predictionWithinTolerance(14, 8)).toBe(false); // 6 ms off
    expect(predictionWithinTolerance(130, 100)).toBe(true); // 30 ms off, 30% of 100 ms
    expect(predictionWithinTolerance(131, 100)).toBe(false);
    expect(predictionWithinTolerance(69, 100)).toBe(false); // too optimistic counts as much as too pessimistic
  });

  const cell = (over: Partial<BenchCell>): BenchCell => ({
    index: 1,
    memoryBytes: 256 * MiB,
    workload: 'hotset',
    dirtyRateBytesPerSec: 100e6,
    downtimeBudgetMs: 50,
    codec: 'lz4',
    linkBytesPerSec: null,
    autoConverge: null,
    switchover: null,
    delta: null,
    ...over,
  });
  const ok = (run: number, downtimeMs: number, predictedDowntimeMs: number, extra: Partial<BenchRun> = {}): BenchRun => ({
    run,
    outcome: 'completed',
    downtimeMs,
    predictedDowntimeMs,
    downtimeUpperBoundMs: downtimeMs + 1,
    totalMs: 1000 * run,
    bytesRaw: 100 * MiB,
    bytesWire: 50 * MiB,
    rounds: 3,
    throughputBytesPerSec: 500e6,
    wireBytesPerSec: 250e6,
    ...extra,
  });

  function synthetic(): CellResult[] {
    const a = cell({ index: 1, downtimeBudgetMs: 50 });
    const aRuns = [ok(1, 40, 45), ok(2, 60, 30), ok(3, 45, 46, { maxThrottlePercent: 20 })];
    const b = cell({ index: 2, downtimeBudgetMs: 300, dirtyRateBytesPerSec: 400e6 });
    const bRuns: BenchRun[] = [ok(1, 200, 100), { run: 2, outcome: 'failed', error: { code: 'ERR_CONNECTION_CLOSED', message: 'cut' } }];
    const c = cell({ index: 3, workload: 'idle', dirtyRateBytesPerSec: 0 });
    const cRuns: BenchRun[] = [{ run: 1, outcome: 'cancelled', error: { code: 'ERR_CANCELLED', message: 'timeout' } }];
    return [
      { cell: a, runs: aRuns, stats: cellStats(a, aRuns, 1e9), rawLinkBytesPerSec: 1e9, notes: [] },
      { cell: b, runs: bRuns, stats: cellStats(b, bRuns, 2e9), rawLinkBytesPerSec: 2e9, notes: ['a note'] },
      { cell: c, runs: cRuns, stats: cellStats(c, cRuns), notes: [] },
    ];
  }

  it('per cell: median and range over completed runs, budget and prediction counts, failures by code', () => {
    const [a, b, c] = synthetic();
    expect(a!.stats).toMatchObject({
      completed: 3,
      failed: 0,
      withinBudget: 2,
      predicted: 3,
      predictionAccurate: 2,
      medianPredictionAccurate: true, // medians 45 and 45, though one run missed by 30 ms
      downtimeMs: { median: 45, min: 40, max: 60, n: 3 },
      predictedDowntimeMs: { median: 45, min: 30, max: 46, n: 3 },
      totalMs: { median: 2000, min: 1000, max: 3000, n: 3 },
      maxThrottlePercent: { median: 20, min: 20, max: 20, n: 1 },
      throughputVsLink: { median: 0.5, n: 3 },
      wireVsLink: { median: 0.25, n: 3 },
    });
    expect(b!.stats).toMatchObject({ completed: 1, failed: 1, errors: { ERR_CONNECTION_CLOSED: 1 }, withinBudget: 1, predictionAccurate: 0, medianPredictionAccurate: false });
    expect(c!.stats).toMatchObject({ completed: 0, failed: 1, errors: { ERR_CANCELLED: 1 } });
    expect(c!.stats.downtimeMs).toBeUndefined();
    expect(c!.stats.medianPredictionAccurate).toBeUndefined();
    expect(c!.stats.throughputVsLink).toBeUndefined();
  });

  it('over the matrix: percentages of completed runs, failures kept, the baseline spread', () => {
    const s = summarize(synthetic());
    expect(s).toMatchObject({
      cells: 3,
      runs: 6,
      completed: 4,
      failed: 2,
      failures: { ERR_CONNECTION_CLOSED: 1, ERR_CANCELLED: 1 },
      withinBudget: 3,
      withinBudgetPercent: 75,
      predicted: 4,
      predictionAccurate: 2,
      predictionAccuratePercent: 50,
      cellsPredicted: 2,
      cellsPredictionAccurate: 1,
      rawLinkBytesPerSec: { median: 1.5e9, min: 1e9, max: 2e9, n: 2 },
    });
    // predicted - measured: +5, -30, +1, -100 -> median of -30 and +1.
    expect(s.medianPredictionErrorMs).toBe(-14.5);
    // 0.5, 0.5, 0.5 against 1 GB/s and 0.25 against 2 GB/s.
    expect(s.medianThroughputVsLink).toBe(0.5);
    const empty = summarize([]);
    expect(empty).toMatchObject({ cells: 0, runs: 0, withinBudgetPercent: null, predictionAccuratePercent: null, rawLinkBytesPerSec: null });
  });

  it('a cell whose frames outran its link cap says the cap was not enforced', () => {
    const capped = cell({ linkBytesPerSec: 1.25e8 });
    const fast = cellResult(capped, [ok(1, 10, 10, { rawLinkBytesPerSec: 1e9, wireBytesPerSec: 5e8 })]);
    expect(fast.rawLinkBytesPerSec).toBe(1e9);
    expect(fast.notes.join()).toMatch(/4\.00 x the 1 Gbit\/s cap: the cap was not enforced/);
    const honoured = cellResult(capped, [ok(1, 10, 10, { rawLinkBytesPerSec: 1e9, wireBytesPerSec: 1.2e8 })]);
    expect(honoured.notes).toEqual([]);
  });

  it('a run is read from its report, failures with their code', () => {
    const report = {
      migrationId: 'm1',
      outcome: 'completed',
      guestRunningOn: 'target',
      startedAt: '',
      domain: { name: 'g', kind: 'sim', memoryBytes: 64 * MiB, vcpus: 1 },
      target: 'ws://127.0.0.1:1',
      codec: 'lz4',
      memoryBytes: 64 * MiB,
      downtimeMs: 12.5,
      predictedDowntimeMs: 10,
      downtimeUpperBoundMs: 13,
      totalMs: 400,
      bytesRaw: 3000,
      bytesWire: 1500,
      maxThrottlePercent: 30,
      rounds: [
        { round: 0, stopAndCopy: false, pages: 1, zeroPages: 0, bytesRaw: 2000, bytesWire: 1000, durationMs: 100, dirtyRateBytesPerSec: 5e6, bandwidthBytesPerSec: 0 },
        { round: 1, stopAndCopy: true, pages: 1, zeroPages: 0, bytesRaw: 1000, bytesWire: 500, durationMs: 50, dirtyRateBytesPerSec: 0, bandwidthBytesPerSec: 0 },
      ],
      verified: false,
    } as unknown as MigrationReport;
    expect(runFromReport(2, report)).toEqual({
      run: 2,
      outcome: 'completed',
      migrationId: 'm1',
      downtimeMs: 12.5,
      predictedDowntimeMs: 10,
      downtimeUpperBoundMs: 13,
      totalMs: 400,
      bytesRaw: 3000,
      bytesWire: 1500,
      rounds: 2,
      maxThrottlePercent: 30,
      throughputBytesPerSec: 20000,
      wireBytesPerSec: 10000,
      firstPassDirtyRateBytesPerSec: 5e6,
      roundLog: report.rounds,
    });
    // The log is a copy: the results do not change if the report is reused.
    expect(runFromReport(2, report).roundLog![0]).not.toBe(report.rounds[0]);
    const failed = runFromReport(1, { ...report, outcome: 'failed', downtimeMs: undefined, error: { code: 'ERR_TIMEOUT', message: 'slow' } } as MigrationReport);
    expect(failed).toMatchObject({ outcome: 'failed', error: { code: 'ERR_TIMEOUT', message: 'slow' } });
    expect(failed).not.toHaveProperty('downtimeMs');
    // Whether deltas ran is kept with the run, as the report says it.
    const delta = { mode: 'auto' as const, on: false, why: 'cache-too-small' as const, cacheBytes: 0, batches: 0, pages: 0, bytesRaw: 0, wholePages: 0 };
    expect(runFromReport(1, { ...report, delta } as MigrationReport).delta).toEqual(delta);
  });

  it('tables and charts cover every cell, with measured and predicted side by side', () => {
    const cells = synthetic();
    const results: BenchResults = {
      tool: 'livemig bench',
      command: 'livemig bench',
      startedAt: '2026-01-01T00:00:00.000Z',
      complete: true,
      machine: {
        cpus: 2,
        cpuModel: 'cpu',
        totalMemoryBytes: 8 * 2 ** 30,
        nodeVersion: 'v20',
        platform: 'linux',
        arch: 'x64',
        nodeOptions: ['--v8-pool-size=1'],
        pages: { transparentHugePages: 'madvise', glibcTunables: '' },
        loadAverageAtStart: [0, 0, 0],
      },
      plan: { ...parseBenchArgs([]), runs: 3 },
      summary: summarize(cells),
      cells,
    };
    const md = resultsMarkdown(results);
    // How guest memory was paged, which the cost of fresh memory depends on.
    expect(md).toContain('transparent huge pages `madvise`, no glibc tunables;');
    expect(resultsMarkdown({ ...results, machine: { ...results.machine, pages: { glibcTunables: 'glibc.malloc.hugetlb=1' } } })).toContain(
      'transparent huge pages `unknown`, GLIBC_TUNABLES=glibc.malloc.hugetlb=1;',
    );
    expect(md).toContain('## 256 MiB, hotset');
    expect(md).toContain('## 256 MiB, idle');
    expect(md).toMatch(/\| 100 MB\/s \| 50 ms \| 45\.0 \(40\.0-60\.0\) \|/);
    expect(md).toContain('1 ok, 1 ERR_CONNECTION_CLOSED');
    expect(md).toMatch(/run 2: failed, ERR_CONNECTION_CLOSED: cut/);
    expect(md).toContain('a note');
    const { downtimeSvg, totalTimeSvg } = benchCharts(results);
    // Panels: hotset and idle. Series: one per budget, measured and predicted for downtime.
    expect(downtimeSvg.match(/<g class="panel"/g)).toHaveLength(2);
    expect(downtimeSvg.match(/<g class="series"/g)).toHaveLength(2 * 2 + 2);
    expect(downtimeSvg).toContain('data-label="budget 50 ms (predicted)"');
    expect(downtimeSvg).toContain('budget 300 ms');
    expect(totalTimeSvg.match(/<g class="series"/g)).toHaveLength(2 + 1);
    expect(downtimeSvg).not.toMatch(/NaN|undefined/);
    expect(md).not.toMatch(/\| switchover \|/);

    // A second policy beside the first: its own series in the charts and a column in the tables.
    const firstFit = cells.map((c) => ({ ...c, cell: { ...c.cell, switchover: 'first-fit' as const } }));
    const both = [...cells.map((c) => ({ ...c, cell: { ...c.cell, switchover: 'best' as const } })), ...firstFit];
    const mixed = { ...results, summary: summarize(both), cells: both };
    const charts = benchCharts(mixed);
    expect(charts.totalTimeSvg.match(/<g class="series"/g)).toHaveLength(2 * (2 + 1));
    expect(charts.downtimeSvg).toContain('data-label="budget 50 ms, switchover first-fit (predicted)"');
    expect(resultsMarkdown(mixed)).toMatch(/\| switchover \|/);
    expect(md).not.toMatch(/\| delta \||deltas on/);

    // Two delta modes: a column for the mode and one for the runs that sent deltas, a series each.
    const sent = (on: boolean): Partial<BenchRun> => ({ delta: { mode: 'auto', on, cacheBytes: on ? MiB : 0, batches: 0, pages: 0, bytesRaw: 0, wholePages: 0 } });
    const autoRuns = [ok(1, 40, 45, sent(true)), ok(2, 60, 30, sent(false))];
    const offRuns = [ok(1, 50, 45, sent(false))];
    const auto = cell({ index: 1, delta: 'auto', linkBytesPerSec: 1.25e8 });
    const off = cell({ index: 2, delta: 'off', linkBytesPerSec: 1.25e8 });
    const deltaCells = [
      { cell: auto, runs: autoRuns, stats: cellStats(auto, autoRuns, 1e9), notes: [] },
      { cell: off, runs: offRuns, stats: cellStats(off, offRuns, 1e9), notes: [] },
    ];
    expect(deltaCells[0]!.stats.deltaOn).toBe(1);
    const deltaResults = { ...results, summary: summarize(deltaCells), cells: deltaCells };
    const deltaMd = resultsMarkdown(deltaResults);
    expect(deltaMd).toMatch(/^\| delta \| downtime ms \|.*\| src mem % RAM \| deltas on \| runs \|$/m);
    expect(deltaMd).toMatch(/^\| auto \| 50\.0 .*\| 1\/2 \| 2 \|$/m);
    expect(deltaMd).toMatch(/^\| off \| 50\.0 .*\| 0\/1 \| 1 \|$/m);
    expect(benchCharts(deltaResults).downtimeSvg).toContain('data-label="budget 50 ms, delta off (predicted)"');
  });
});
