/**
 * The axes of a chart: how values map to pixels (linear, log or category) and where the ticks go.
 * Every panel of a chart shares the same two axes, so that panels compare at a glance.
 */

/**
 * How an axis maps values to positions. `category` (x only) puts the distinct x values of all
 * panels at equal steps in ascending order, each labelled with its value: right for a handful of
 * matrix levels such as 0, 50 MB/s, 200 MB/s, 1 GB/s, which neither a linear nor a log axis
 * shows well.
 */
export type AxisScale = 'linear' | 'log' | 'category';

/** An axis laid out along `length` pixels. */
export interface Axis {
  /** Value to pixel offset from the axis start, 0..length. */
  map(v: number): number;
  ticks: Array<{ value: number; label: string }>;
  scale: AxisScale;
  /** Whether a value can be drawn on this axis. */
  accepts(v: number): boolean;
}

/** Room left beyond the data at each end of a log axis, as a share of the data's span in decades. */
const LOG_DOMAIN_PAD_SHARE = 0.06;

/** `auto` turns an axis to log scale when its largest value is at least this many times its smallest. */
export const LOG_SCALE_MIN_RATIO = 20;

/** Picks log when every value is positive and max/min reaches {@link LOG_SCALE_MIN_RATIO}. */
export function chooseScale(values: readonly number[]): 'linear' | 'log' {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0 || finite.some((v) => v <= 0)) return 'linear';
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  return max / min >= LOG_SCALE_MIN_RATIO ? 'log' : 'linear';
}

/** `1234567` -> `1.23M`, `0.5` -> `0.5`, `2000` -> `2k`: three significant digits at most. */
export function formatCompact(v: number): string {
  const abs = Math.abs(v);
  const units: Array<[number, string]> = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [size, suffix] of units) {
    if (abs >= size) return `${trimNumber(v / size)}${suffix}`;
  }
  return trimNumber(v);
}

function trimNumber(v: number): string {
  if (v === 0) return '0';
  return String(Number(v.toPrecision(3)));
}

function linearAxis(min: number, max: number, length: number, format: (v: number) => string, includeZero: boolean): Axis {
  let lo = includeZero ? Math.min(0, min) : min;
  let hi = includeZero ? Math.max(0, max) : max;
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= includeZero && lo >= 0 ? 0 : pad;
    hi += pad;
  }
  const step = niceStep((hi - lo) / 5);
  lo = Math.floor(lo / step + 1e-9) * step;
  hi = Math.ceil(hi / step - 1e-9) * step;
  const ticks: Axis['ticks'] = [];
  for (let v = lo; v <= hi + step / 2; v += step) {
    const value = Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12));
    ticks.push({ value, label: format(value) });
  }
  return {
    map: (v) => ((v - lo) / (hi - lo)) * length,
    ticks,
    scale: 'linear',
    accepts: (v) => Number.isFinite(v),
  };
}

function niceStep(rough: number): number {
  if (!(rough > 0)) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const fraction = rough / magnitude;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 2.5 ? 2.5 : fraction <= 5 ? 5 : 10;
  return nice * magnitude;
}

function logAxis(min: number, max: number, length: number, format: (v: number) => string): Axis {
  // A tight domain with a little room at both ends: whole decades would waste up to nine tenths
  // of a decade above the data.
  const span = Math.max(Math.log10(max) - Math.log10(min), 0.3);
  const lo = Math.log10(min) - span * LOG_DOMAIN_PAD_SHARE;
  const hi = Math.log10(max) + span * LOG_DOMAIN_PAD_SHARE;
  const within = (mantissas: number[]): Axis['ticks'] => {
    const ticks: Axis['ticks'] = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of mantissas) {
        const value = Number((m * 10 ** e).toPrecision(12));
        const at = Math.log10(value);
        if (at >= lo - 1e-9 && at <= hi + 1e-9) ticks.push({ value, label: format(value) });
      }
    }
    return ticks;
  };
  // Powers of ten over many decades; 1-2-5 over a few; every integer mantissa over a narrow range.
  let ticks = within(hi - lo > 4 ? [1] : [1, 2, 5]);
  if (ticks.length < 3) ticks = within([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  return {
    map: (v) => ((Math.log10(v) - lo) / (hi - lo)) * length,
    ticks,
    scale: 'log',
    accepts: (v) => Number.isFinite(v) && v > 0,
  };
}

function categoryAxis(values: number[], length: number, format: (v: number) => string): Axis {
  const levels = [...new Set(values)].sort((a, b) => a - b);
  const index = new Map(levels.map((v, i) => [v, i]));
  const step = length / Math.max(1, levels.length);
  return {
    map: (v) => (index.get(v)! + 0.5) * step,
    ticks: levels.map((value) => ({ value, label: format(value) })),
    scale: 'category',
    accepts: (v) => index.has(v),
  };
}


/**
 * The x and y axes shared by every panel, over the values given: `xs`, and `ys` (points, range
 * ends and reference lines). A log axis leaves out values at or below zero; with nothing to show,
 * an axis spans 0 to 1 (1 to 10 on a log scale).
 */
export function sharedAxes(
  xs: readonly number[],
  ys: readonly number[],
  scales: { x: AxisScale; y: 'linear' | 'log' },
  plot: { width: number; height: number },
  formats: { x: (v: number) => string; y: (v: number) => string },
): { xAxis: Axis; yAxis: Axis } {
  const yAxis = valueAxis(ys, scales.y, plot.height, formats.y, true);
  const xAxis = scales.x === 'category' ? categoryAxis([...xs], plot.width, formats.x) : valueAxis(xs, scales.x, plot.width, formats.x, false);
  return { xAxis, yAxis };
}

function valueAxis(values: readonly number[], scale: 'linear' | 'log', length: number, format: (v: number) => string, includeZero: boolean): Axis {
  const drawable = scale === 'log' ? values.filter((v) => v > 0) : values;
  if (drawable.length === 0) return scale === 'log' ? logAxis(1, 10, length, format) : linearAxis(0, 1, length, format, true);
  const min = Math.min(...drawable);
  const max = Math.max(...drawable);
  return scale === 'log' ? logAxis(min, max, length, format) : linearAxis(min, max, length, format, includeZero);
}
