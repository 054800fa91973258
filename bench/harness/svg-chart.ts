/**
 * A small SVG line and scatter chart writer for benchmark results, with no dependency: one or
 * more panels in a grid sharing their axes, each holding series of points (optionally with a
 * low–high range bar), horizontal reference lines, and one legend for the whole figure.
 *
 * The output is a standalone SVG 1.1 document that browsers, `rsvg-convert` and ImageMagick
 * render alike: only basic shapes, paths and text, styled with presentation attributes. Each
 * panel, series and point carries a class (and series their label and point count), so that tests
 * and scripts can read a chart back. A charting library that renders SVG in Node without a DOM
 * or canvas (Vega) would bring dozens of packages to every install of livemig for two charts, and
 * its output does not keep that structure.
 */

import { chooseScale, formatCompact, sharedAxes, type Axis, type AxisScale } from './chart-axes.js';

export type { AxisScale };

/** Marker drawn at each point of a series. */
export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond' | 'none';

/** One point; `low` and `high`, when both are given, draw a range bar through it. */
export interface ChartPoint {
  x: number;
  y: number;
  low?: number;
  high?: number;
}

/** A line through points, drawn in the order given. */
export interface ChartSeries {
  label: string;
  /** Any SVG colour. */
  color: string;
  /** Dashed line (for example, a prediction beside a measurement). @default false */
  dashed?: boolean;
  /** @default 'circle' */
  marker?: MarkerShape;
  /** Markers drawn as outlines. @default false */
  hollow?: boolean;
  /** Draw the connecting line; false gives a scatter. @default true */
  line?: boolean;
  points: ChartPoint[];
}

/** A horizontal line across a panel at `y`, labelled at its right end. */
export interface ReferenceLine {
  y: number;
  label: string;
}

/** One plot of the grid. */
export interface ChartPanel {
  title: string;
  series: ChartSeries[];
  references?: ReferenceLine[];
}

/** One entry of the legend. */
export interface LegendEntry {
  label: string;
  color: string;
  dashed?: boolean;
  marker?: MarkerShape;
  hollow?: boolean;
  /** Show the line sample; false shows the marker alone. @default true */
  line?: boolean;
}

/** What to draw. */
export interface ChartSpec {
  title: string;
  /** A second line under the title. */
  subtitle?: string;
  /** Label of the x axis, with its unit. */
  xLabel: string;
  /** Label of the y axis, with its unit. */
  yLabel: string;
  /** @default 'linear' */
  xScale?: AxisScale;
  /** `auto` picks log when every value is positive and they span a wide range ({@link chooseScale}). @default 'auto' */
  yScale?: 'linear' | 'log' | 'auto';
  /** Tick label of an x value. @default formatCompact */
  xFormat?: (x: number) => string;
  /** Tick label of a y value. @default formatCompact */
  yFormat?: (y: number) => string;
  panels: ChartPanel[];
  /** @default one entry per distinct series label, in order of first appearance */
  legend?: LegendEntry[];
  /** Panels per row. @default 2, or fewer if there are fewer panels */
  columns?: number;
  /** Spread the series of a category axis a little sideways so that markers and range bars do not hide each other. @default false */
  dodge?: boolean;
  /** Width of one panel in pixels, axes included. @default DEFAULT_PANEL_WIDTH_PX */
  panelWidthPx?: number;
  /** Height of one panel in pixels, axes included. @default DEFAULT_PANEL_HEIGHT_PX */
  panelHeightPx?: number;
}

/** @see ChartSpec.panelWidthPx */
export const DEFAULT_PANEL_WIDTH_PX = 460;

/** @see ChartSpec.panelHeightPx */
export const DEFAULT_PANEL_HEIGHT_PX = 320;

/** Ten colours that stay distinct on white and for most colour-blind readers (Tableau 10). */
export const PALETTE: readonly string[] = Object.freeze([
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#59a14f',
  '#b07aa1',
  '#76b7b2',
  '#9c755f',
  '#ff9da7',
  '#edc948',
  '#bab0ac',
]);

/** Marker shapes in the order series cycle through them once the palette is used up. */
export const MARKERS: readonly MarkerShape[] = Object.freeze(['circle', 'square', 'triangle', 'diamond']);

const FONT = 'DejaVu Sans, Helvetica, Arial, sans-serif';
const TITLE_BLOCK_PX = 30;
const SUBTITLE_PX = 18;
const PLOT_MARGIN = { left: 66, right: 14, top: 28, bottom: 50 };
const LEGEND_GAP_PX = 24;
const LEGEND_ROW_PX = 20;
const LEGEND_SAMPLE_PX = 34;
const LEGEND_CHAR_PX = 6.6;
const MARKER_RADIUS_PX = 3.6;
/** Dodged series spread over at most this share of a category step... */
const DODGE_SPREAD_OF_STEP = 0.4;
/** ...and sit at most this far apart, in pixels. */
const DODGE_MAX_GAP_PX = 9;

/** Escapes text for an SVG text node or attribute value. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function num(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function markerSvg(shape: MarkerShape, x: number, y: number, color: string, hollow: boolean, cls: string): string {
  const fill = hollow ? '#ffffff' : color;
  const style = `fill="${fill}" stroke="${color}" stroke-width="1.4"`;
  const r = MARKER_RADIUS_PX;
  switch (shape) {
    case 'none':
      return '';
    case 'circle':
      return `<circle class="${cls}" cx="${num(x)}" cy="${num(y)}" r="${r}" ${style}/>`;
    case 'square':
      return `<rect class="${cls}" x="${num(x - r)}" y="${num(y - r)}" width="${num(2 * r)}" height="${num(2 * r)}" ${style}/>`;
    case 'triangle':
      return `<path class="${cls}" d="M${num(x)},${num(y - r * 1.2)}L${num(x + r * 1.15)},${num(y + r * 0.9)}L${num(x - r * 1.15)},${num(y + r * 0.9)}Z" ${style}/>`;
    case 'diamond':
      return `<path class="${cls}" d="M${num(x)},${num(y - r * 1.3)}L${num(x + r * 1.3)},${num(y)}L${num(x)},${num(y + r * 1.3)}L${num(x - r * 1.3)},${num(y)}Z" ${style}/>`;
  }
}

function lineAttrs(color: string, dashed: boolean): string {
  return `fill="none" stroke="${color}" stroke-width="1.8"${dashed ? ' stroke-dasharray="6 4"' : ''} stroke-linejoin="round"`;
}

/** The shared axes and sizes every panel is drawn with. */
interface Plot {
  xAxis: Axis;
  yAxis: Axis;
  /** Size of the plotting area of a panel, inside its axes, in pixels. */
  width: number;
  height: number;
  /** Pixels between category levels; 0 on a linear or log x axis. */
  categoryStep: number;
  dodge: boolean;
  xLabel: string;
  yLabel: string;
}

/** Renders `spec` as a standalone SVG document. */
export function renderSvgChart(spec: ChartSpec): string {
  const panelW = spec.panelWidthPx ?? DEFAULT_PANEL_WIDTH_PX;
  const panelH = spec.panelHeightPx ?? DEFAULT_PANEL_HEIGHT_PX;
  const panels: ChartPanel[] = spec.panels.length > 0 ? spec.panels : [{ title: '', series: [] }];
  const columns = Math.max(1, Math.min(spec.columns ?? 2, panels.length));
  const rows = Math.ceil(panels.length / columns);
  const plot = plotOf(spec, panels, panelW - PLOT_MARGIN.left - PLOT_MARGIN.right, panelH - PLOT_MARGIN.top - PLOT_MARGIN.bottom);
  const drawable = (p: ChartPoint): boolean => plot.xAxis.accepts(p.x) && plot.yAxis.accepts(p.y);
  const hidden = panels.reduce((sum, panel) => sum + panel.series.reduce((n, s) => n + s.points.filter((p) => !drawable(p)).length, 0), 0);

  const legend = spec.legend ?? defaultLegend(panels);
  const legendW = legend.length > 0 ? LEGEND_GAP_PX + LEGEND_SAMPLE_PX + 8 + Math.max(...legend.map((e) => e.label.length)) * LEGEND_CHAR_PX : 0;
  const headerH = TITLE_BLOCK_PX + (spec.subtitle ? SUBTITLE_PX : 0) + 6;
  const gridW = columns * panelW;
  const legendH = legend.length * LEGEND_ROW_PX + 10;
  const width = Math.ceil(gridW + legendW + 10);
  const height = Math.ceil(headerH + Math.max(rows * panelH, legendH) + 8 + (hidden > 0 ? 16 : 0));

  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" font-size="12">`,
    `<rect class="background" x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text class="title" x="${num(width / 2)}" y="22" text-anchor="middle" font-size="16" font-weight="bold" fill="#222222">${escapeXml(spec.title)}</text>`,
  ];
  if (spec.subtitle) {
    out.push(`<text class="subtitle" x="${num(width / 2)}" y="${TITLE_BLOCK_PX + 10}" text-anchor="middle" font-size="12" fill="#555555">${escapeXml(spec.subtitle)}</text>`);
  }
  panels.forEach((panel, i) => {
    const origin = { x: (i % columns) * panelW + PLOT_MARGIN.left, y: headerH + Math.floor(i / columns) * panelH + PLOT_MARGIN.top };
    out.push(...panelSvg(panel, origin, plot, drawable));
  });
  if (legend.length > 0) out.push(...legendSvg(legend, gridW + LEGEND_GAP_PX, headerH + PLOT_MARGIN.top));
  if (hidden > 0) {
    const why = plot.yAxis.scale === 'log' || plot.xAxis.scale === 'log' ? 'zero or negative values cannot be shown on a log axis' : 'values outside the axes';
    out.push(`<text class="footnote" x="8" y="${height - 6}" font-size="10" fill="#a33333">${hidden} point(s) not drawn: ${why}</text>`);
  }
  out.push('</svg>', '');
  return out.join('\n');
}

/** The axes over every panel's values (points, range bars and reference lines), on a plotting area of `width` x `height`. */
function plotOf(spec: ChartSpec, panels: readonly ChartPanel[], width: number, height: number): Plot {
  const xs: number[] = [];
  const ys: number[] = [];
  for (const panel of panels) {
    for (const s of panel.series) {
      for (const p of s.points) {
        if (!Number.isFinite(p.x) || !Number.isFinite(p.y)) continue;
        xs.push(p.x);
        ys.push(p.y);
        if (p.low !== undefined && p.high !== undefined && Number.isFinite(p.low) && Number.isFinite(p.high)) ys.push(p.low, p.high);
      }
    }
    for (const r of panel.references ?? []) if (Number.isFinite(r.y)) ys.push(r.y);
  }
  const yScale = (spec.yScale ?? 'auto') === 'auto' ? chooseScale(ys) : (spec.yScale as 'linear' | 'log');
  const xScale = spec.xScale ?? 'linear';
  const { xAxis, yAxis } = sharedAxes(xs, ys, { x: xScale, y: yScale }, { width, height }, { x: spec.xFormat ?? formatCompact, y: spec.yFormat ?? formatCompact });
  const categoryStep = xScale === 'category' ? width / Math.max(1, xAxis.ticks.length) : 0;
  return { xAxis, yAxis, width, height, categoryStep, dodge: spec.dodge ?? false, xLabel: spec.xLabel, yLabel: spec.yLabel };
}

/** One panel: frame, grid, ticks, axis labels, reference lines and series, its plotting area's top left at `origin`. */
function panelSvg(panel: ChartPanel, origin: { x: number; y: number }, plot: Plot, drawable: (p: ChartPoint) => boolean): string[] {
  const { x: ox, y: oy } = origin;
  const { width: plotW, height: plotH, xAxis, yAxis } = plot;
  const px = (v: number): number => ox + xAxis.map(v);
  const py = (v: number): number => oy + plotH - yAxis.map(v);
  const out = [
    `<g class="panel" data-title="${escapeXml(panel.title)}">`,
    `<text class="panel-title" x="${num(ox + plotW / 2)}" y="${num(oy - 10)}" text-anchor="middle" font-size="13" font-weight="bold" ` +
      `fill="#333333">${escapeXml(panel.title)}</text>`,
    `<rect x="${num(ox)}" y="${num(oy)}" width="${num(plotW)}" height="${num(plotH)}" fill="#fbfbfb" stroke="#999999" stroke-width="1"/>`,
  ];
  for (const t of yAxis.ticks) {
    const y = py(t.value);
    out.push(
      `<line x1="${num(ox)}" y1="${num(y)}" x2="${num(ox + plotW)}" y2="${num(y)}" stroke="#e2e2e2" stroke-width="1"/>`,
      `<text class="tick" x="${num(ox - 6)}" y="${num(y + 4)}" text-anchor="end" fill="#444444">${escapeXml(t.label)}</text>`,
    );
  }
  for (const t of xAxis.ticks) {
    const x = px(t.value);
    out.push(
      `<line x1="${num(x)}" y1="${num(oy)}" x2="${num(x)}" y2="${num(oy + plotH)}" stroke="#ececec" stroke-width="1"/>`,
      `<text class="tick" x="${num(x)}" y="${num(oy + plotH + 16)}" text-anchor="middle" fill="#444444">${escapeXml(t.label)}</text>`,
    );
  }
  out.push(
    `<text class="axis-label" x="${num(ox + plotW / 2)}" y="${num(oy + plotH + 38)}" text-anchor="middle" fill="#222222">${escapeXml(plot.xLabel)}</text>`,
    `<text class="axis-label" transform="translate(${num(ox - 50)},${num(oy + plotH / 2)}) rotate(-90)" text-anchor="middle" fill="#222222">${escapeXml(plot.yLabel)}</text>`,
  );
  for (const ref of panel.references ?? []) {
    if (!yAxis.accepts(ref.y)) continue;
    const y = py(ref.y);
    out.push(
      `<g class="reference"><line x1="${num(ox)}" y1="${num(y)}" x2="${num(ox + plotW)}" y2="${num(y)}" stroke="#888888" stroke-width="1" stroke-dasharray="2 3"/>`,
      `<text x="${num(ox + plotW - 4)}" y="${num(y - 4)}" text-anchor="end" font-size="10" fill="#666666">${escapeXml(ref.label)}</text></g>`,
    );
  }
  const n = panel.series.length;
  panel.series.forEach((s, k) => {
    // Series of a category axis, spread a little sideways so that they do not hide each other.
    const spreadPx = Math.min(DODGE_SPREAD_OF_STEP * plot.categoryStep, (n - 1) * DODGE_MAX_GAP_PX);
    const dx = plot.dodge && xAxis.scale === 'category' && n > 1 ? (k / (n - 1) - 0.5) * spreadPx : 0;
    out.push(...seriesSvg(s, s.points.filter(drawable), (v) => px(v) + dx, py, yAxis));
  });
  if (panel.series.every((s) => s.points.length === 0)) {
    out.push(`<text class="empty" x="${num(ox + plotW / 2)}" y="${num(oy + plotH / 2)}" text-anchor="middle" fill="#999999">no data</text>`);
  }
  out.push('</g>');
  return out;
}

/** A series: its line, a range bar at each point that has one, and its markers on top. */
function seriesSvg(s: ChartSeries, drawn: readonly ChartPoint[], px: (v: number) => number, py: (v: number) => number, yAxis: Axis): string[] {
  const out = [`<g class="series" data-label="${escapeXml(s.label)}" data-points="${drawn.length}">`];
  if ((s.line ?? true) && drawn.length >= 2) {
    const d = drawn.map((p, j) => `${j === 0 ? 'M' : 'L'}${num(px(p.x))},${num(py(p.y))}`).join('');
    out.push(`<path class="line" d="${d}" ${lineAttrs(s.color, s.dashed ?? false)}/>`);
  }
  for (const p of drawn) {
    if (p.low === undefined || p.high === undefined || !yAxis.accepts(p.low) || !yAxis.accepts(p.high)) continue;
    const x = px(p.x);
    const y1 = py(p.low);
    const y2 = py(p.high);
    out.push(
      // A vertical bar with a short cap at each end.
      `<path class="range" d="M${num(x)},${num(y1)}L${num(x)},${num(y2)}` +
        `M${num(x - 3)},${num(y1)}L${num(x + 3)},${num(y1)}M${num(x - 3)},${num(y2)}L${num(x + 3)},${num(y2)}" ` +
        `stroke="${s.color}" stroke-width="1.2" fill="none" opacity="0.75"/>`,
    );
  }
  for (const p of drawn) out.push(markerSvg(s.marker ?? 'circle', px(p.x), py(p.y), s.color, s.hollow ?? false, 'point'));
  out.push('</g>');
  return out;
}

/** The legend, one row per entry, from (`x`, `y`) down. */
function legendSvg(legend: readonly LegendEntry[], x: number, y: number): string[] {
  const out = ['<g class="legend">'];
  for (const [row, e] of legend.entries()) {
    const mid = y + row * LEGEND_ROW_PX + 6;
    if (e.line ?? true) out.push(`<path d="M${num(x)},${num(mid)}L${num(x + LEGEND_SAMPLE_PX - 6)},${num(mid)}" ${lineAttrs(e.color, e.dashed ?? false)}/>`);
    out.push(markerSvg(e.marker ?? 'circle', x + (LEGEND_SAMPLE_PX - 6) / 2, mid, e.color, e.hollow ?? false, 'legend-marker'));
    out.push(`<text class="legend-label" x="${num(x + LEGEND_SAMPLE_PX + 2)}" y="${num(mid + 4)}" fill="#222222">${escapeXml(e.label)}</text>`);
  }
  out.push('</g>');
  return out;
}

function defaultLegend(panels: readonly ChartPanel[]): LegendEntry[] {
  const seen = new Map<string, LegendEntry>();
  for (const panel of panels) {
    for (const s of panel.series) {
      if (!seen.has(s.label)) seen.set(s.label, { label: s.label, color: s.color, dashed: s.dashed, marker: s.marker, hollow: s.hollow, line: s.line });
    }
  }
  return [...seen.values()];
}
