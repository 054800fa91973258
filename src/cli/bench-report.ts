/**
 * What `livemig bench` shows: labels for people, the summary on the terminal, results.md and the
 * charts.
 */

import { MARKERS, PALETTE, renderSvgChart, type ChartPanel, type ChartSeries, type LegendEntry } from './svg-chart.js';
import { roundTo as round } from '../util/stats.js';
import type { AutoConvergeSetting, BenchCell } from './bench-plan.js';
import type { BenchFiles, BenchResults, BenchRun, BenchSummary, CellResult, CellStats, Spread } from './bench-results.js';

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

export function formatDuration(ms: number): string {
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

export function describeCell(c: BenchCell): string {
  const rate = c.workload === 'idle' ? '' : ` ${rateLabel(c.dirtyRateBytesPerSec)}`;
  return (
    `${sizeLabel(c.memoryBytes)} ${c.workload}${rate}, budget ${c.downtimeBudgetMs} ms, ${c.codec}, ` +
    `link ${linkLabel(c.linkBytesPerSec)}, auto-converge ${autoConvergeLabel(c.autoConverge)}`
  );
}

export function describeRun(r: BenchRun, cell: BenchCell): string {
  if (r.outcome !== 'completed') return `${r.outcome} (${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''})`;
  const miss = r.downtimeMs !== undefined && r.downtimeMs > cell.downtimeBudgetMs ? ' OVER BUDGET' : '';
  const throttle = r.maxThrottlePercent ? `, throttle up to ${r.maxThrottlePercent}%` : '';
  return (
    `downtime ${ms(r.downtimeMs)} ms (predicted ${ms(r.predictedDowntimeMs)})${miss}, total ${formatDuration(r.totalMs ?? 0)}, ` +
    `${r.rounds} rounds${throttle}${r.rawLinkBytesPerSec ? `; raw link ${formatGBps(r.rawLinkBytesPerSec)}` : ''}`
  );
}

export function formatSummary(s: BenchSummary, wallMs: number, files: BenchFiles): string {
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
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${sizeLabel(m.totalMemoryBytes)} memory, Node ${m.nodeVersion} on ${m.platform}/${m.arch}` +
      `${m.nodeOptions === undefined ? '' : ` (${m.nodeOptions.length > 0 ? `options ${m.nodeOptions.join(' ')}` : 'no Node options'})`}; ` +
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
      `${results.plan.warmupMs} ms warm-up) to ` +
      // Results written before --agent existed had a fresh agent for every run.
      `${results.plan.agent === 'shared' ? 'one target agent, shared by all runs,' : 'a fresh target agent'} in a second process. Runs are interleaved (every cell once, ` +
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
