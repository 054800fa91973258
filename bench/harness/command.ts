/**
 * `livemig bench`: a latency benchmark of live migration. It runs a matrix of migrations (guest
 * memory x workload x dirty rate x downtime budget x codec x link cap x auto-converge), several
 * runs per cell, to a target agent in a second process, and reports measured and predicted
 * downtime and total time for each cell, with the raw link between the same two processes as the
 * baseline measured in the same run (absolute speeds drift on a shared machine; ratios drift less).
 *
 * The far end is this same command started as `livemig bench --target-host`: a target agent, as
 * `livemig listen` runs one, plus a sink that swallows raw frames for the baseline. It destroys
 * each guest as soon as it has resumed there, so guests do not pile up. A fresh one is started for
 * every run (with `--agent shared`, one serves them all), and the raw link to it is measured just
 * before each migration.
 *
 * Runs are interleaved: pass 1 runs every cell once, pass 2 again, and so on. Whatever else the
 * machine does meanwhile then spreads over all cells instead of skewing the few that ran while it
 * happened, and an interrupted matrix still covers every cell.
 *
 * Outputs, in `--out DIR`: results.json (every run, per-cell median/min/max, machine), results.md
 * (tables for people), downtime.svg and total-time.svg.
 */

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { asMigrationError, calibrationsByCodec, DEFAULT_CODEC, connectWebSocket, migrate, SimulatedGuest } from 'livemig';
import { missingNodeFlags, missingNodeFlagsNote, nodeOptionsOf } from '#cli/node-flags';
import { terminalProgress } from '#cli/render';
import { exposedGc } from '#util/gc';
import { roundTo as round } from '#util/stats';
import { benchCharts } from './charts.js';
import { describeCell, formatDuration } from './labels.js';
import type { BenchCell } from './matrix.js';
import { BASELINE_WARMUP_BYTES, BENCH_HELP, engineOptions, guestConfig, matrixCells, parseBenchArgs, type BenchPlan } from './plan.js';
import { describeRun, formatSummary, resultsMarkdown } from './report.js';
import { cellResult, runFromReport, summarize, type BenchFiles, type BenchResults, type BenchRun, type MachineInfo } from './results.js';
import { POOL_HOST_FLAG, servePoolHost } from './pool-host.js';
import { FarEnds, measureRawLink, serveTargetHost, TARGET_HOST_FLAG, type TargetHost } from './target-host.js';

/** How often partial results are written while the matrix runs, in milliseconds. */
export const PARTIAL_RESULTS_INTERVAL_MS = 10_000;

/** The kernel's transparent huge page mode, the bracketed word in sysfs; none where unreadable. */
function transparentHugePageMode(): { transparentHugePages?: string } {
  try {
    const mode = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'latin1'))?.[1];
    return mode === undefined ? {} : { transparentHugePages: mode };
  } catch {
    return {};
  }
}

function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemoryBytes: os.totalmem(),
    nodeVersion: process.version,
    platform: os.platform(),
    arch: os.arch(),
    nodeOptions: nodeOptionsOf(),
    pages: { ...transparentHugePageMode(), glibcTunables: process.env.GLIBC_TUNABLES ?? '' },
    loadAverageAtStart: os.loadavg().map((x) => round(x, 2)),
  };
}

/**
 * `livemig bench [flags]`. Resolves with the exit status: 0 once the matrix ran and its outputs
 * are written (failed runs are data, recorded with their codes), 1 if no run completed or the run
 * was interrupted.
 */
export async function runBench(args: string[]): Promise<number> {
  if (args[0] === TARGET_HOST_FLAG && args.length === 1) return serveTargetHost();
  if (args[0] === POOL_HOST_FLAG) return servePoolHost(args.slice(1));
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  const plan = parseBenchArgs(args);
  const cells = matrixCells(plan);
  const started = new Date();
  const outDir = resolve(plan.outDir ?? join('bench', 'results', `latency-${started.toISOString().replace(/[:.]/g, '-')}`));
  mkdirSync(outDir, { recursive: true });
  const files: BenchFiles = {
    json: join(outDir, 'results.json'),
    markdown: join(outDir, 'results.md'),
    downtimeSvg: join(outDir, 'downtime.svg'),
    totalTimeSvg: join(outDir, 'total-time.svg'),
  };
  const { json: _json, outDir: _out, ...planRecord } = plan;
  const results: BenchResults = {
    tool: 'livemig bench',
    command: ['livemig', 'bench', ...args].join(' '),
    startedAt: started.toISOString(),
    complete: false,
    machine: machineInfo(),
    plan: planRecord,
    summary: summarize([]),
    cells: [],
  };
  say(`livemig bench: ${cells.length} cells x ${plan.runs} runs = ${cells.length * plan.runs} migrations; results in ${outDir}`);
  missingNodeFlagsNote('bench', missingNodeFlags()).forEach(say);

  const t0 = performance.now();
  const interrupted = await runMatrix(cells, plan, results, files);
  results.complete = !interrupted;
  results.finishedAt = new Date().toISOString();
  results.machine.loadAverageAtEnd = os.loadavg().map((x) => round(x, 2));
  writeJsonAtomically(files.json, results);
  writeFileSync(files.markdown, resultsMarkdown(results));
  const charts = benchCharts(results);
  writeFileSync(files.downtimeSvg, charts.downtimeSvg);
  writeFileSync(files.totalTimeSvg, charts.totalTimeSvg);

  const wallMs = performance.now() - t0;
  if (plan.json) {
    process.stdout.write(`${JSON.stringify({ ...results.summary, complete: results.complete, wallMs: Math.round(wallMs), outDir, files })}\n`);
  } else {
    process.stdout.write(`${formatSummary(results.summary, wallMs, files)}\n`);
  }
  return results.summary.completed === 0 || !results.complete ? 1 : 0;
}

/** Progress, on stderr. */
function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * Runs every cell `plan.runs` times, pass by pass, into `results.cells` and `results.summary`,
 * rewriting results.json every few seconds. Ctrl-C cancels the run under way and ends the
 * matrix; resolves with whether it did.
 */
async function runMatrix(cells: readonly BenchCell[], plan: BenchPlan, results: BenchResults, files: BenchFiles): Promise<boolean> {
  const interrupt = new AbortController();
  const onSigint = (): void => {
    say('interrupted: finishing with the runs done so far');
    interrupt.abort(new Error('interrupted'));
  };
  process.once('SIGINT', onSigint);
  const farEnds = new FarEnds(plan.agent);
  const t0 = performance.now();
  const runs: BenchRun[][] = cells.map(() => []);
  const total = cells.length * plan.runs;
  let done = 0;
  let lastWrite = performance.now();
  const collect = (): void => {
    results.cells = cells.map((cell, i) => cellResult(cell, runs[i]!));
    results.summary = summarize(results.cells);
  };
  try {
    for (let pass = 1; pass <= plan.runs && !interrupt.signal.aborted; pass++) {
      for (const cell of cells) {
        if (interrupt.signal.aborted) break;
        const eta = done > 0 ? `, about ${formatDuration(((performance.now() - t0) / done) * (total - done))} left` : '';
        say(`[cell ${cell.index}/${cells.length}, run ${pass}/${plan.runs}${eta}] ${describeCell(cell)}`);
        const record = await runWithTarget(cell, plan, pass, farEnds, interrupt.signal);
        runs[cell.index - 1]!.push(record);
        done++;
        say(`  ${describeRun(record, cell)}`);
        // Partial results survive a crash or a kill; rewritten at most every few seconds.
        if (performance.now() - lastWrite > PARTIAL_RESULTS_INTERVAL_MS) {
          collect();
          writeJsonAtomically(files.json, results);
          lastWrite = performance.now();
        }
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
    await farEnds.close();
  }
  collect();
  return interrupt.signal.aborted;
}

function writeJsonAtomically(file: string, value: unknown): void {
  writeFileSync(`${file}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

/** Takes a far end, measures the raw link to it, runs one migration, gives it back. Never throws. */
async function runWithTarget(cell: BenchCell, plan: BenchPlan, run: number, farEnds: FarEnds, interrupt: AbortSignal): Promise<BenchRun> {
  let host: TargetHost;
  try {
    host = await farEnds.acquire();
  } catch (err) {
    return { run, outcome: 'failed', error: asMigrationError(err, 'ERR_CONNECT_FAILED').toJSON() };
  }
  try {
    let rawLinkBytesPerSec: number | undefined;
    try {
      await measureRawLink(host.sinkUrl, BASELINE_WARMUP_BYTES);
      rawLinkBytesPerSec = round(await measureRawLink(host.sinkUrl, plan.baselineBytes), 0);
    } catch {
      // Recorded as a run without a baseline of its own: its ratios use the cell's median link.
    }
    const record = { ...(await runOnce(cell, plan, run, host.url, interrupt)), targetUrl: host.url };
    // The guest is gone but its memory is not until a collection finds it; collect now, between
    // runs, rather than at the next run's collection before its pause, where unmapping a
    // gigabyte took a core from the switchover.
    exposedGc()?.();
    return rawLinkBytesPerSec !== undefined ? { ...record, rawLinkBytesPerSec } : record;
  } finally {
    await farEnds.release(host);
  }
}

/**
 * The pause calibration the benchmark's migrations learn into, one per codec, for the whole run:
 * as a pool agent keeps one, so that each prediction draws on the switchovers before it.
 */
const calibration = calibrationsByCodec();

/** One migration: boot, let the guest run, migrate, clean up. Never throws. */
async function runOnce(cell: BenchCell, plan: BenchPlan, run: number, url: string, interrupt: AbortSignal): Promise<BenchRun> {
  let guest: SimulatedGuest | undefined;
  let onTarget = false;
  const progress = terminalProgress(process.stderr);
  try {
    guest = await SimulatedGuest.boot(guestConfig(cell, plan), `bench-${cell.index}-${run}`);
    await sleep(plan.warmupMs);
    const signal = AbortSignal.any([interrupt, AbortSignal.timeout(plan.runTimeoutMs)]);
    const transport = await connectWebSocket(url);
    const engine = engineOptions(cell, plan);
    const report = await migrate(guest, transport, { ...engine, calibration: calibration(engine.codec ?? DEFAULT_CODEC), targetName: url, signal, onProgress: progress });
    onTarget = report.guestRunningOn === 'target';
    return runFromReport(run, report);
  } catch (err) {
    const error = asMigrationError(err);
    return { run, outcome: 'failed', error: error.toJSON() };
  } finally {
    progress.done();
    // A guest still here (failed, cancelled, or paused after an unclear switchover) ends with its run.
    if (guest && !onTarget) await guest.destroy().catch(() => undefined);
  }
}
