/**
 * A pre-flight estimate: watch the guest's dirty log for a moment, scan its memory for zero
 * pages, and play the pre-copy rounds forward on paper at a given link speed, so an operator or a
 * pool agent knows the total time, bytes and pause before starting (and whether iterating alone
 * converges at all).
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { SourceDomain } from '../domain/backend.js';
import { InvalidArgumentError } from '../errors.js';
import { roundTo } from '../util/stats.js';
import { dirtyTrackerFor } from './dirty-tracker.js';
import { DEFAULT_SWITCHOVER_OVERHEAD_MS } from './switchover-calibration.js';
import { DEFAULT_BUDGET_HEADROOM, DEFAULT_DOWNTIME_BUDGET_MS, ESTIMATE_MAX_ROUNDS, estimateDowntime } from './policy.js';

/** How long the dirty log is watched by default, in milliseconds. */
export const DEFAULT_SAMPLE_MS = 1000;

/** Samples of the dirty log taken over the sampling time. */
export const DIRTY_SAMPLES = 20;

/** Handshake latency assumed when the caller knows none, in milliseconds (a LAN round trip). */
export const DEFAULT_ASSUMED_LATENCY_MS = 1;

/** Options of {@link estimateMigration}. */
export interface EstimateOptions {
  /** Raw page bytes per second the link and the target absorb. */
  bandwidthBytesPerSec: number;
  /** @default DEFAULT_SAMPLE_MS */
  sampleMs?: number;
  /** @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** @default ESTIMATE_MAX_ROUNDS */
  maxRounds?: number;
  /** Handshake latency, in milliseconds. @default DEFAULT_ASSUMED_LATENCY_MS */
  latencyMs?: number;
  /**
   * What the pause costs beyond the last round and the handshake, in milliseconds: the engine's
   * assumption before its first switchover, unless the caller has learnt better (a pool agent
   * passes its calibration's `overheadMs`). @default DEFAULT_SWITCHOVER_OVERHEAD_MS
   */
  switchoverOverheadMs?: number;
}

/** One predicted round. */
export interface EstimatedRound {
  round: number;
  bytes: number;
  durationMs: number;
}

/** What a migration would do, as predicted before starting it. */
export interface MigrationEstimate {
  memoryBytes: number;
  /** Pages that are all zeros now (sent as page numbers only). */
  zeroPages: number;
  /** Bytes of non-zero pages: what round 0 sends. */
  dataBytes: number;
  sampleMs: number;
  /** Distinct pages dirtied per second at the start of the sample, x page size. */
  dirtyRateBytesPerSec: number;
  /** Distinct pages dirtied over the whole sample, x page size: a floor of the writable working set. */
  workingSetBytes: number;
  /** True if the dirty count was still growing at the end of the sample (the set may be larger). */
  workingSetStillGrowing: boolean;
  bandwidthBytesPerSec: number;
  downtimeBudgetMs: number;
  /** True if iterating alone brings the pause within budget before `maxRounds`. */
  converges: boolean;
  rounds: EstimatedRound[];
  predictedTotalMs: number;
  predictedBytes: number;
  predictedDowntimeMs: number;
  /** One sentence for people. */
  advice: string;
}

/**
 * Watches `domain` for `sampleMs`, then predicts its migration. Reads every page once (about
 * 150 ms per GiB), or a few times for a domain whose dirty pages are found by a scan; the dirty
 * log is enabled for the sample and disabled after it. The guest keeps running.
 */
export async function estimateMigration(domain: SourceDomain, options: EstimateOptions): Promise<MigrationEstimate> {
  const bandwidth = options.bandwidthBytesPerSec;
  if (!(bandwidth > 0)) throw new InvalidArgumentError('estimateMigration needs a positive bandwidthBytesPerSec');
  const sampleMs = options.sampleMs ?? DEFAULT_SAMPLE_MS;
  const budgetMs = options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS;
  const maxRounds = options.maxRounds ?? ESTIMATE_MAX_ROUNDS;
  const latencyMs = options.latencyMs ?? DEFAULT_ASSUMED_LATENCY_MS;
  const overheadMs = options.switchoverOverheadMs ?? DEFAULT_SWITCHOVER_OVERHEAD_MS;
  if (!(overheadMs >= 0) || !Number.isFinite(overheadMs)) throw new InvalidArgumentError('estimateMigration needs a finite switchoverOverheadMs of 0 or more');
  const pageSize = domain.descriptor.pageSize;
  const memoryBytes = domain.descriptor.memoryBytes;

  const curve = await sampleDirtyCurve(domain, sampleMs);

  const zeroPages = await countZeroPages(domain);
  const dataBytes = (domain.pageCount - zeroPages) * pageSize;
  const dirtyPagesAfter = dirtyCurve(curve, domain.pageCount);

  const rounds: EstimatedRound[] = [];
  let bytes = dataBytes;
  let totalMs = 0;
  let sent = 0;
  let downtimeMs = Number.POSITIVE_INFINITY;
  let converges = false;
  for (let round = 0; ; round++) {
    const durationMs = (bytes / bandwidth) * 1000 + latencyMs;
    rounds.push({ round, bytes, durationMs: roundTo(durationMs, 2) });
    totalMs += durationMs;
    sent += bytes;
    const dirty = dirtyPagesAfter(durationMs) * pageSize;
    downtimeMs = estimateDowntime(dirty, { fixedMs: latencyMs, msPerByte: 1000 / bandwidth }, latencyMs, overheadMs).totalMs;
    // As the first-fit switchover does: stop once the pause fits the budget with headroom (the
    // best switchover goes on from there while that pays).
    const fits = downtimeMs <= DEFAULT_BUDGET_HEADROOM * budgetMs;
    if (fits || round + 1 >= maxRounds) {
      converges = fits;
      rounds.push({ round: round + 1, bytes: dirty, durationMs: roundTo(downtimeMs, 2) });
      totalMs += downtimeMs;
      sent += dirty;
      break;
    }
    bytes = dirty;
  }

  const last = curve[curve.length - 1]!;
  const before = curve[curve.length - 3]!;
  const first = curve[1]!;
  const estimate: MigrationEstimate = {
    memoryBytes,
    zeroPages,
    dataBytes,
    sampleMs: roundTo(last[0], 2),
    dirtyRateBytesPerSec: roundTo(((first[1] * pageSize) / first[0]) * 1000, 2),
    workingSetBytes: last[1] * pageSize,
    workingSetStillGrowing: last[1] > before[1],
    bandwidthBytesPerSec: bandwidth,
    downtimeBudgetMs: budgetMs,
    converges,
    rounds,
    predictedTotalMs: roundTo(totalMs, 2),
    predictedBytes: sent,
    predictedDowntimeMs: roundTo(downtimeMs, 2),
    advice: '',
  };
  estimate.advice = adviceFor(estimate, maxRounds);
  return estimate;
}

/**
 * The curve of distinct dirty pages against time since the log was cleared (or memory hashed),
 * sampled DIRTY_SAMPLES times over `sampleMs`, starting at (0, 0).
 */
async function sampleDirtyCurve(domain: SourceDomain, sampleMs: number): Promise<Array<[number, number]>> {
  const tracker = dirtyTrackerFor(domain, new Uint32Array(domain.pageCount));
  const curve: Array<[number, number]> = [[0, 0]];
  try {
    await tracker.start();
    await tracker.rebase();
    const start = performance.now();
    for (let i = 1; i <= DIRTY_SAMPLES; i++) {
      await sleep(sampleMs / DIRTY_SAMPLES);
      const at = performance.now() - start;
      curve.push([at, await tracker.count()]);
    }
  } finally {
    tracker.stop();
  }
  return curve;
}

/** What the estimate means for an operator, in one sentence. */
function adviceFor(e: MigrationEstimate, maxRounds: number): string {
  return e.converges
    ? `converges after ${e.rounds.length - 1} round${e.rounds.length === 2 ? '' : 's'} with a pause of about ${e.predictedDowntimeMs.toFixed(0)} ms`
    : `does not converge within ${e.downtimeBudgetMs} ms by iterating alone (the guest dirties about ` +
        `${(e.dirtyRateBytesPerSec / 1e6).toFixed(0)} MB/s against a ${(e.bandwidthBytesPerSec / 1e6).toFixed(0)} MB/s link): ` +
        `use auto-converge, a larger budget or a faster link; forced to switch over after ${maxRounds} rounds ` +
        `(--max-rounds ${maxRounds}) the pause would be about ` +
        `${e.predictedDowntimeMs.toFixed(0)} ms`;
}

/**
 * Distinct pages dirtied `ms` after a clear: interpolated within the sample, extrapolated at the
 * last sample's slope beyond it (a working set that stopped growing stays flat), at most all
 * of memory.
 */
export function dirtyCurve(curve: ReadonlyArray<readonly [number, number]>, pageCount: number): (ms: number) => number {
  const last = curve[curve.length - 1]!;
  const prev = curve[curve.length - 2]!;
  const tailSlope = last[0] > prev[0] ? Math.max(0, (last[1] - prev[1]) / (last[0] - prev[0])) : 0;
  return (ms) => {
    if (ms >= last[0]) return Math.min(pageCount, last[1] + tailSlope * (ms - last[0]));
    for (let i = 1; i < curve.length; i++) {
      const [t1, d1] = curve[i]!;
      if (ms <= t1) {
        const [t0, d0] = curve[i - 1]!;
        return t1 > t0 ? d0 + ((d1 - d0) * (ms - t0)) / (t1 - t0) : d1;
      }
    }
    return Math.min(pageCount, last[1]);
  };
}

async function countZeroPages(domain: SourceDomain): Promise<number> {
  const pageSize = domain.descriptor.pageSize;
  const chunkPages = 256;
  const chunk = Buffer.alloc(chunkPages * pageSize);
  const pfns = new Uint32Array(chunkPages);
  const zero = Buffer.alloc(pageSize);
  let zeros = 0;
  for (let first = 0; first < domain.pageCount; first += chunkPages) {
    const count = Math.min(chunkPages, domain.pageCount - first);
    for (let i = 0; i < count; i++) pfns[i] = first + i;
    const read = domain.readPages(pfns.subarray(0, count), chunk);
    if (read !== undefined) await read;
    for (let i = 0; i < count; i++) {
      if (chunk.compare(zero, 0, pageSize, i * pageSize, (i + 1) * pageSize) === 0) zeros++;
    }
  }
  return zeros;
}
