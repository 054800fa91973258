// `livemig bench` run as a user runs it: a separate process, flags, exit status, files.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { BIN } from './helpers/agent-process.js';
import { atTerminal, FIRST_PASS_SENT_PAGES } from './helpers/at-terminal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function run(args: string[], timeout = 90_000) {
  return spawnSync(process.execPath, [BIN, 'bench', ...args], { encoding: 'utf8', timeout });
}

test('a one-cell bench with --json prints one JSON summary and writes results, tables and charts', () => {
  const out = mkdtempSync(join(tmpdir(), 'livemig-bench-'));
  dirs.push(out);
  const r = run(['--memory', '64MiB', '--workload', 'hotset', '--dirty-rate', '50MB/s', '--downtime-budget', '300ms', '--delta', 'off', '--runs', '1', '--warmup', '100ms', '--json', '--out', out]);
  expect(r.status).toBe(0);
  // Progress goes to stderr; stdout holds the summary and nothing else.
  expect(r.stderr).toMatch(/\[cell 1\/1, run 1\/1\] 64 MiB hotset 50 MB\/s/);
  expect(r.stderr).toMatch(/downtime [0-9.]+ ms \(predicted [0-9.]+\)/);
  expect(r.stdout.trim().split('\n')).toHaveLength(1);
  const summary = JSON.parse(r.stdout);
  expect(summary).toMatchObject({ cells: 1, runs: 1, completed: 1, failed: 0, complete: true, outDir: out });
  expect(summary.withinBudgetPercent).toEqual(expect.any(Number));
  expect(summary.predictionAccuratePercent).toEqual(expect.any(Number));
  expect(summary.rawLinkBytesPerSec.median).toBeGreaterThan(0);
  expect(summary.medianThroughputVsLink).toBeGreaterThan(0);
  for (const file of Object.values(summary.files) as string[]) expect(existsSync(file)).toBe(true);
  expect(summary.files).toEqual({
    json: join(out, 'results.json'),
    markdown: join(out, 'results.md'),
    downtimeSvg: join(out, 'downtime.svg'),
    totalTimeSvg: join(out, 'total-time.svg'),
  });

  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  expect(results).toMatchObject({ tool: 'livemig bench', complete: true, plan: { runs: 1 }, summary: { cells: 1, runs: 1 } });
  expect(results.machine).toMatchObject({ cpus: expect.any(Number), nodeVersion: process.version, totalMemoryBytes: expect.any(Number) });
  expect(results.cells).toHaveLength(1);
  const [cell] = results.cells;
  expect(cell.cell).toMatchObject({ memoryBytes: 64 * 2 ** 20, workload: 'hotset', dirtyRateBytesPerSec: 50e6, downtimeBudgetMs: 300, codec: 'auto', linkBytesPerSec: null, delta: 'off' });
  expect(cell.rawLinkBytesPerSec).toBeGreaterThan(0);
  expect(cell.runs).toHaveLength(1);
  const [first] = cell.runs;
  expect(first.outcome).toBe('completed');
  expect(first.delta).toMatchObject({ mode: 'off', on: false, why: 'not-asked', cacheBytes: 0 });
  expect(cell.stats.deltaOn).toBe(0);
  for (const field of ['downtimeMs', 'predictedDowntimeMs', 'downtimeUpperBoundMs', 'totalMs', 'bytesRaw', 'bytesWire', 'rounds']) {
    expect(first[field], field).toEqual(expect.any(Number));
  }
  for (const stat of ['downtimeMs', 'predictedDowntimeMs', 'totalMs']) {
    expect(cell.stats[stat]).toMatchObject({ median: expect.any(Number), min: expect.any(Number), max: expect.any(Number), n: 1 });
  }
  const md = readFileSync(join(out, 'results.md'), 'utf8');
  expect(md).toMatch(/^# livemig latency benchmark/);
  expect(md).toMatch(/delta off\).*\n\n\|.*\| deltas on \| runs \|\n.*\n\|.*\| 0\/1 \| 1 \|/);
  const svg = readFileSync(join(out, 'downtime.svg'), 'utf8');
  expect(svg).toMatch(/^<\?xml/);
  expect(svg).toContain('data-label="budget 300 ms"');
  expect(svg).toContain('data-label="budget 300 ms (predicted)"');
});

test.each([
  [['--memory', '64MiB,12XB'], /--memory "12XB" has an unknown unit/],
  [['--link', 'fast'], /--link "fast" is not a number/],
  [['--auto-converge', 'sometimes'], /--auto-converge "sometimes" is not one of off, on, auto/],
  [['--delta', 'on,maybe'], /--delta "maybe" is not one of auto, on, off/],
  [['--runs', 'three'], /--runs "three" is not a whole number/],
])('bench %j is refused with a clear error and status 2', (args, message) => {
  const r = run(args as string[]);
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/^livemig: ERR_INVALID_ARGUMENT: /);
  expect(r.stderr).toMatch(message as RegExp);
  expect(r.stdout).toBe('');
});

test('--agent shared sends every run to one agent; by default each run has an agent of its own', () => {
  const targetsOf = (extra: string[]): string[] => {
    const out = mkdtempSync(join(tmpdir(), 'livemig-bench-'));
    dirs.push(out);
    const r = run(['--memory', '64MiB', '--workload', 'idle', '--downtime-budget', '300ms', '--runs', '2', '--warmup', '50ms', '--json', '--out', out, ...extra]);
    expect(r.status, r.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    const runs = results.cells.flatMap((c: { runs: { outcome: string; targetUrl: string }[] }) => c.runs);
    expect(runs.map((x: { outcome: string }) => x.outcome)).toEqual(['completed', 'completed']);
    return runs.map((x: { targetUrl: string }) => x.targetUrl);
  };
  const [a, b] = targetsOf(['--agent', 'shared']);
  expect(a).toMatch(/^ws:\/\/127\.0\.0\.1:\d+/);
  expect(b).toBe(a);
  const [c, d] = targetsOf([]);
  expect(c).toMatch(/^ws:\/\/127\.0\.0\.1:\d+/);
  expect(d).not.toBe(c);
  const refused = run(['--agent', 'pooled']);
  expect(refused.status).toBe(2);
  expect(refused.stderr).toMatch(/--agent "pooled" is not one of fresh, shared/);
}, 120_000);

test('bench --help lists the axes', () => {
  const r = run(['--help']);
  expect(r.status).toBe(0);
  for (const flag of ['--memory', '--workload', '--dirty-rate', '--downtime-budget', '--compress', '--link', '--auto-converge', '--switchover', '--delta', '--runs', '--warmup', '--agent', '--out', '--full', '--json']) {
    expect(r.stdout).toContain(flag);
  }
});

test('Ctrl-C at the terminal cancels the run under way, records it as cancelled and writes what ran', async () => {
  const out = mkdtempSync(join(tmpdir(), 'livemig-bench-'));
  dirs.push(out);
  // A guest that outruns its link with auto-converge off: the run is still migrating when
  // Ctrl-C comes. At a terminal the benchmark shows each migration's progress, and Ctrl-C
  // signals its whole foreground process group: the benchmark and the target host it started.
  const bench = atTerminal(
    ['bench', '--memory', '64MiB', '--workload', 'hotset', '--dirty-rate', '400MB/s', '--link', '100Mbit/s', '--auto-converge', 'off', '--downtime-budget', '300ms', '--runs', '1', '--warmup', '100ms', '--out', out],
  );
  // Past the raw link's measurement and the warm-up: the first pass has sent pages.
  await bench.until(FIRST_PASS_SENT_PAGES, 30_000);
  expect(bench.output).toContain('[cell 1/1, run 1/1]');
  expect(bench.output).toMatch(FIRST_PASS_SENT_PAGES);
  bench.ctrlC();
  expect(await bench.exited).toBe(1);

  expect(bench.output).toContain('interrupted: finishing with the runs done so far');
  const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
  expect(results.complete).toBe(false);
  const [run] = results.cells[0].runs;
  // Cancelled by the benchmark, not cut off by a target host that died under it.
  expect(run).toMatchObject({ outcome: 'cancelled', error: { code: 'ERR_CANCELLED' } });
}, 60_000);
