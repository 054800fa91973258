/**
 * downtime.svg and total-time.svg: against the requested dirty rate, one panel per memory size
 * and workload (and auto-converge setting when it varies), one colour per budget/codec/link/
 * switchover/delta combination. Downtime shows the measured median (solid, filled markers, min-max bars) beside
 * the engine's prediction (dashed, hollow markers), with each budget as a dotted line.
 */

import { AXIS_VALUE, formatGBps, groupBy, varyingAxes, type AxisName } from './labels.js';
import type { BenchCell } from './matrix.js';
import type { BenchResults, CellResult, CellStats, Spread } from './results.js';
import { MARKERS, PALETTE, renderSvgChart, type ChartPanel, type ChartSeries, type LegendEntry, type MarkerShape } from './svg-chart.js';

/** The two charts of a run, as SVG documents. */
export function benchCharts(results: BenchResults): { downtimeSvg: string; totalTimeSvg: string } {
  const { downtimePanels, totalPanels, legend } = chartPanels(results.cells);
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
      ...legend,
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
    legend,
  });
  return { downtimeSvg, totalTimeSvg };
}

/** The panels of both charts and the legend of their colours. */
function chartPanels(cells: readonly CellResult[]): { downtimePanels: ChartPanel[]; totalPanels: ChartPanel[]; legend: LegendEntry[] } {
  const all = cells.map((c) => c.cell);
  const panelAxes: AxisName[] = ['memory', 'workload', ...varyingAxes(all, ['auto-converge'])];
  // The budget always names a series (the dotted budget lines refer to it); codec, link,
  // switchover policy and delta mode only when they vary.
  const seriesAxes: AxisName[] = ['budget', ...varyingAxes(all, ['compress', 'link', 'switchover', 'delta'])];
  const named: readonly AxisName[] = ['budget', 'link', 'switchover', 'delta'];
  const seriesKey = (c: BenchCell): string => seriesAxes.map((a) => (named.includes(a) ? `${a} ${AXIS_VALUE[a](c)}` : AXIS_VALUE[a](c))).join(', ');
  const panelTitle = (c: BenchCell): string =>
    panelAxes.map((a) => (a === 'auto-converge' ? `auto-converge ${AXIS_VALUE[a](c)}` : AXIS_VALUE[a](c))).join(', ');
  const keys = [...new Set(all.map(seriesKey))];
  const style = new Map<string, { color: string; marker: MarkerShape }>(
    keys.map((k, i) => [k, { color: PALETTE[i % PALETTE.length]!, marker: MARKERS[Math.floor(i / PALETTE.length) % MARKERS.length]! }]),
  );

  const downtimePanels: ChartPanel[] = [];
  const totalPanels: ChartPanel[] = [];
  for (const [title, panelCells] of groupBy(cells, (c) => panelTitle(c.cell))) {
    const down: ChartSeries[] = [];
    const total: ChartSeries[] = [];
    for (const [key, series] of groupBy(panelCells, (c) => seriesKey(c.cell))) {
      const { color, marker } = style.get(key)!;
      const sorted = [...series].sort((a, b) => a.cell.dirtyRateBytesPerSec - b.cell.dirtyRateBytesPerSec);
      down.push({ label: key, color, marker, points: pointsOf(sorted, (s) => s.downtimeMs) });
      down.push({ label: `${key} (predicted)`, color, marker, dashed: true, hollow: true, points: pointsOf(sorted, (s) => s.predictedDowntimeMs) });
      total.push({ label: key, color, marker, points: pointsOf(sorted, (s) => s.totalMs) });
    }
    const budgets = [...new Set(panelCells.map((c) => c.cell.downtimeBudgetMs))].sort((a, b) => a - b);
    downtimePanels.push({ title, series: down, references: budgets.map((b) => ({ y: b, label: `budget ${b} ms` })) });
    totalPanels.push({ title, series: total });
  }
  const legend = keys.map((k) => ({ label: k, ...style.get(k)! }));
  return { downtimePanels, totalPanels, legend };
}

/** A cell's median against its dirty rate, with its min-max range; cells without the figure are left out. */
function pointsOf(cells: readonly CellResult[], pick: (s: CellStats) => Spread | undefined): ChartSeries['points'] {
  return cells.flatMap((c) => {
    const s = pick(c.stats);
    return s ? [{ x: c.cell.dirtyRateBytesPerSec, y: s.median, low: s.min, high: s.max }] : [];
  });
}
