/**
 * A guest's next migration played forward on paper, for a pool that must choose which guests to
 * move together: from how fast the guest dirties memory and over how much of it, and how fast
 * the link drains it, the rounds the engine would send, the pause its `best` switchover would end
 * on (the engine's own policy decides, round by round), and the total time, all as if the
 * migration ran alone. Pure functions; the host's figures are kept by `PauseEstimator`.
 *
 * Unlike the pre-flight estimate (`estimateMigration`), nothing here touches the guest: the dirty
 * rate is what the backend declares (the simulated guest knows its workload) or what the guest's
 * last migration from this host measured.
 */

import { IDLE_STEPS_PER_SECOND } from '../domain/sim/config.js';
import { IDLE_PAGES } from '../domain/sim/workload.js';
import { DEFAULT_BUDGET_HEADROOM, DEFAULT_DOWNTIME_BUDGET_MS, ESTIMATE_MAX_ROUNDS, decisionOf, defaultPolicy, estimateDowntime } from '../precopy/policy.js';
import { DEFAULT_ASSUMED_LATENCY_MS } from '../precopy/preflight.js';
import type { MigrationReport } from '../precopy/report.js';
import { PAGE_SIZE_BYTES } from '../protocol/records.js';
import type { PauseEstimate } from './control-types.js';

/** How a guest dirties its memory, as far as its next migration is concerned. */
export interface GuestDirtying {
  /** Page writes per second, in bytes (one write dirties one page). */
  dirtyRateBytesPerSec: number;
  /** The memory those writes fall in, in bytes: the most a round can find dirty. */
  workingSetBytes: number;
  /** Writes walk the set in order (each new until it wraps) rather than at random. */
  sequential?: boolean;
  source: 'declared' | 'measured';
}

/** The link a host migrates over, as far as it knows it. */
export interface LinkFigure {
  /** Raw page bytes per second the link and the target absorb. */
  bytesPerSec: number;
  source: 'measured' | 'configured';
  /** Shortest round trip seen, in milliseconds. @default DEFAULT_ASSUMED_LATENCY_MS */
  roundTripMs?: number;
}

/** What {@link estimatePause} plays forward. */
export interface PauseEstimateInput {
  memoryBytes: number;
  dirtying: GuestDirtying | undefined;
  link: LinkFigure | undefined;
  /** @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** What a pause costs beyond its last round and "go", in milliseconds (the host's calibration). */
  overheadMs: number;
}

/**
 * The dirtying a backend declares from a guest's configuration: the simulated guest's workload,
 * rate and hot set. Undefined for a backend that declares none.
 */
export function declaredDirtying(kind: string, config: Record<string, unknown>, memoryBytes: number, vcpus: number): GuestDirtying | undefined {
  if (kind !== 'sim') return undefined;
  const rate = typeof config.dirtyRateBytesPerSec === 'number' ? config.dirtyRateBytesPerSec : undefined;
  switch (config.workload) {
    case 'idle':
      return { dirtyRateBytesPerSec: IDLE_STEPS_PER_SECOND * vcpus * PAGE_SIZE_BYTES, workingSetBytes: Math.min(memoryBytes, IDLE_PAGES * vcpus * PAGE_SIZE_BYTES), source: 'declared' };
    case 'uniform':
      return rate === undefined ? undefined : { dirtyRateBytesPerSec: rate, workingSetBytes: memoryBytes, source: 'declared' };
    case 'hotset': {
      const hot = typeof config.hotSetBytes === 'number' ? config.hotSetBytes : undefined;
      return rate === undefined || hot === undefined ? undefined : { dirtyRateBytesPerSec: rate, workingSetBytes: Math.max(PAGE_SIZE_BYTES, Math.min(hot, memoryBytes)), source: 'declared' };
    }
    case 'sequential':
      return rate === undefined ? undefined : { dirtyRateBytesPerSec: rate, workingSetBytes: memoryBytes, sequential: true, source: 'declared' };
    default:
      return undefined;
  }
}

/**
 * The dirtying a finished migration measured: the fastest rate of its unthrottled pre-copy rounds
 * (a long round finds fewer distinct pages per second than the guest writes, as it rewrites some),
 * over the largest set a round found dirty. Undefined if it measured no round.
 */
export function measuredDirtying(report: MigrationReport): GuestDirtying | undefined {
  const precopy = report.rounds.filter((r) => !r.stopAndCopy && r.durationMs > 0);
  if (precopy.length === 0) return undefined;
  const free = precopy.filter((r) => r.throttlePercent === 0);
  const rate = Math.max(...(free.length > 0 ? free : precopy).map((r) => r.dirtyRateBytesPerSec));
  const later = report.rounds.filter((r) => r.round > 0).map((r) => r.pages * PAGE_SIZE_BYTES);
  const workingSetBytes = Math.min(report.memoryBytes, Math.max(0, ...later));
  return { dirtyRateBytesPerSec: rate, workingSetBytes, source: 'measured' };
}

/** The link a finished migration measured: raw bytes over the time of its pre-copy rounds. Undefined without one. */
export function measuredLink(report: MigrationReport): LinkFigure | undefined {
  let bytes = 0;
  let ms = 0;
  for (const r of report.rounds) {
    if (r.stopAndCopy) continue;
    bytes += r.bytesRaw;
    ms += r.durationMs;
  }
  if (!(bytes > 0 && ms > 0)) return undefined;
  const link: LinkFigure = { bytesPerSec: (bytes * 1000) / ms, source: 'measured' };
  if (report.switchover !== undefined && Number.isFinite(report.switchover.roundTripMs)) link.roundTripMs = report.switchover.roundTripMs;
  return link;
}

/** Distinct bytes dirtied `ms` after the dirty log was cleared. */
export function dirtiedAfter(d: GuestDirtying, ms: number): number {
  const written = (d.dirtyRateBytesPerSec * ms) / 1000;
  if (d.workingSetBytes <= 0 || written <= 0) return 0;
  // Random writes over a set: each page escapes a write with probability 1 - 1/pages, so the
  // share still clean after `written` bytes of writes decays exponentially.
  const bytes = d.sequential ? Math.min(d.workingSetBytes, written) : d.workingSetBytes * (1 - Math.exp(-written / d.workingSetBytes));
  return Math.ceil(bytes / PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES;
}

/** Plays the migration forward; see the module comment. */
export function estimatePause(input: PauseEstimateInput): PauseEstimate {
  const budgetMs = input.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS;
  const { dirtying, link } = input;
  if (dirtying === undefined) {
    return { state: 'unknown', downtimeBudgetMs: budgetMs, reason: 'no dirty rate: its backend declares none and no migration of it from this host has measured one' };
  }
  if (link === undefined) {
    return {
      state: 'unknown',
      downtimeBudgetMs: budgetMs,
      dirtyRateBytesPerSec: dirtying.dirtyRateBytesPerSec,
      workingSetBytes: dirtying.workingSetBytes,
      dirtySource: dirtying.source,
      reason: 'no link figure: this host has migrated nothing yet and has no bandwidth configured',
    };
  }
  const bw = link.bytesPerSec;
  const rttMs = link.roundTripMs ?? DEFAULT_ASSUMED_LATENCY_MS;
  const pace = { fixedMs: 0, msPerByte: 1000 / bw };
  const policy = defaultPolicy({ switchover: 'best', maxRounds: ESTIMATE_MAX_ROUNDS });
  let bytes = input.memoryBytes;
  let elapsedMs = 0;
  let sent = 0;
  let pauseMs = Number.POSITIVE_INFINITY;
  let fits = false;
  let round = 1;
  for (; ; round++) {
    const roundMs = (bytes * 1000) / bw + rttMs;
    elapsedMs += roundMs;
    sent += bytes;
    const dirty = dirtiedAfter(dirtying, roundMs);
    pauseMs = estimateDowntime(dirty, pace, rttMs, input.overheadMs).totalMs;
    const answer = policy({
      round,
      elapsedMs,
      dirtyPages: dirty / PAGE_SIZE_BYTES,
      dirtyBytes: dirty,
      bandwidthBytesPerSec: bw,
      dirtyRateBytesPerSec: (dirty * 1000) / roundMs,
      expectedDowntimeMs: pauseMs,
      downtimeBudgetMs: budgetMs,
      deadlineInMs: Number.POSITIVE_INFINITY,
      throttlePercent: 0,
      bytesSent: sent,
      memoryBytes: input.memoryBytes,
    });
    if (decisionOf(answer).decision !== 'continue') {
      fits = pauseMs <= DEFAULT_BUDGET_HEADROOM * budgetMs;
      break;
    }
    bytes = dirty;
  }
  const estimate: PauseEstimate = {
    state: 'known',
    bestPauseMs: round2(pauseMs),
    totalMs: round2(elapsedMs + pauseMs),
    rounds: round,
    downtimeBudgetMs: budgetMs,
    fitsBudget: fits,
    dirtyRateBytesPerSec: dirtying.dirtyRateBytesPerSec,
    workingSetBytes: dirtying.workingSetBytes,
    dirtySource: dirtying.source,
    linkBytesPerSec: Math.round(bw),
    linkSource: link.source,
  };
  return estimate;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
