/**
 * The evacuation benchmark's two charts (bench/evacuate.js), against the window: the evacuation's
 * total time beside the link-bound time and the sum of the single migrations, and each guest's
 * pause against the budget. One panel per guest setting; one colour per labelled run, so that runs
 * of two builds (say, before and after a change) sit side by side.
 */

import { MARKERS, PALETTE, renderSvgChart, type ChartPanel, type ChartSeries, type LegendEntry, type MarkerShape } from './svg-chart.js';
import { median } from '#util/stats';

/** One evacuation of one window, as bench/evacuate.js records it. */
export interface EvacuationEntry {
  totalMs: number;
  rawLinkBytesPerSec: number;
  /** The guests' memory over the raw link, in milliseconds. */
  linkBoundMs: number;
  guestTotalsMs: number[];
  downtimesMs: number[];
}

/** What one run of bench/evacuate.js writes. */
export interface EvacuationResults {
  /** Names the run in the charts' legends (the build, a setting). @default 'this run' */
  label?: string;
  guests: number;
  memoryBytes: number;
  codec: string;
  workload: string;
  dirtyRateBytesPerSec: number;
  budgetMs: number;
  loadAverage: number[];
  windows: Record<string, EvacuationEntry[]>;
  /** The sum of window 1's single migrations, in milliseconds. */
  singlesMs: number;
}

/** The guests of a run, as a panel title. */
export function settingOf(r: EvacuationResults): string {
  const rate = r.dirtyRateBytesPerSec > 0 ? ` ${r.dirtyRateBytesPerSec / 1e6} MB/s` : '';
  return `${r.guests} x ${r.memoryBytes / 2 ** 20} MiB ${r.workload}${rate}, ${r.codec}`;
}

/** Runs of one label and setting as one: their evacuations per window, the median sum of singles. */
function pooled(runs: readonly EvacuationResults[]): EvacuationResults {
  const windows: Record<string, EvacuationEntry[]> = {};
  for (const r of runs) for (const [w, entries] of Object.entries(r.windows)) (windows[w] ??= []).push(...entries);
  return { ...runs[0]!, windows, singlesMs: median(runs.map((r) => r.singlesMs))! };
}

/** A point per window: the median of `pick` over the window's evacuations, with its min-max bar. */
function perWindow(r: EvacuationResults, pick: (e: EvacuationEntry) => number[]): ChartSeries['points'] {
  return Object.entries(r.windows).flatMap(([w, entries]) => {
    const values = entries.flatMap(pick).filter((v) => Number.isFinite(v));
    if (values.length === 0) return [];
    return [{ x: Number(w), y: median(values)!, low: Math.min(...values), high: Math.max(...values) }];
  });
}

/** The time chart and the pause chart of `runs`, as SVG documents; runs of the same label and setting are pooled. */
export function evacuationCharts(runs: readonly EvacuationResults[]): { timeSvg: string; pausesSvg: string } {
  const labels = [...new Set(runs.map((r) => r.label ?? 'this run'))];
  const style = (label: string) => {
    const i = labels.indexOf(label);
    return { color: PALETTE[i % PALETTE.length]!, marker: MARKERS[i % MARKERS.length]! };
  };
  const settings = [...new Set(runs.map(settingOf))];
  const timePanels: ChartPanel[] = [];
  const pausePanels: ChartPanel[] = [];
  for (const setting of settings) {
    const time: ChartSeries[] = [];
    const pauses: ChartSeries[] = [];
    const budgets = new Set<number>();
    const here = runs.filter((run) => settingOf(run) === setting);
    for (const label of labels) {
      const mine = here.filter((run) => (run.label ?? 'this run') === label);
      if (mine.length === 0) continue;
      const r = pooled(mine);
      const { color, marker } = style(label);
      const s = (ms: number) => ms / 1000;
      time.push({ label: `total, ${label}`, color, marker, points: perWindow(r, (e) => [s(e.totalMs)]) });
      time.push({ label: `link-bound, ${label}`, color, marker, dashed: true, hollow: true, points: perWindow(r, (e) => [s(e.linkBoundMs)]) });
      // Flat across the windows: what the same guests took one after another.
      const windows = Object.keys(r.windows).map(Number);
      time.push({ label: `sum of singles, ${label}`, color, marker: 'none', dashed: true, points: windows.map((x) => ({ x, y: s(r.singlesMs) })) });
      pauses.push({ label: `pauses, ${label}`, color, marker, points: perWindow(r, (e) => e.downtimesMs) });
      budgets.add(r.budgetMs);
    }
    timePanels.push({ title: setting, series: time });
    pausePanels.push({ title: setting, series: pauses, references: [...budgets].map((b) => ({ y: b, label: `budget ${b} ms` })) });
  }
  const loads = runs.flatMap((r) => r.loadAverage.slice(0, 1));
  const load = `load average ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}`;
  const common = { xLabel: 'window (migrations at once)', xScale: 'category' as const, xFormat: (x: number) => String(x), dodge: true };
  const legendOf = (kinds: Array<{ suffix: string; dashed?: boolean; hollow?: boolean; marker?: MarkerShape }>): LegendEntry[] =>
    labels.flatMap((label) => kinds.map((k) => ({ label: `${k.suffix}, ${label}`, ...style(label), dashed: k.dashed, hollow: k.hollow, ...(k.marker ? { marker: k.marker } : {}) })));
  const timeSvg = renderSvgChart({
    ...common,
    title: 'Evacuation: total time per window',
    subtitle: `median and range of the evacuations; link-bound: memory / raw link; sum of singles: window 1's migrations added up; ${load}`,
    yLabel: 'time (s)',
    yScale: 'linear',
    yFormat: (y) => String(Number(y.toPrecision(3))),
    panels: timePanels,
    legend: legendOf([{ suffix: 'total' }, { suffix: 'link-bound', dashed: true, hollow: true }, { suffix: 'sum of singles', dashed: true, marker: 'none' }]),
  });
  const pausesSvg = renderSvgChart({
    ...common,
    title: 'Evacuation: the guests\' pauses per window',
    subtitle: `median, bars from the shortest to the longest; dotted: the budget; ${load}`,
    yLabel: 'pause (ms)',
    yFormat: (y) => String(Number(y.toPrecision(3))),
    panels: pausePanels,
    legend: legendOf([{ suffix: 'pauses' }]),
  });
  return { timeSvg, pausesSvg };
}
