/**
 * What `livemig bench` tells people in words: a line per run on the terminal, the summary at the
 * end, and results.md.
 */

import { roundTo as round } from '#util/stats';
import { AXIS_VALUE, describeCell, formatDuration, formatGBps, groupBy, msLabel, sizeLabel, varyingAxes, type AxisName } from './labels.js';
import type { BenchCell } from './matrix.js';
import type { BenchFiles, BenchResults, BenchRun, BenchSummary, CellResult, MachineInfo, Spread } from './results.js';

/** `{ ERR_TIMEOUT: 2 }` -> `2 ERR_TIMEOUT`. */
function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([code, n]) => `${n} ${code}`)
    .join(', ');
}

/** `12 (10-15)`: the median, with the range when the samples differ. */
function spreadText(s: Spread | undefined, format: (x: number) => string): string {
  if (!s) return '-';
  return s.n > 1 && s.min !== s.max ? `${format(s.median)} (${format(s.min)}-${format(s.max)})` : format(s.median);
}

/** `1.52 GB/s median (1.31-1.60 GB/s over 12 measurements)`, or one figure for one measurement. */
function linkSpreadText(s: Spread): string {
  if (s.n === 1) return `${formatGBps(s.median)} (one measurement)`;
  return `${formatGBps(s.median)} median (${(s.min / 1e9).toFixed(2)}-${formatGBps(s.max)} over ${s.n} measurements)`;
}

function percentText(p: number | null): string {
  return p === null ? '-' : `${p}%`;
}

// ---------------------------------------------------------------------------------------------
// The terminal

/** One run on one line: its pause against the prediction and the budget, or why it failed. */
export function describeRun(r: BenchRun, cell: BenchCell): string {
  if (r.outcome !== 'completed') return `${r.outcome} (${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''})`;
  const miss = r.downtimeMs !== undefined && r.downtimeMs > cell.downtimeBudgetMs ? ' OVER BUDGET' : '';
  const throttle = r.maxThrottlePercent ? `, throttle up to ${r.maxThrottlePercent}%` : '';
  return (
    `downtime ${msLabel(r.downtimeMs)} ms (predicted ${msLabel(r.predictedDowntimeMs)})${miss}, total ${formatDuration(r.totalMs ?? 0)}, ` +
    `${r.rounds} rounds${throttle}${r.sourceMemoryShare !== undefined ? `, source memory +${(r.sourceMemoryShare * 100).toFixed(1)}% RAM` : ''}${r.rawLinkBytesPerSec ? `; raw link ${formatGBps(r.rawLinkBytesPerSec)}` : ''}`
  );
}

/** The summary printed when the matrix is done, with where its files went. */
export function formatSummary(s: BenchSummary, wallMs: number, files: BenchFiles): string {
  const fails = countsText(s.failures);
  const link = s.rawLinkBytesPerSec;
  const lines = [
    `livemig bench: ${s.cells} cells, ${s.runs} runs (${s.completed} completed, ${s.failed} failed${fails ? `: ${fails}` : ''}) in ${formatDuration(wallMs)}`,
    `  raw link        ${link ? linkSpreadText(link) : 'not measured'}`,
    `  within budget   ${s.withinBudget} of ${s.completed} completed runs (${percentText(s.withinBudgetPercent)})`,
    `  prediction      ${s.predictionAccurate} of ${s.predicted} within 30% or 5 ms of measured (${percentText(s.predictionAccuratePercent)})` +
      (s.medianPredictionErrorMs !== null ? `; median predicted - measured ${s.medianPredictionErrorMs.toFixed(1)} ms` : ''),
    `                  ${s.cellsPredictionAccurate} of ${s.cellsPredicted} cells with the median prediction within 30% or 5 ms of the median measured`,
    `  source memory   ${s.maxSourceMemoryShare !== null ? `${(s.maxSourceMemoryShare * 100).toFixed(1)}% of guest RAM at most beyond the guest (page hashes, lists, buffers, delta cache; bound 10%)` : '-'}`,
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

/** The results as Markdown: how they were taken, the summary, one table per memory size and workload, then failures. */
export function resultsMarkdown(results: BenchResults): string {
  return [...introMarkdown(results), ...summaryMarkdown(results.summary), ...cellTablesMarkdown(results.cells), ...notesMarkdown(results.cells), 'Charts: [downtime](downtime.svg), [total time](total-time.svg).', ''].join(
    '\n',
  );
}

/** How guest memory was paged, for the machine line. */
function pagesLabel(pages: NonNullable<MachineInfo['pages']>): string {
  const tunables = pages.glibcTunables === '' ? 'no glibc tunables' : `GLIBC_TUNABLES=${pages.glibcTunables}`;
  return `transparent huge pages \`${pages.transparentHugePages ?? 'unknown'}\`, ${tunables}`;
}

function introMarkdown(results: BenchResults): string[] {
  const m = results.machine;
  const plan = results.plan;
  const out = ['# livemig latency benchmark', ''];
  out.push(`\`${results.command}\`, started ${results.startedAt}${results.complete ? '' : ' (interrupted: partial results)'}.`, '');
  out.push(
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${sizeLabel(m.totalMemoryBytes)} memory, Node ${m.nodeVersion} on ${m.platform}/${m.arch}` +
      `${m.nodeOptions === undefined ? '' : ` (${m.nodeOptions.length > 0 ? `options ${m.nodeOptions.join(' ')}` : 'no Node options'})`}; ` +
      `${m.pages === undefined ? '' : `${pagesLabel(m.pages)}; `}` +
      `load average ${m.loadAverageAtStart.join(' / ')} at the start${m.loadAverageAtEnd ? `, ${m.loadAverageAtEnd.join(' / ')} at the end` : ''}.`,
    '',
  );
  if (plan.pairwise) {
    out.push(
      'The cells are an all-pairs selection of the matrix (`--pairwise`): every level of each axis meets every level of ' +
        'every other axis in at least one cell, not every combination.',
      '',
    );
  }
  out.push(
    `Each cell ran ${plan.runs} migration${plan.runs > 1 ? 's' : ''}, each of a fresh guest (${plan.vcpus} vCPU, seed ${plan.seed}, ` +
      `${plan.warmupMs} ms warm-up) to ` +
      // Results written before --agent existed had a fresh agent for every run.
      `${plan.agent === 'shared' ? 'one target agent, shared by all runs,' : 'a fresh target agent'} in a second process. Runs are interleaved (every cell once, ` +
      `then every cell again), so that other load on the machine spreads over all cells. Figures are medians with the ` +
      `min-max range in brackets, over completed runs. Before each run, the raw link is measured between the same two ` +
      `processes: 1 MiB frames through the same transport to a sink.` +
      (plan.verify ? '' : " The engine's post-switchover verification was off, so total time ends when the source copy is destroyed."),
    '',
  );
  return out;
}

function summaryMarkdown(s: BenchSummary): string[] {
  const failures = countsText(s.failures);
  const out = ['## Summary', '', `| | |`, `| --- | --- |`];
  out.push(`| cells | ${s.cells} |`);
  out.push(`| runs | ${s.runs}: ${s.completed} completed, ${s.failed} failed${failures ? ` (${failures})` : ''} |`);
  out.push(`| downtime within budget | ${s.withinBudget} of ${s.completed} completed runs (${percentText(s.withinBudgetPercent)}) |`);
  out.push(`| prediction within 30% or 5 ms | ${s.predictionAccurate} of ${s.predicted} runs (${percentText(s.predictionAccuratePercent)}) |`);
  out.push(`| cell median prediction within 30% or 5 ms of the median measured | ${s.cellsPredictionAccurate} of ${s.cellsPredicted} cells |`);
  out.push(`| median predicted - measured downtime | ${s.medianPredictionErrorMs === null ? '-' : `${s.medianPredictionErrorMs.toFixed(1)} ms`} |`);
  if (s.rawLinkBytesPerSec) out.push(`| raw link | ${linkSpreadText(s.rawLinkBytesPerSec)} |`);
  out.push(`| page data rate / raw link | ${s.medianThroughputVsLink === null ? '-' : `${s.medianThroughputVsLink.toFixed(2)} (median)`} |`);
  out.push('');
  out.push(
    "Columns: *downtime* as the engine measures it (pause to vCPUs running on the target); *predicted*, the engine's estimate " +
      'when it stopped iterating; *upper*, pause until the target\'s "resumed" arrived; *in budget* and *pred. ok*, runs within ' +
      'the budget and predictions within 30% or 5 ms; *data/link* and *wire/link*, page data and frame bytes per second over the ' +
      'rounds against the raw link (data above 1 means compression and zero pages beat the link).',
    '',
  );
  return out;
}

const ROW_AXES: readonly AxisName[] = ['dirty rate', 'budget', 'compress', 'link', 'auto-converge', 'switchover', 'delta'];

const STAT_COLUMNS = ['downtime ms', 'predicted ms', 'upper ms', 'in budget', 'pred. ok', 'total s', 'rounds', 'wire MiB', 'data/link', 'wire/link', 'max throttle %', 'src mem % RAM', 'runs'];

/** Shown before `runs` when the matrix sets a delta mode: of the completed runs, those that sent deltas. */
const DELTA_COLUMN = 'deltas on';

/** The figure columns of a table: {@link STAT_COLUMNS}, with {@link DELTA_COLUMN} when asked for. */
function statColumns(withDelta: boolean): string[] {
  return withDelta ? [...STAT_COLUMNS.slice(0, -1), DELTA_COLUMN, STAT_COLUMNS.at(-1)!] : [...STAT_COLUMNS];
}

/** One table per memory size and workload; a column for each other axis that varies, the rest named in the heading. */
function cellTablesMarkdown(cells: readonly CellResult[]): string[] {
  const rowAxes = varyingAxes(
    cells.map((c) => c.cell),
    ROW_AXES,
  );
  const constant = ROW_AXES.filter((a) => !rowAxes.includes(a));
  // Under `auto` the engine decides per run, so a matrix that sets a mode shows what it decided.
  const withDelta = cells.some((c) => c.cell.delta !== null);
  const out: string[] = [];
  for (const [, group] of groupBy(cells, (c) => `${AXIS_VALUE.memory(c.cell)}, ${AXIS_VALUE.workload(c.cell)}`)) {
    const first = group[0]!.cell;
    const fixed = constant.filter((a) => !(a === 'dirty rate' && first.workload === 'idle')).map((a) => `${a} ${AXIS_VALUE[a](first)}`);
    out.push(`## ${sizeLabel(first.memoryBytes)}, ${first.workload}${fixed.length ? ` (${fixed.join(', ')})` : ''}`, '');
    if (first.workload === 'idle') out.push('The idle workload writes 16 pages 10 times a second whatever the requested dirty rate; it runs at rate 0 only.', '');
    const header = [...rowAxes, ...statColumns(withDelta)];
    out.push(`| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i < rowAxes.length ? '---' : '---:')).join(' | ')} |`);
    for (const c of group) out.push(`| ${[...rowAxes.map((a) => AXIS_VALUE[a](c.cell)), ...statCells(c, withDelta)].join(' | ')} |`);
    out.push('');
  }
  return out;
}

/** A cell's figures in the order of {@link statColumns}. */
function statCells(c: CellResult, withDelta: boolean): string[] {
  const st = c.stats;
  const figures = [
    spreadText(st.downtimeMs, msLabel),
    spreadText(st.predictedDowntimeMs, msLabel),
    spreadText(st.downtimeUpperBoundMs, msLabel),
    st.completed ? `${st.withinBudget}/${st.completed}` : '-',
    st.predicted ? `${st.predictionAccurate}/${st.predicted}` : '-',
    spreadText(st.totalMs, (x) => (x / 1000).toFixed(2)),
    spreadText(st.rounds, (x) => String(round(x, 1))),
    spreadText(st.bytesWire, (x) => (x / 2 ** 20).toFixed(0)),
    spreadText(st.throughputVsLink, (x) => x.toFixed(2)),
    spreadText(st.wireVsLink, (x) => x.toFixed(2)),
    spreadText(st.maxThrottlePercent, (x) => String(round(x, 1))),
    spreadText(st.sourceMemoryShare, (x) => (x * 100).toFixed(1)),
    st.failed > 0 ? `${st.completed} ok, ${countsText(st.errors)}` : `${st.completed}`,
  ];
  // Older results.json files have no count of delta runs.
  if (withDelta) figures.splice(-1, 0, st.completed ? `${st.deltaOn ?? 0}/${st.completed}` : '-');
  return figures;
}

/** Failed runs, forced switchovers and cell notes, if there are any. */
function notesMarkdown(cells: readonly CellResult[]): string[] {
  const failed = cells.flatMap((c) => c.runs.filter((r) => r.outcome !== 'completed').map((r) => ({ c, r })));
  const forced = cells.flatMap((c) => c.runs.filter((r) => r.forcedSwitchover).map((r) => ({ c, r })));
  const notes = cells.flatMap((c) => c.notes.map((n) => ({ c, n })));
  if (failed.length + forced.length + notes.length === 0) return [];
  const out = ['## Failures and notes', ''];
  const where = (c: CellResult): string => `cell ${c.cell.index} (${describeCell(c.cell)})`;
  for (const { c, r } of failed) out.push(`- ${where(c)}, run ${r.run}: ${r.outcome}, ${r.error?.code ?? 'no code'}: ${r.error?.message ?? ''}`);
  for (const { c, r } of forced) out.push(`- ${where(c)}, run ${r.run}: switchover forced by ${r.forcedSwitchover!.code}: ${r.forcedSwitchover!.message}`);
  for (const { c, n } of notes) out.push(`- ${where(c)}: ${n}`);
  out.push('');
  return out;
}
