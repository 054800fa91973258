// The evacuation benchmark's charts: a panel per guest setting, and in it each labelled run's total
// time, link-bound time and sum of singles per window, and a point per window for its pauses, the
// bar spanning the shortest to the longest, under the budget's reference line.
import { expect, test } from 'vitest';
import { evacuationCharts, type EvacuationResults } from '../dist/bench/evacuation-chart.js';

function run(label: string, workload: string, pauses: number[][]): EvacuationResults {
  return {
    label,
    guests: 8,
    memoryBytes: 256 * 2 ** 20,
    codec: 'lz4',
    workload,
    dirtyRateBytesPerSec: workload === 'hotset' ? 20e6 : 0,
    budgetMs: 300,
    loadAverage: [7.5, 6, 5],
    singlesMs: 8000,
    windows: Object.fromEntries(
      [1, 2, 4].map((w, i) => [String(w), [{ totalMs: 8000 - i * 500, rawLinkBytesPerSec: 2e9, linkBoundMs: 1000, guestTotalsMs: [1000], downtimesMs: pauses[i]! }]]),
    ),
  };
}

const series = (svg: string): Array<[string, number]> => [...svg.matchAll(/class="series" data-label="([^"]*)" data-points="(\d+)"/g)].map((m) => [m[1]!, Number(m[2])]);

test('each run and setting is drawn per window, beside its link-bound time and sum of singles, and the budget as a reference', () => {
  const { timeSvg, pausesSvg } = evacuationCharts([
    run('before', 'idle', [[2, 3], [30, 273], [21, 310]]),
    run('after', 'idle', [[3, 4], [5, 34], [9, 26]]),
    run('after', 'hotset', [[5, 7], [9, 17], [46, 107]]),
  ]);
  expect([...timeSvg.matchAll(/class="panel" data-title="([^"]*)"/g)].map((m) => m[1])).toEqual(['8 x 256 MiB idle, lz4', '8 x 256 MiB hotset 20 MB/s, lz4']);
  expect(series(timeSvg)).toEqual([
    ['total, before', 3],
    ['link-bound, before', 3],
    ['sum of singles, before', 3],
    ['total, after', 3],
    ['link-bound, after', 3],
    ['sum of singles, after', 3],
    ['total, after', 3],
    ['link-bound, after', 3],
    ['sum of singles, after', 3],
  ]);
  expect(series(pausesSvg)).toEqual([
    ['pauses, before', 3],
    ['pauses, after', 3],
    ['pauses, after', 3],
  ]);
  expect(pausesSvg.match(/budget 300 ms/g)).toHaveLength(2);
  // Each pause point carries a bar from the shortest pause to the longest; totals come one per window.
  expect(pausesSvg.match(/class="range"/g)).toHaveLength(9);
  expect(pausesSvg).not.toMatch(/NaN|Infinity|undefined/);
  expect(timeSvg).not.toMatch(/NaN|Infinity|undefined/);
});

test('runs of the same label and setting are pooled into one series per chart', () => {
  const { timeSvg, pausesSvg } = evacuationCharts([run('before', 'idle', [[2], [30], [21]]), run('before', 'idle', [[3], [40], [693]])]);
  expect(series(timeSvg)).toEqual([
    ['total, before', 3],
    ['link-bound, before', 3],
    ['sum of singles, before', 3],
  ]);
  expect(series(pausesSvg)).toEqual([['pauses, before', 3]]);
  // Drawn as one run that made both evacuations of each window.
  const both = run('before', 'idle', [[2], [30], [21]]);
  for (const [w, entries] of Object.entries(run('before', 'idle', [[3], [40], [693]]).windows)) both.windows[w]!.push(...entries);
  expect(evacuationCharts([both]).pausesSvg).toBe(pausesSvg);
});
