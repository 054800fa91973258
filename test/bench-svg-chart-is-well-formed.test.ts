// The benchmark's dependency-free SVG chart writer: well-formed documents, the right series and points, log
// scales, and empty input.
import { describe, expect, it } from 'vitest';
import { chooseScale, formatCompact } from '../dist/bench/chart-axes.js';
import { escapeXml, renderSvgChart, type ChartSpec } from '../dist/bench/svg-chart.js';

/** Checks XML well-formedness closely enough for the writer's output: balanced tags, quoted attributes, escaped text, one root. */
function assertWellFormed(xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    const text = body.slice(i, lt === -1 ? body.length : lt);
    // Text may hold only known entities and no markup characters.
    expect(text.replace(/&(amp|lt|gt|quot|apos);/g, '')).not.toMatch(/[<&]/);
    if (lt === -1) break;
    const gt = body.indexOf('>', lt);
    expect(gt).toBeGreaterThan(lt);
    const tag = body.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      expect(stack.pop()).toBe(tag.slice(1).trim());
    } else {
      const m = /^([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
      expect(m, `malformed tag <${tag}>`).not.toBeNull();
      const attrs = m![2]!.match(/[\w:-]+(?==)/g) ?? [];
      expect(new Set(attrs).size).toBe(attrs.length);
      if (stack.length === 0) roots++;
      if (m![3] !== '/') stack.push(m![1]!);
    }
    i = gt + 1;
  }
  expect(stack).toEqual([]);
  expect(roots).toBe(1);
  expect(xml).not.toMatch(/NaN|Infinity|undefined/);
}

const count = (svg: string, needle: RegExp): number => (svg.match(needle) ?? []).length;

function spec(overrides: Partial<ChartSpec> = {}): ChartSpec {
  return {
    title: 'Downtime',
    xLabel: 'dirty rate (MB/s)',
    yLabel: 'downtime (ms)',
    panels: [
      {
        title: '256 MiB, hotset',
        series: [
          { label: 'budget 50 ms', color: '#4e79a7', points: [{ x: 0, y: 10 }, { x: 50, y: 20, low: 15, high: 30 }, { x: 200, y: 40 }] },
          { label: 'budget 50 ms (predicted)', color: '#4e79a7', dashed: true, hollow: true, points: [{ x: 0, y: 12 }, { x: 50, y: 18 }] },
        ],
        references: [{ y: 50, label: 'budget 50 ms' }],
      },
      {
        title: '1 GiB, hotset',
        series: [{ label: 'budget 50 ms', color: '#4e79a7', marker: 'square', points: [{ x: 0, y: 11 }] }],
      },
    ],
    ...overrides,
  };
}

describe('renderSvgChart', () => {
  it('draws one group per series and one marker per point, in well-formed SVG', () => {
    const svg = renderSvgChart(spec());
    assertWellFormed(svg);
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(count(svg, /<g class="panel"/g)).toBe(2);
    expect(count(svg, /<g class="series"/g)).toBe(3);
    expect(count(svg, /class="point"/g)).toBe(3 + 2 + 1);
    expect(svg).toMatch(/data-label="budget 50 ms" data-points="3"/);
    expect(svg).toMatch(/data-label="budget 50 ms \(predicted\)" data-points="2"/);
    // Lines only where a series has two points or more; the range bar only where low and high are given.
    expect(count(svg, /class="line"/g)).toBe(2);
    expect(count(svg, /class="range"/g)).toBe(1);
    expect(svg).toMatch(/stroke-dasharray="6 4"/);
    expect(count(svg, /<g class="reference"/g)).toBe(1);
    // Axis labels and a legend entry per distinct label.
    expect(svg).toContain('dirty rate (MB/s)');
    expect(svg).toContain('downtime (ms)');
    expect(count(svg, /class="legend-label"/g)).toBe(2);
  });

  it('turns the y axis to log scale when values span a wide range, and spaces decades evenly', () => {
    const svg = renderSvgChart({
      title: 'log',
      xLabel: 'x',
      yLabel: 'y (ms)',
      panels: [{ title: 'p', series: [{ label: 's', color: '#000', points: [{ x: 1, y: 1 }, { x: 2, y: 10 }, { x: 3, y: 100 }, { x: 4, y: 1000 }] }] }],
    });
    assertWellFormed(svg);
    const cys = [...svg.matchAll(/<circle class="point" cx="[^"]+" cy="([^"]+)"/g)].map((m) => Number(m[1]));
    expect(cys).toHaveLength(4);
    const gaps = cys.slice(1).map((cy, i) => cys[i]! - cy);
    for (const gap of gaps) expect(gap).toBeCloseTo(gaps[0]!, 0);
    for (const label of ['>1<', '>10<', '>100<', '>1k<']) expect(svg).toContain(label);
  });

  it('keeps a linear axis from zero for a narrow range, and honours an explicit scale', () => {
    const narrow = renderSvgChart(spec({ panels: [{ title: 'p', series: [{ label: 's', color: '#000', points: [{ x: 1, y: 40 }, { x: 2, y: 60 }] }] }] }));
    assertWellFormed(narrow);
    expect(narrow).toMatch(/class="tick"[^>]*>0</);
    const forced = renderSvgChart(spec({ yScale: 'log' }));
    assertWellFormed(forced);
    expect(chooseScale([1, 2, 3])).toBe('linear');
    expect(chooseScale([1, 1000])).toBe('log');
    expect(chooseScale([0, 1000])).toBe('linear');
  });

  it('does not draw values a log axis cannot show, and says so', () => {
    const svg = renderSvgChart(spec({ yScale: 'log', panels: [{ title: 'p', series: [{ label: 's', color: '#000', points: [{ x: 1, y: 0 }, { x: 2, y: 5 }, { x: 3, y: 50 }] }] }] }));
    assertWellFormed(svg);
    expect(count(svg, /class="point"/g)).toBe(2);
    expect(svg).toMatch(/1 point\(s\) not drawn/);
  });

  it('handles empty series, empty panels and no panels at all', () => {
    const emptySeries = renderSvgChart(spec({ panels: [{ title: 'nothing yet', series: [{ label: 'none', color: '#000', points: [] }] }] }));
    assertWellFormed(emptySeries);
    expect(emptySeries).toMatch(/data-points="0"/);
    expect(count(emptySeries, /class="point"/g)).toBe(0);
    expect(emptySeries).toContain('no data');
    for (const scale of ['linear', 'log', 'category'] as const) {
      const none = renderSvgChart(spec({ panels: [], xScale: scale }));
      assertWellFormed(none);
      expect(none).toContain('no data');
    }
  });

  it('puts category levels at equal steps in ascending order, and dodges series sideways', () => {
    const svg = renderSvgChart(
      spec({
        xScale: 'category',
        dodge: true,
        xFormat: (x) => `${x} MB/s`,
        panels: [
          {
            title: 'p',
            series: [
              { label: 'a', color: '#111', points: [{ x: 1000, y: 3 }, { x: 0, y: 1 }, { x: 50, y: 2 }] },
              { label: 'b', color: '#222', points: [{ x: 0, y: 1 }] },
            ],
          },
        ],
      }),
    );
    assertWellFormed(svg);
    const ticks = [...svg.matchAll(/class="tick" x="([^"]+)"[^>]*>([^<]*MB\/s)</g)].map((m) => ({ x: Number(m[1]), label: m[2] }));
    expect(ticks.map((t) => t.label)).toEqual(['0 MB/s', '50 MB/s', '1000 MB/s']);
    expect(ticks[1]!.x - ticks[0]!.x).toBeCloseTo(ticks[2]!.x - ticks[1]!.x, 5);
    const at0 = [...svg.matchAll(/<circle class="point" cx="([^"]+)" cy="([^"]+)"/g)].filter((m) => Number(m[1]) < ticks[0]!.x + 20);
    expect(new Set(at0.map((m) => m[1])).size).toBe(2);
  });

  it('escapes text', () => {
    const svg = renderSvgChart(spec({ title: 'a < b & "c"', panels: [{ title: "it's", series: [{ label: '<x>', color: '#000', points: [{ x: 1, y: 1 }] }] }] }));
    assertWellFormed(svg);
    expect(svg).toContain('a &lt; b &amp; &quot;c&quot;');
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&apos;');
  });

  it('formats tick values compactly', () => {
    expect(formatCompact(0)).toBe('0');
    expect(formatCompact(0.5)).toBe('0.5');
    expect(formatCompact(2000)).toBe('2k');
    expect(formatCompact(1234567)).toBe('1.23M');
  });
});
