import { describe, expect, it } from 'vitest';
import { expandMatrix, type BenchCell } from '../dist/bench/matrix.js';
import { pairwiseMatrix } from '../dist/bench/pairwise.js';
import { matrixCells, parseBenchArgs } from '../dist/bench/plan.js';

type Axis = keyof Omit<BenchCell, 'index'>;
const AXES: Axis[] = ['memoryBytes', 'workload', 'dirtyRateBytesPerSec', 'linkBytesPerSec', 'autoConverge', 'codec', 'downtimeBudgetMs', 'switchover', 'delta'];

/** Every pair of axis values the cross product holds, written out. */
function pairsIn(cells: readonly BenchCell[]): Set<string> {
  const pairs = new Set<string>();
  for (const c of cells) {
    for (let i = 0; i < AXES.length; i++) {
      for (let j = i + 1; j < AXES.length; j++) {
        const [x, y] = [AXES[i]!, AXES[j]!];
        // An idle guest has no dirty rate to pair with anything.
        if (c.workload === 'idle' && (x === 'dirtyRateBytesPerSec' || y === 'dirtyRateBytesPerSec')) continue;
        pairs.add(`${x}=${String(c[x])} ${y}=${String(c[y])}`);
      }
    }
  }
  return pairs;
}

describe('an all-pairs selection of the matrix', () => {
  it('covers every pair of levels the full matrix holds, in under 1% of its cells', () => {
    const plan = parseBenchArgs(['--full', '--pairwise']);
    const all = expandMatrix(plan.axes);
    const some = matrixCells(plan);
    expect(all).toHaveLength(3159);
    expect(some.length).toBeLessThan(25);
    const wanted = pairsIn(all);
    const got = pairsIn(some);
    for (const pair of wanted) expect(got, pair).toContain(pair);
    // And nothing the full matrix would not run.
    const key = (c: BenchCell): string => AXES.map((a) => String(c[a])).join('|');
    const allKeys = new Set(all.map(key));
    for (const c of some) expect(allKeys, key(c)).toContain(key(c));
    expect(new Set(some.map(key)).size).toBe(some.length);
  });

  it('runs idle guests at rate 0, numbers cells from 1 and gives the same cells every time', () => {
    const plan = parseBenchArgs(['--full', '--pairwise']);
    const a = pairwiseMatrix(plan.axes);
    expect(a.map((c) => c.index)).toEqual(a.map((_, i) => i + 1));
    for (const c of a.filter((c) => c.workload === 'idle')) expect(c.dirtyRateBytesPerSec).toBe(0);
    expect(a.some((c) => c.workload === 'idle')).toBe(true);
    expect(pairwiseMatrix(plan.axes)).toEqual(a);
  });

  it('copes with axes of one level and with an idle-only matrix', () => {
    const one = parseBenchArgs(['--pairwise', '--memory', '256MiB', '--workload', 'hotset', '--dirty-rate', '50MB/s', '--downtime-budget', '300ms']);
    expect(matrixCells(one)).toHaveLength(1);
    const idle = parseBenchArgs(['--pairwise', '--workload', 'idle', '--compress', 'lz4,none', '--downtime-budget', '50ms,300ms,1s']);
    const cells = matrixCells(idle);
    expect(cells).toHaveLength(6); // codec x budget: every pair needs its own cell
    expect(pairsIn(cells)).toEqual(pairsIn(expandMatrix(idle.axes)));
  });

  it('is off unless asked for', () => {
    const plan = parseBenchArgs(['--memory', '256MiB,1GiB', '--compress', 'lz4,none']);
    expect(plan.pairwise).toBe(false);
    expect(matrixCells(plan)).toEqual(expandMatrix(plan.axes));
  });
});
