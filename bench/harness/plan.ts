/**
 * What `livemig bench` runs: the levels of each axis and their defaults, the flags that set them,
 * and the cells and engine options they expand to.
 */

import { parseArgs } from 'node:util';
import { DEFAULT_CODEC, DELTA_MODES, InvalidArgumentError, validateSimConfig, WORKLOADS, type CodecChoice, type MigrateOptions, type SimGuestConfig } from 'livemig';
import { parseDuration, parsePositiveDuration, parseInteger, parseRate, parseSize } from '#cli/units';
import { expandMatrix, type AutoConvergeSetting, type DeltaSetting, type SwitchoverSetting, type BenchAxes, type BenchCell } from './matrix.js';
import { pairwiseMatrix } from './pairwise.js';

// ---------------------------------------------------------------------------------------------
// Settings and their defaults

/** Everything a bench run was asked to do. */
export interface BenchPlan {
  axes: BenchAxes;
  /** Runs per cell. @default DEFAULT_BENCH_RUNS */
  runs: number;
  /** How long each guest runs before its migration starts, in milliseconds. @default DEFAULT_BENCH_WARMUP_MS */
  warmupMs: number;
  /** Output folder; undefined picks bench/results/latency-TIMESTAMP under the working folder. */
  outDir: string | undefined;
  json: boolean;
  vcpus: number;
  /** Hot set of the `hotset` workload, in bytes (capped at the guest's memory). @default DEFAULT_BENCH_HOT_SET_BYTES */
  hotSetBytes: number;
  seed: number;
  /** Run an all-pairs selection of the matrix instead of every combination. @default false */
  pairwise: boolean;
  /** Passed to the engine when set. */
  maxRounds: number | undefined;
  /** Let the engine re-read the source memory after the switchover; its cost then counts in totalMs. @default false */
  verify: boolean;
  /** A run still going after this long is cancelled and recorded as failed, in milliseconds. @default DEFAULT_BENCH_RUN_TIMEOUT_MS */
  runTimeoutMs: number;
  /** Bytes sent through the raw link for each baseline measurement. @default BASELINE_BYTES */
  baselineBytes: number;
  /** A fresh far end for each migration, or one for all. @default 'fresh' */
  agent: BenchAgentMode;
}

/**
 * Where the migrations of a matrix go. `fresh`: an agent started for each migration, whose
 * switchover code then runs for the first time, as in a pool agent's first migration and in
 * `livemig demo`. `shared`: one agent for the whole matrix, as a pool's long-lived agents are.
 */
export type BenchAgentMode = 'fresh' | 'shared';

/** The matrix `livemig bench` runs without axis flags: a few minutes on a 2-core machine. */
export const QUICK_AXES: Readonly<BenchAxes> = Object.freeze({
  memoryBytes: [256 * 2 ** 20],
  workloads: ['idle', 'hotset'],
  dirtyRatesBytesPerSec: [0, 50e6, 200e6, 1e9],
  downtimeBudgetsMs: [50, 300],
  codecs: [DEFAULT_CODEC],
  linksBytesPerSec: [null],
  autoConverge: [null],
  switchover: [null],
  delta: [null],
} satisfies BenchAxes);

/** The matrix of `livemig bench --full`: every axis at every level; hours, not minutes. */
export const FULL_AXES: Readonly<BenchAxes> = Object.freeze({
  memoryBytes: [256 * 2 ** 20, 2 ** 30, 4 * 2 ** 30],
  workloads: ['idle', 'uniform', 'hotset', 'sequential'],
  dirtyRatesBytesPerSec: [0, 50e6, 200e6, 1e9],
  downtimeBudgetsMs: [50, 300, 1000],
  codecs: ['auto', 'lz4', 'none'],
  linksBytesPerSec: [null, 1.25e9, 1.25e8],
  autoConverge: ['off', 'on', 'auto'],
  switchover: [null],
  delta: [null],
} satisfies BenchAxes);

/** @see BenchPlan.runs */
export const DEFAULT_BENCH_RUNS = 3;

/** @see BenchPlan.warmupMs */
export const DEFAULT_BENCH_WARMUP_MS = 500;

/** @see BenchPlan.hotSetBytes */
export const DEFAULT_BENCH_HOT_SET_BYTES = 64 * 2 ** 20;

/** @see BenchPlan.runTimeoutMs */
export const DEFAULT_BENCH_RUN_TIMEOUT_MS = 10 * 60_000;

/** @see BenchPlan.baselineBytes */
export const BASELINE_BYTES = 256 * 2 ** 20;

/** Bytes sent before each baseline measurement so that it measures a warm link and warm code. */
export const BASELINE_WARMUP_BYTES = 32 * 2 ** 20;

/** The `livemig bench` flags, for parseArgs. */
export const BENCH_FLAGS = {
  memory: { type: 'string' },
  workload: { type: 'string' },
  'dirty-rate': { type: 'string' },
  'downtime-budget': { type: 'string' },
  compress: { type: 'string' },
  link: { type: 'string' },
  'auto-converge': { type: 'string' },
  switchover: { type: 'string' },
  delta: { type: 'string' },
  runs: { type: 'string' },
  warmup: { type: 'string' },
  out: { type: 'string' },
  full: { type: 'boolean' },
  pairwise: { type: 'boolean' },
  json: { type: 'boolean' },
  vcpus: { type: 'string' },
  'hot-set': { type: 'string' },
  seed: { type: 'string' },
  'max-rounds': { type: 'string' },
  verify: { type: 'boolean' },
  'run-timeout': { type: 'string' },
  agent: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Help text of `livemig bench`. */
export const BENCH_HELP = `usage: livemig bench [flags]

Runs a matrix of live migrations to a target agent in a second process and reports measured and
predicted downtime and total time per cell, against the raw link between the same two processes.
Axis flags take comma lists; every combination is a cell.

Axes (defaults give a matrix of a few minutes; --full runs every level of every axis):
  --memory SIZES             guest memory (default 256MiB; full: 256MiB,1GiB,4GiB)
  --workload KINDS           idle,uniform,hotset,sequential (default idle,hotset)
  --dirty-rate RATES         requested dirty rates (default 0,50MB/s,200MB/s,1GB/s); idle ignores it
  --downtime-budget DURS     downtime budgets (default 50ms,300ms; full: 50ms,300ms,1000ms)
  --compress CODECS          auto,lz4,none (default: the engine's default; full: auto,lz4,none)
  --link RATES               link caps, or none (default none; full: none,10Gbit/s,1Gbit/s)
  --auto-converge MODES      off,on,auto (default: the engine's own default; full: off,on,auto)
  --switchover POLICIES      best,first-fit (default: the engine's own default, also with --full)
  --delta MODES              auto,on,off: pages sent again as deltas (default: the engine's own
                             default, also with --full); deltas need a --link cap to pay
  --full                     the full matrix; axis flags given beside it still win
  --pairwise                 instead of every combination, a few cells in which every level of
                             each axis meets every level of every other axis at least once
                             (--full --pairwise: about 20 cells instead of 2106)
Runs:
  --runs N                   runs per cell; medians and min-max ranges over them (default ${DEFAULT_BENCH_RUNS})
  --warmup DUR               guest run time before each migration (default ${DEFAULT_BENCH_WARMUP_MS}ms)
  --vcpus N                  vCPUs per guest (default 1)
  --hot-set SIZE             hot set of the hotset workload (default 64MiB, at most the memory)
  --seed N                   seed of every guest (default 1)
  --max-rounds N             passed to the engine (default: the engine's)
  --verify                   let the engine re-read the source memory after the switchover
                             (its cost then counts in the total time)
  --run-timeout DUR          cancel a run still going after this long (default 10min)
  --agent fresh|shared       fresh: a new agent for each migration, which then takes its first
                             migration (default); shared: one agent for all, as a pool's are
Output:
  --out DIR                  where results go (default bench/results/latency-TIMESTAMP)
  --json                     print only the final JSON summary on stdout
Progress goes to stderr.
`;

// ---------------------------------------------------------------------------------------------
// Flags and the matrix

type BenchValues = ReturnType<typeof parseBenchFlagValues>;

function parseBenchFlagValues(args: string[]) {
  try {
    return parseArgs({ args, options: BENCH_FLAGS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** Splits a comma list, trims each item, refuses empty items, and drops repeats. */
function list<T>(text: string, flag: string, parse: (item: string) => T): T[] {
  const items = text.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new InvalidArgumentError(`${flag} "${text}" has an empty item; give a comma list such as ${flag} a,b`);
  const values: T[] = [];
  const seen = new Set<string>();
  for (const item of items) {
    const value = parse(item);
    const key = JSON.stringify(value);
    if (!seen.has(key)) {
      seen.add(key);
      values.push(value);
    }
  }
  return values;
}

function oneOf<T extends string>(allowed: readonly T[], flag: string): (item: string) => T {
  return (item) => {
    if (!(allowed as readonly string[]).includes(item)) throw new InvalidArgumentError(`${flag} "${item}" is not one of ${allowed.join(', ')}`);
    return item as T;
  };
}

/**
 * Reads `livemig bench` flags into a plan. Throws InvalidArgumentError (exit status 2) naming the
 * flag and the value at fault.
 */
export function parseBenchArgs(args: string[]): BenchPlan {
  const v: BenchValues = parseBenchFlagValues(args);
  const base = v.full ? FULL_AXES : QUICK_AXES;
  const axes: BenchAxes = {
    memoryBytes: v.memory !== undefined ? list(v.memory, '--memory', (s) => parseSize(s, '--memory')) : [...base.memoryBytes],
    workloads: v.workload !== undefined ? list(v.workload, '--workload', oneOf(WORKLOADS, '--workload')) : [...base.workloads],
    dirtyRatesBytesPerSec:
      v['dirty-rate'] !== undefined ? list(v['dirty-rate'], '--dirty-rate', (s) => parseRate(s, '--dirty-rate')) : [...base.dirtyRatesBytesPerSec],
    downtimeBudgetsMs:
      v['downtime-budget'] !== undefined
        ? list(v['downtime-budget'], '--downtime-budget', (s) => {
            const ms = parseDuration(s, '--downtime-budget');
            if (!(ms > 0)) throw new InvalidArgumentError(`--downtime-budget "${s}" must be more than 0`);
            return ms;
          })
        : [...base.downtimeBudgetsMs],
    codecs: v.compress !== undefined ? list(v.compress, '--compress', oneOf<CodecChoice>(['auto', 'lz4', 'none'], '--compress')) : [...base.codecs],
    linksBytesPerSec:
      v.link !== undefined
        ? list(v.link, '--link', (s) => {
            if (s.toLowerCase() === 'none') return null;
            const rate = parseRate(s, '--link');
            if (!(rate > 0)) throw new InvalidArgumentError(`--link "${s}" must be a rate above 0, or none for no cap`);
            return rate;
          })
        : [...base.linksBytesPerSec],
    autoConverge:
      v['auto-converge'] !== undefined
        ? list(v['auto-converge'], '--auto-converge', oneOf<AutoConvergeSetting>(['off', 'on', 'auto'], '--auto-converge'))
        : [...base.autoConverge],
    switchover:
      v.switchover !== undefined
        ? list(v.switchover, '--switchover', oneOf<SwitchoverSetting>(['best', 'first-fit'], '--switchover'))
        : [...base.switchover],
    delta: v.delta !== undefined ? list(v.delta, '--delta', oneOf<DeltaSetting>(DELTA_MODES, '--delta')) : [...base.delta],
  };
  const plan: BenchPlan = {
    axes,
    runs: v.runs !== undefined ? parseInteger(v.runs, '--runs', 1, 1000) : DEFAULT_BENCH_RUNS,
    warmupMs: v.warmup !== undefined ? parseDuration(v.warmup, '--warmup') : DEFAULT_BENCH_WARMUP_MS,
    outDir: v.out,
    json: v.json ?? false,
    vcpus: v.vcpus !== undefined ? parseInteger(v.vcpus, '--vcpus', 1, 64) : 1,
    hotSetBytes: v['hot-set'] !== undefined ? parseSize(v['hot-set'], '--hot-set') : DEFAULT_BENCH_HOT_SET_BYTES,
    seed: v.seed !== undefined ? parseInteger(v.seed, '--seed', 0, 0xffffffff) : 1,
    pairwise: v.pairwise ?? false,
    maxRounds: v['max-rounds'] !== undefined ? parseInteger(v['max-rounds'], '--max-rounds', 1, 10_000) : undefined,
    verify: v.verify ?? false,
    runTimeoutMs: v['run-timeout'] !== undefined ? parsePositiveDuration(v['run-timeout'], '--run-timeout') : DEFAULT_BENCH_RUN_TIMEOUT_MS,
    baselineBytes: BASELINE_BYTES,
    agent: v.agent !== undefined ? oneOf<BenchAgentMode>(['fresh', 'shared'], '--agent')(v.agent) : 'fresh',
  };
  if (plan.outDir === '') throw new InvalidArgumentError('--out needs a folder');
  // Refuse now what a guest would refuse later, before any cell has run.
  for (const cell of matrixCells(plan)) validateSimConfig(guestConfig(cell, plan));
  return plan;
}

/** The cells a plan runs: every combination of its axes, or an all-pairs selection of them. */
export function matrixCells(plan: Pick<BenchPlan, 'axes' | 'pairwise'>): BenchCell[] {
  return plan.pairwise ? pairwiseMatrix(plan.axes) : expandMatrix(plan.axes);
}

export function guestConfig(cell: BenchCell, plan: BenchPlan): SimGuestConfig {
  return {
    memoryBytes: cell.memoryBytes,
    vcpus: plan.vcpus,
    workload: cell.workload,
    dirtyRateBytesPerSec: cell.dirtyRateBytesPerSec,
    hotSetBytes: Math.min(plan.hotSetBytes, cell.memoryBytes),
    seed: plan.seed,
  };
}

/** The options a cell passes to `migrate()`, besides the signal and progress callback. */
export function engineOptions(cell: BenchCell, plan: BenchPlan): MigrateOptions {
  return {
    codec: cell.codec,
    downtimeBudgetMs: cell.downtimeBudgetMs,
    verify: plan.verify,
    ...(plan.maxRounds !== undefined ? { maxRounds: plan.maxRounds } : {}),
    ...(cell.linkBytesPerSec !== null ? { maxBandwidthBytesPerSec: cell.linkBytesPerSec } : {}),
    ...(cell.autoConverge !== null ? { autoConverge: cell.autoConverge } : {}),
    ...(cell.switchover !== null ? { switchover: cell.switchover } : {}),
    ...(cell.delta !== null ? { delta: cell.delta } : {}),
  };
}
