// The `best` switchover decided round by round on a fake clock: figures are made up, time is a
// number the test advances, and nothing runs.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  DEADLINE_MARGIN,
  DEFAULT_BUDGET_HEADROOM,
  decisionOf,
  defaultPolicy,
  EXTRA_PAUSE_MULTIPLE,
  EXTRA_TIME_SHARE,
  MIN_PAUSE_SHRINK_SHARE,
  type PrecopyPolicy,
  type PrecopyStats,
} from '../dist/precopy/policy.js';

const MB = 1e6;
const BUDGET_MS = 300;
const FITS_MS = DEFAULT_BUDGET_HEADROOM * BUDGET_MS; // 255

/** One round as the engine would see it: its expected pause, and what the next round would send. */
interface Step {
  expectedDowntimeMs: number;
  /** Milliseconds the next round would take at 1 MB per ms (what is dirty, in MB). */
  nextRoundMs: number;
  deadlineInMs?: number;
}

/**
 * Asks `policy` once per step, as the engine does after each round, starting `startMs` into the
 * migration; the fake clock then moves on by the round the policy asked for. Returns the
 * decisions up to and including the switchover, and the clock at each.
 */
function drive(policy: PrecopyPolicy, steps: Step[], startMs: number) {
  let now = startMs;
  const out: Array<{ round: number; atMs: number; decision: string; reason?: string; expectedDowntimeMs: number }> = [];
  for (const [i, step] of steps.entries()) {
    const stats: PrecopyStats = {
      round: i + 1,
      elapsedMs: now,
      dirtyPages: Math.ceil((step.nextRoundMs * MB) / 4096),
      dirtyBytes: step.nextRoundMs * MB,
      bandwidthBytesPerSec: 1000 * MB,
      dirtyRateBytesPerSec: 400 * MB,
      expectedDowntimeMs: step.expectedDowntimeMs,
      downtimeBudgetMs: BUDGET_MS,
      deadlineInMs: step.deadlineInMs ?? Number.POSITIVE_INFINITY,
      throttlePercent: 0,
      bytesSent: 1e9,
      memoryBytes: 2 ** 30,
    };
    // Asked first (twice), it says what the decision will be and changes nothing.
    const foreseen = [policy.wouldStop?.(stats), policy.wouldStop?.(stats)];
    const { decision, reason } = decisionOf(policy(stats));
    expect(foreseen).toEqual([decision === 'stop-and-copy', decision === 'stop-and-copy']);
    out.push({ round: i + 1, atMs: now, decision, reason, expectedDowntimeMs: step.expectedDowntimeMs });
    if (decision !== 'continue') break;
    now += step.nextRoundMs;
  }
  return out;
}

/**
 * A pause that shrinks by `ratio` each round toward the fixed costs `floorMs`, the next round
 * costing about the pause itself.
 */
const geometric = (firstMs: number, ratio: number, floorMs: number, count: number): Step[] =>
  Array.from({ length: count }, (_, i) => ({ expectedDowntimeMs: floorMs + firstMs * ratio ** i, nextRoundMs: firstMs * ratio ** i }));

describe('best switchover', () => {
  test('keeps going past the first round that fits while each round cuts the pause by a meaningful share', () => {
    // A hot set the link outruns: 420 -> 300 -> 216 -> 157 -> 116 ms ... (x0.7 a round, plus 20 ms).
    const steps = geometric(400, 0.7, 20, 30);
    const firstFit = drive(defaultPolicy({ switchover: 'first-fit' }), steps, 10_000);
    const best = drive(defaultPolicy({ switchover: 'best' }), steps, 10_000);
    expect(firstFit.at(-1)).toMatchObject({ decision: 'stop-and-copy', reason: 'first-fit', expectedDowntimeMs: 20 + 400 * 0.7 ** 2 });
    // At that same round, best goes on, and switches over on a far shorter pause.
    expect(best[2]).toMatchObject({ decision: 'continue' });
    // It stops near the floor, where a round no longer cuts a tenth: the extra time (rounds of
    // 196 ms and less) is well within a fifth of 10.7 s, so the bound is not why.
    expect(best.at(-1)).toMatchObject({ decision: 'stop-and-copy', reason: 'fits-and-stopped-shrinking' });
    expect(best.at(-1)!.expectedDowntimeMs).toBeLessThan(firstFit.at(-1)!.expectedDowntimeMs / 3);
  });

  test('stops at the local minimum: once a round cut the pause by less than the meaningful share', () => {
    // Shrinking toward a floor of 120 ms: 250, 180, 140, 130 (-7%).
    const floor = [250, 180, 140, 130, 125, 122].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), floor, 10_000);
    expect(run.map((d) => d.decision)).toEqual(['continue', 'continue', 'continue', 'stop-and-copy']);
    expect(run.at(-1)).toMatchObject({ reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 130 });
    expect(1 - 130 / 140).toBeLessThan(MIN_PAUSE_SHRINK_SHARE);
    expect(1 - 140 / 180).toBeGreaterThanOrEqual(MIN_PAUSE_SHRINK_SHARE);
  });

  test('stops when the pause grows again a little after its minimum', () => {
    const bumpy = [200, 150, 160, 90].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), bumpy, 10_000);
    expect(run.at(-1)).toMatchObject({ round: 3, decision: 'stop-and-copy', reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 160 });
  });

  test('after a slow round far above the lowest pause, goes on for one that lands near it again', () => {
    // 150 is the floor; a round that went slow left 190 dirty (more than a tenth above it).
    const spike = [200, 150, 190, 140, 145, 60].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), spike, 10_000);
    expect(run.map((d) => d.decision)).toEqual(['continue', 'continue', 'continue', 'continue', 'stop-and-copy']);
    expect(run.at(-1)).toMatchObject({ reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 145 });
  });

  test('tries one such round, not two in a row: a pause that keeps rising is not coming back', () => {
    const rising = [200, 150, 190, 200, 120].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), rising, 10_000);
    expect(run.map((d) => d.decision)).toEqual(['continue', 'continue', 'continue', 'stop-and-copy']);
    expect(run.at(-1)).toMatchObject({ reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 200 });
  });

  test('at the first fit, a pause that barely shrank says the next round would not pay', () => {
    const hovering = [262, 258, 254, 200].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), hovering, 10_000);
    expect(run.at(-1)).toMatchObject({ round: 3, reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 254 });
  });

  test('stops when another round would take the extra time past the bound: a share of the time until the first fit', () => {
    // First fit 1 s in, at a pause of 80 ms; rounds of 150 ms that each cut the pause by a fifth.
    // The bound is 200 ms (a fifth of 1 s, more than twice 80): one round fits in it, two do not.
    const slow = Array.from({ length: 6 }, (_, i) => ({ expectedDowntimeMs: 80 * 0.8 ** i, nextRoundMs: 150 }));
    const run = drive(defaultPolicy(), slow, 1000);
    expect(EXTRA_TIME_SHARE * 1000).toBe(200);
    expect(EXTRA_PAUSE_MULTIPLE * 80).toBeLessThan(200);
    expect(run.map((d) => d.decision)).toEqual(['continue', 'stop-and-copy']);
    expect(run.at(-1)).toMatchObject({ reason: 'bound-reached', atMs: 1150 });
    // With a larger bound the same rounds go on: it is the bound that stopped them.
    const patient = drive(defaultPolicy({ extraTimeShare: 0.5 }), slow, 1000);
    expect(patient.map((d) => d.decision)).toEqual(['continue', 'continue', 'continue', 'stop-and-copy']);
    expect(patient.at(-1)).toMatchObject({ reason: 'bound-reached', atMs: 1450 });
  });

  test('a large pause at an early first fit may take up to twice that pause in extra rounds', () => {
    // A busy guest on a fast link: first fit 0.7 s in at 190 ms, rounds that each take about the
    // pause they would have been and cut it to a quarter. A fifth of 0.7 s (140 ms) would stop
    // at the first fit; twice the pause (380 ms) lets it reach the floor.
    const busy = [190, 48, 12, 6, 5.8].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: ms }));
    const run = drive(defaultPolicy(), busy, 700);
    expect(EXTRA_TIME_SHARE * 700).toBeLessThan(190);
    expect(run.map((d) => d.reason ?? d.decision)).toEqual(['continue', 'continue', 'continue', 'continue', 'fits-and-stopped-shrinking']);
    expect(run.at(-1)).toMatchObject({ expectedDowntimeMs: 5.8, atMs: 956 });
    // Without the pause's share of the bound, the share of the time alone stops it at once.
    const hasty = drive(defaultPolicy({ extraPauseMultiple: 0 }), busy, 700);
    expect(hasty.map((d) => d.reason ?? d.decision)).toEqual(['bound-reached']);
    // And the pause's share is a bound too: rounds that do not shrink fast enough meet it.
    const sluggish = [190, 140, 100, 70, 50, 35].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: 150 }));
    const slow = drive(defaultPolicy(), sluggish, 700);
    expect(slow.map((d) => d.reason ?? d.decision)).toEqual(['continue', 'continue', 'bound-reached']);
    expect(slow.at(-1)).toMatchObject({ atMs: 1000 });
  });

  test('starts no round that would come near a deadline', () => {
    const step = { expectedDowntimeMs: 200, nextRoundMs: 150 };
    const room = drive(defaultPolicy(), [{ ...step, deadlineInMs: DEADLINE_MARGIN * 150 + 1 }, { expectedDowntimeMs: 100, nextRoundMs: 100, deadlineInMs: 1 }], 10_000);
    expect(room.map((d) => d.reason ?? d.decision)).toEqual(['continue', 'deadline-near']);
    const near = drive(defaultPolicy(), [{ ...step, deadlineInMs: DEADLINE_MARGIN * 150 }], 10_000);
    expect(near[0]).toMatchObject({ decision: 'stop-and-copy', reason: 'deadline-near' });
  });

  test('never switches over on a pause over the budget: one that grows back past it after fitting iterates on', () => {
    const relapse = [200, 170, 290, 280, 150, 140].map((ms) => ({ expectedDowntimeMs: ms, nextRoundMs: 50 }));
    const run = drive(defaultPolicy(), relapse, 10_000);
    expect(run.map((d) => d.decision)).toEqual(['continue', 'continue', 'continue', 'continue', 'continue', 'stop-and-copy']);
    expect(run.at(-1)).toMatchObject({ reason: 'fits-and-stopped-shrinking', expectedDowntimeMs: 140 });
  });

  test('a policy asked for round 1 again starts afresh', () => {
    const policy = defaultPolicy();
    const slow = Array.from({ length: 4 }, (_, i) => ({ expectedDowntimeMs: 80 * 0.8 ** i, nextRoundMs: 150 }));
    expect(drive(policy, slow, 1000).at(-1)).toMatchObject({ reason: 'bound-reached' });
    // The next migration's first fit is 1 s into it, not 1 s into the first one.
    expect(drive(policy, slow, 1000).map((d) => d.decision)).toEqual(['continue', 'stop-and-copy']);
  });

  test('whatever the rounds, it stops only on a pause that fits, and goes on only while it pays, within the bound and clear of deadlines', () => {
    const round = fc.record({
      expectedDowntimeMs: fc.oneof(fc.double({ min: 0, max: 1000, noNaN: true }), fc.constant(Number.POSITIVE_INFINITY)),
      nextRoundMs: fc.double({ min: 0, max: 2000, noNaN: true }),
      deadlineInMs: fc.oneof(fc.double({ min: 0, max: 20_000, noNaN: true }), fc.constant(Number.POSITIVE_INFINITY)),
    });
    fc.assert(
      fc.property(fc.array(round, { minLength: 1, maxLength: 40 }), fc.double({ min: 1, max: 60_000, noNaN: true }), (steps, startMs) => {
        const run = drive(defaultPolicy(), steps, startMs);
        const fit = run.find((d) => d.expectedDowntimeMs <= FITS_MS);
        const fittedAt = fit?.atMs;
        for (const [i, d] of run.entries()) {
          const step = steps[i]!;
          if (d.decision === 'stop-and-copy') {
            // Nothing dirty is the only exception, and nextRoundMs 0 is what makes it.
            if (d.reason !== 'nothing-dirty') expect(d.expectedDowntimeMs).toBeLessThanOrEqual(FITS_MS);
            else expect(step.nextRoundMs).toBe(0);
          }
          if (d.decision === 'continue' && d.expectedDowntimeMs <= FITS_MS) {
            expect(d.atMs - fittedAt! + step.nextRoundMs).toBeLessThanOrEqual(Math.max(EXTRA_TIME_SHARE * fittedAt!, EXTRA_PAUSE_MULTIPLE * fit!.expectedDowntimeMs));
            expect(DEADLINE_MARGIN * step.nextRoundMs).toBeLessThan(step.deadlineInMs ?? Number.POSITIVE_INFINITY);
            // Still shrinking, or far above the lowest pause so far.
            const previous = run[i - 1]?.expectedDowntimeMs ?? Number.POSITIVE_INFINITY;
            const lowest = Math.min(...run.slice(0, i).map((e) => e.expectedDowntimeMs));
            const shrinking = (e: (typeof run)[number], before: number) => e.expectedDowntimeMs <= (1 - MIN_PAUSE_SHRINK_SHARE) * before;
            if (!shrinking(d, previous)) {
              expect((1 - MIN_PAUSE_SHRINK_SHARE) * d.expectedDowntimeMs).toBeGreaterThan(lowest);
              // Not two such rounds in a row once it fits.
              const before = run[i - 1];
              if (before && before.expectedDowntimeMs <= FITS_MS) expect(shrinking(before, run[i - 2]?.expectedDowntimeMs ?? Number.POSITIVE_INFINITY)).toBe(true);
            }
          }
          expect(d.decision).not.toBe('abort');
        }
      }),
      { numRuns: 2000 },
    );
  });
});
