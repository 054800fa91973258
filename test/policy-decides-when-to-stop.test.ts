// Each pre-copy decision on its own, with made-up figures and a fake clock: no timing involved.
import { describe, expect, test } from 'vitest';
import { decisionOf, defaultPolicy, downtimeBudgetAt, FLOOR_OVER_BUDGET_MS, FLOOR_OVER_BUDGET_ROUNDS, estimateDowntime, paceOfRoundsLike, roundTimeAt } from '../dist/precopy/policy.js';
import { mergeSorted } from '../dist/dirtylog/page-lists.js';
import {
  AUTO_CONVERGE_INITIAL_PERCENT,
  AUTO_CONVERGE_MAX_PERCENT,
  AUTO_CONVERGE_STEP_PERCENT,
  ThrottleController,
} from '../dist/precopy/auto-converge.js';
import { ProgressWatchdog } from '../dist/precopy/progress-watchdog.js';
import { BANDWIDTH_CAP_SLACK_MS, BANDWIDTH_CAP_WINDOW_MS, BandwidthCap } from '../dist/precopy/bandwidth-cap.js';

const base = {
  round: 1,
  elapsedMs: 1000,
  dirtyPages: 1000,
  dirtyBytes: 4096e3,
  bandwidthBytesPerSec: 1e9,
  dirtyRateBytesPerSec: 0,
  expectedDowntimeMs: 0,
  downtimeBudgetMs: 100,
  deadlineInMs: Number.POSITIVE_INFINITY,
  throttlePercent: 0,
  bytesSent: 1e9,
  memoryBytes: 1e9,
};

describe('default policy, first-fit', () => {
  const decide = (policy: ReturnType<typeof defaultPolicy>, stats: typeof base) => decisionOf(policy(stats)).decision;

  test('stops once the expected pause fits the budget in force, with headroom', () => {
    const policy = defaultPolicy({ headroom: 1, switchover: 'first-fit' });
    expect(decide(policy, { ...base, expectedDowntimeMs: 99 })).toBe('stop-and-copy');
    expect(policy({ ...base, expectedDowntimeMs: 100 })).toEqual({ decision: 'stop-and-copy', reason: 'first-fit' });
    expect(decide(policy, { ...base, expectedDowntimeMs: 101 })).toBe('continue');
    expect(decide(policy, { ...base, expectedDowntimeMs: 101, downtimeBudgetMs: 200 })).toBe('stop-and-copy');
    const careful = defaultPolicy({ switchover: 'first-fit' });
    expect(decide(careful, { ...base, expectedDowntimeMs: 85 })).toBe('stop-and-copy');
    expect(decide(careful, { ...base, expectedDowntimeMs: 90 })).toBe('continue');
  });

  test('stops after the last allowed round even if the pause does not fit', () => {
    for (const switchover of ['first-fit', 'best'] as const) {
      const policy = defaultPolicy({ maxRounds: 5, switchover });
      expect(decide(policy, { ...base, round: 4, expectedDowntimeMs: 1e6 })).toBe('continue');
      expect(policy({ ...base, round: 5, expectedDowntimeMs: 1e6 })).toEqual({ decision: 'stop-and-copy', reason: 'max-rounds' });
    }
  });

  test('stops once nothing is dirty, even when the fixed costs alone do not fit', () => {
    for (const switchover of ['first-fit', 'best'] as const) {
      const policy = defaultPolicy({ switchover });
      expect(decide(policy, { ...base, expectedDowntimeMs: 4, downtimeBudgetMs: 2 })).toBe('continue');
      expect(policy({ ...base, round: 2, dirtyPages: 0, dirtyBytes: 0, expectedDowntimeMs: 4, downtimeBudgetMs: 2 })).toEqual({
        decision: 'stop-and-copy',
        reason: 'nothing-dirty',
      });
    }
  });
});

describe('default policy, when finding dirty pages alone overruns the budget', () => {
  // A 1 GiB scan-tracked guest on a busy host: every scan at least 420 ms, the budget 300 ms. The
  // fake clock is `elapsedMs`: a round every `everyMs`.
  const slow = { ...base, downtimeBudgetMs: 300, expectedDowntimeMs: 600, findDirtyFloorMs: 420, finalDowntimeBudgetMs: 300 };
  const answers = (policy: ReturnType<typeof defaultPolicy>, rounds: number, at: (round: number) => Partial<typeof slow> = () => ({}), everyMs = 1000) =>
    Array.from({ length: rounds }, (_, i) => policy({ ...slow, round: i + 1, elapsedMs: everyMs * (i + 1), ...at(i + 1) }));

  test(`gives up after ${FLOOR_OVER_BUDGET_ROUNDS} rounds in a row and ${FLOOR_OVER_BUDGET_MS} ms, well before the stall deadline, saying what the floor is`, () => {
    // Slow rounds: the round count is reached last.
    const everyMs = Math.ceil(FLOOR_OVER_BUDGET_MS / (FLOOR_OVER_BUDGET_ROUNDS - 1));
    const seen = answers(defaultPolicy(), FLOOR_OVER_BUDGET_ROUNDS, () => ({}), everyMs);
    expect(seen.slice(0, -1).every((a) => a === 'continue')).toBe(true);
    const last = decisionOf(seen.at(-1)!);
    expect(last.decision).toBe('abort');
    expect(last.noPauseFits).toMatch(/finding dirty pages takes at least 420 ms per pause, over the 255 ms the pause aims at \(85% of the 300 ms budget\)/);
    // Quick rounds, one a second: the time is reached last, FLOOR_OVER_BUDGET_MS after the first.
    const quick = answers(defaultPolicy(), FLOOR_OVER_BUDGET_MS / 1000 + 1).map((a) => decisionOf(a).decision);
    expect(quick.slice(0, -1).every((d) => d === 'continue')).toBe(true);
    expect(quick.at(-1)).toBe('abort');
  });

  test('a scan that gets under the budget, a floor that fits, or a round limit keep it iterating', () => {
    // One round's scan went fast enough: the count starts again.
    const dipped = answers(defaultPolicy(), FLOOR_OVER_BUDGET_ROUNDS + 2, (r) => (r === 3 ? { findDirtyFloorMs: 200 } : {}), FLOOR_OVER_BUDGET_MS);
    expect(dipped.every((a) => a === 'continue')).toBe(true);
    // Over the budget in force under a ramp, but within the budget it ends at.
    const ramped = answers(defaultPolicy(), 3 * FLOOR_OVER_BUDGET_ROUNDS, () => ({ downtimeBudgetMs: 100, finalDowntimeBudgetMs: 600 }), FLOOR_OVER_BUDGET_MS);
    expect(ramped.every((a) => a === 'continue')).toBe(true);
    // A dirty log finds its pages at no cost.
    const log = answers(defaultPolicy(), 3 * FLOOR_OVER_BUDGET_ROUNDS, () => ({ findDirtyFloorMs: 0 }), FLOOR_OVER_BUDGET_MS);
    expect(log.every((a) => a === 'continue')).toBe(true);
    // A round limit switches over at the limit, as its caller asked.
    const limited = answers(defaultPolicy({ maxRounds: 2 * FLOOR_OVER_BUDGET_ROUNDS }), 2 * FLOOR_OVER_BUDGET_ROUNDS, () => ({}), FLOOR_OVER_BUDGET_MS).map((a) => decisionOf(a).decision);
    expect(limited.at(-1)).toBe('stop-and-copy');
    expect(limited.slice(0, -1).every((d) => d === 'continue')).toBe(true);
  });
});

describe('downtime estimate', () => {
  test('is the last round on the model, half a round trip and the overhead', () => {
    const e = estimateDowntime(100e6, { fixedMs: 4, msPerByte: 1e-6 }, 2, 1);
    expect(e.roundMs).toBeCloseTo(104);
    expect(e.handshakeMs).toBeCloseTo(1);
    expect(e.totalMs).toBeCloseTo(106);
  });
  test('is infinite when nothing has been measured yet and something is dirty', () => {
    expect(estimateDowntime(1, undefined, 1, 1).totalMs).toBe(Number.POSITIVE_INFINITY);
    expect(estimateDowntime(0, undefined, 1, 1).totalMs).toBeCloseTo(1.5);
  });
});

describe('round time model', () => {
  const MB = 1e6;
  const at = (samples: Array<{ bytes: number; ms: number }>, bytes: number) => roundTimeAt(paceOfRoundsLike(samples, bytes)!, bytes);

  test('a last round goes at the pace of the recent rounds of about its size, not of the big ones', () => {
    // Per MB a 188 MB first pass took 1.75 ms, a 59 MB round 1.5 and a 30 MB one 1.1: a line
    // through them puts an 18 MB last round near 1.9 ms per MB; the 30 MB round says 1.1.
    const rounds = [
      { bytes: 30 * MB, ms: 33 },
      { bytes: 59 * MB, ms: 88.5 },
      { bytes: 188 * MB, ms: 329 },
    ];
    expect(at(rounds, 18 * MB)).toBeCloseTo(18 * 1.1, 5);
    // A last round like the 59 MB one: the median of the two like it (30 and 59 MB).
    expect(at(rounds, 45 * MB)).toBeCloseTo(45 * 1.3, 5);
    expect(paceOfRoundsLike(rounds, 18 * MB)!.fixedMs).toBe(0);
  });

  test('keeps the fixed cost of a round for a last round as small as the smallest recent one', () => {
    // Rounds that take 12 ms beyond 2.2 ms per MB, as a 4 GiB guest's did behind a 10 Gbit/s cap.
    const rounds = [24, 49, 105, 225, 500].map((mb) => ({ bytes: mb * MB, ms: 12 + 2.2 * mb }));
    // A 24 MB last round: 64.8 ms, where scaling by the recent rounds' mean rate would say 55.
    const proportionalMs = (24 * MB * rounds.reduce((ms, r) => ms + r.ms, 0)) / rounds.reduce((b, r) => b + r.bytes, 0);
    expect(at(rounds, 24 * MB)).toBeCloseTo(64.8, 5);
    expect(at(rounds, 24 * MB) - proportionalMs).toBeGreaterThan(9);
  });

  test('a last round far smaller than any recent one pays the fixed cost in proportion', () => {
    // Pre-copy rounds of 22 and 174 MB with 10 ms beyond 2.17 ms per MB; a last round of 3.6 MB
    // does not fill the pipeline as they did: 9.4 ms, not 17.8.
    const rounds = [22, 174].map((mb) => ({ bytes: mb * MB, ms: 10 + 2.17 * mb }));
    expect(at(rounds, 3.6 * MB)).toBeCloseTo((3.6 / 22) * (10 + 2.17 * 22), 5);
    expect(at(rounds, 0)).toBe(0);
    // Far larger than any: scaled up from the nearest, the most recent of equals first.
    expect(at(rounds, 800 * MB)).toBeCloseTo((800 / 174) * (10 + 2.17 * 174), 5);
  });

  test('one round that met a stall does not set the pace when several are like it', () => {
    const rounds = [40, 44, 48, 52].map((mb) => ({ bytes: mb * MB, ms: 2 * mb }));
    rounds[1]!.ms += 60;
    expect(at(rounds, 46 * MB) / 46).toBeCloseTo(2, 5);
    expect(at(rounds, 46 * MB)).toBeLessThan(46 * 2.2);
  });

  test('no usable round, no model', () => {
    expect(paceOfRoundsLike([], MB)).toBeUndefined();
    expect(paceOfRoundsLike([{ bytes: 0, ms: 3 }], MB)).toBeUndefined();
    expect(paceOfRoundsLike([{ bytes: MB, ms: Number.POSITIVE_INFINITY }], MB)).toBeUndefined();
  });
});

describe('downtime budget ramp', () => {
  const ramp = { initialMs: 50, steps: 5, stepIntervalMs: 1000 };
  test('starts low and rises in steps to the final budget', () => {
    expect(downtimeBudgetAt(0, 300, ramp)).toBe(50);
    expect(downtimeBudgetAt(999, 300, ramp)).toBe(50);
    expect(downtimeBudgetAt(1000, 300, ramp)).toBe(100);
    expect(downtimeBudgetAt(2500, 300, ramp)).toBe(150);
    expect(downtimeBudgetAt(5000, 300, ramp)).toBe(300);
    expect(downtimeBudgetAt(60_000, 300, ramp)).toBe(300);
  });
  test('without a ramp the budget is the final one', () => {
    expect(downtimeBudgetAt(0, 300)).toBe(300);
  });
});

describe('auto-converge', () => {
  const stuck = { sentBytes: 100, dirtyBytes: 90, expectedDowntimeMs: 1000, budgetMs: 300 };

  test('off never throttles', () => {
    const c = new ThrottleController('off');
    for (let i = 0; i < 10; i++) expect(c.afterRound(stuck)).toBe(0);
  });

  test('on throttles after two rounds that dirtied more than half of what they sent, then steps up to the maximum', () => {
    const c = new ThrottleController('on');
    expect(c.afterRound(stuck)).toBe(0);
    expect(c.afterRound(stuck)).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    expect(c.afterRound(stuck)).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    expect(c.afterRound(stuck)).toBe(AUTO_CONVERGE_INITIAL_PERCENT + AUTO_CONVERGE_STEP_PERCENT);
    for (let i = 0; i < 40; i++) c.afterRound(stuck);
    expect(c.percent).toBe(AUTO_CONVERGE_MAX_PERCENT);
    expect(c.maxPercent).toBe(AUTO_CONVERGE_MAX_PERCENT);
  });

  test('on leaves a converging guest alone', () => {
    const c = new ThrottleController('on');
    for (let i = 0; i < 5; i++) expect(c.afterRound({ ...stuck, dirtyBytes: 40 })).toBe(0);
  });

  test('auto throttles only while the expected pause is over budget and stopped shrinking', () => {
    const c = new ThrottleController('auto');
    // Shrinking fast: no throttle even though over budget.
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 4000 })).toBe(0);
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 2000 })).toBe(0);
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 1000 })).toBe(0);
    // Stalled over budget for two rounds: throttle.
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 990 })).toBe(0);
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 995 })).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    // Within budget: no further step, however much it dirties.
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 200 })).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 200 })).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
  });

  test('auto leaves alone a guest that dirtied nothing, however long its fixed costs keep the pause', () => {
    const c = new ThrottleController('auto');
    const idle = { sentBytes: 0, dirtyBytes: 0, expectedDowntimeMs: 4, budgetMs: 2 };
    for (let i = 0; i < 5; i++) expect(c.afterRound(idle)).toBe(0);
  });

  test('auto also steps up while the pause hovers between where the default policy stops and the budget', () => {
    const c = new ThrottleController('auto');
    // 270 ms fits a 300 ms budget but not the 85% the default policy stops at: it would iterate on.
    const hovering = { ...stuck, expectedDowntimeMs: 270 };
    expect(c.afterRound(hovering)).toBe(0); // the first estimate is progress over none
    expect(c.afterRound(hovering)).toBe(0);
    expect(c.afterRound(hovering)).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    // Under the stop: the policy switches over; the throttle stays.
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 250 })).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
    expect(c.afterRound({ ...stuck, expectedDowntimeMs: 250 })).toBe(AUTO_CONVERGE_INITIAL_PERCENT);
  });
});

describe('progress watchdog', () => {
  test('fires ERR_NO_PROGRESS when the bytes left set no new low for the stall timeout', () => {
    const w = new ProgressWatchdog(0, 2 ** 30, 800_000, 5000);
    w.observe(1000, 0);
    w.observe(900, 1000);
    w.observe(950, 5000);
    expect(w.check(5999)).toBeUndefined();
    expect(w.check(6000)?.code).toBe('ERR_NO_PROGRESS');
    w.observe(899, 6500);
    expect(w.check(7000)).toBeUndefined();
  });

  test('tells how long until the nearer deadline, should the bytes left set no new low', () => {
    const w = new ProgressWatchdog(1000, 2 ** 30, 10_000, 3000);
    w.observe(500, 1000);
    expect(w.msLeft(2000)).toBe(2000); // the stall deadline at 4000
    w.observe(400, 9000);
    expect(w.msLeft(9500)).toBe(1500); // the completion deadline at 11000
    expect(new ProgressWatchdog(0, 2 ** 30, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY).msLeft(5)).toBe(Number.POSITIVE_INFINITY);
  });

  test('fires ERR_COMPLETION_TIMEOUT past the deadline scaled by memory', () => {
    const w = new ProgressWatchdog(1000, 2 * 2 ** 30, 10_000, 1e9);
    for (let t = 1000; t < 21_000; t += 1000) w.observe(21_000 - t, t);
    expect(w.check(20_999)).toBeUndefined();
    expect(w.check(21_000)?.code).toBe('ERR_COMPLETION_TIMEOUT');
  });
});

describe('bandwidth cap', () => {
  // A fake clock; `sent` records when each frame was handed over, and its size.
  function fakeCap(bytesPerSec: number, lateByMs = 0) {
    const clock = { now: 0 };
    const sent: Array<[number, number]> = [];
    const cap = new BandwidthCap(bytesPerSec, () => clock.now, async (ms) => {
      clock.now += ms + lateByMs;
    });
    const take = async (bytes: number) => {
      await cap.take(bytes);
      sent.push([clock.now, bytes]);
    };
    /** The most bytes handed over in any window of `ms` that starts at a send. */
    const mostIn = (ms: number) => Math.max(...sent.map(([t]) => sent.filter(([u]) => u >= t && u < t + ms).reduce((a, [, b]) => a + b, 0)));
    return { clock, sent, take, mostIn };
  }

  test('paces frames as a link of that speed carries them: 1 MB at 1 MB/s takes 1 s, a big frame keeps the link busy longer', async () => {
    const { clock, take } = fakeCap(1e6);
    for (let i = 0; i < 10; i++) await take(100_000);
    // The last frame starts when the link is done with the first nine (900 ms), less the slack.
    expect(clock.now).toBeCloseTo(900 - BANDWIDTH_CAP_SLACK_MS, 6);
    // A 500 kB frame after them waits for the tenth to be carried, and the next one for it.
    await take(500_000);
    expect(clock.now).toBeCloseTo(1000 - BANDWIDTH_CAP_SLACK_MS, 6);
    await take(1000);
    expect(clock.now).toBeCloseTo(1500 - BANDWIDTH_CAP_SLACK_MS, 6);
  });

  test('over any 100 ms at most the cap\'s worth goes out, plus the slack and a frame, idle time saved up or not', async () => {
    const cap = 1e6; // 100 kB per 100 ms
    const frame = 16_000;
    const { clock, take, mostIn } = fakeCap(cap);
    for (let i = 0; i < 40; i++) await take(frame);
    // A second of idle link (the source waiting for an acknowledgement) buys no burst afterwards.
    clock.now += 1000;
    for (let i = 0; i < 40; i++) await take(frame);
    const allowance = (cap * (BANDWIDTH_CAP_WINDOW_MS + BANDWIDTH_CAP_SLACK_MS)) / 1000 + frame;
    expect(mostIn(BANDWIDTH_CAP_WINDOW_MS)).toBeLessThanOrEqual(allowance);
    // And the link is used: each 100 ms of sending carries the cap's worth, less a frame at most.
    expect(mostIn(BANDWIDTH_CAP_WINDOW_MS)).toBeGreaterThanOrEqual((cap * BANDWIDTH_CAP_WINDOW_MS) / 1000 - frame);
  });

  test('timers that fire a millisecond late cost the link nothing', async () => {
    // 10 Gbit/s with 1 MiB frames: each takes 0.84 ms on the link, less than a late timer.
    const cap = 1.25e9;
    const frame = 2 ** 20;
    const { clock, take } = fakeCap(cap, 1);
    for (let i = 0; i < 1000; i++) await take(frame);
    const carried = (1000 * frame * 1000) / cap;
    expect(clock.now).toBeLessThanOrEqual(carried);
    expect(clock.now).toBeGreaterThan(carried - 2 * BANDWIDTH_CAP_SLACK_MS - 1);
  });
});

test('page lists merge ascending without duplicates', () => {
  expect([...mergeSorted(Uint32Array.of(1, 3, 5), Uint32Array.of(2, 3, 9))]).toEqual([1, 2, 3, 5, 9]);
  expect([...mergeSorted(Uint32Array.of(), Uint32Array.of(4))]).toEqual([4]);
  expect([...mergeSorted(Uint32Array.of(4), Uint32Array.of())]).toEqual([4]);
});

describe('switchover calibration', () => {
  test('learns the overhead from small switchovers and the paused round\'s speed-up from big ones', async () => {
    const { SwitchoverCalibration, DEFAULT_SWITCHOVER_OVERHEAD_MS } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    expect(c.overheadMs).toBe(DEFAULT_SWITCHOVER_OVERHEAD_MS); // assumed until the first switchover
    expect(c.factorFor(100)).toBe(1);
    c.observe(2, 4 + 2);
    expect(c.overheadMs).toBeCloseTo((4 + DEFAULT_SWITCHOVER_OVERHEAD_MS) / 2, 5); // the default still counts
    for (const t of [0.2, 0.1, 40, 60, 0.3]) c.observe(t, 4 + (t > 5 ? 0.5 : 1) * t);
    expect(c.overheadMs).toBeCloseTo(4, 5);
    expect(c.factorFor(50)).toBeCloseTo(0.5, 5);
  });

  test('predicts a last round with the factor of the switchovers like it in size', async () => {
    const { SwitchoverCalibration, CALIBRATION_SMALL_ROUND_MS } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    // Idle pauses cost 3 ms; hot sets modelled at 20-60 ms go as modelled; single-round guests
    // modelled at 700-800 ms go at 0.75 of their model.
    for (const t of [0.1, 20, 0.2, 760, 40, 0.1, 60, 800, 0.3, 30, 700]) c.observe(t, 3 + (t > 500 ? 0.75 : 1) * t);
    expect(c.overheadMs).toBeCloseTo(3, 5);
    expect(c.factorFor(840)).toBeCloseTo(0.75, 5);
    expect(c.factorFor(45)).toBeCloseTo(1, 5);
    expect(c.factorFor(15)).toBeCloseTo(1, 5);
    // Nothing remembered like it, or too small to say: as modelled.
    expect(c.factorFor(250)).toBe(1);
    expect(c.factorFor(3000)).toBe(1);
    expect(c.factorFor(CALIBRATION_SMALL_ROUND_MS / 2)).toBe(1);
    expect(c.factorFor(Number.POSITIVE_INFINITY)).toBe(1);
    // A big last round that went slower than its model met a stall: never above 1.
    const d = new SwitchoverCalibration();
    for (const [t, r] of [[5, 4], [20, 40], [60, 150]] as const) d.observe(t, r);
    expect(d.factorFor(60)).toBe(1);
    expect(d.factorFor(20)).toBe(1);
  });

  test('a pause that met a stall now and then does not move the prediction', async () => {
    const { SwitchoverCalibration } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    // Small idle switchovers cost 4 ms beyond the model; two in ten took 8 ms longer.
    const transfers = [0.2, 0.3, 0.2, 0.4, 0.3, 0.2, 0.3, 0.2, 0.4, 0.3];
    transfers.forEach((t, i) => c.observe(t, t + 4 + (i === 3 || i === 7 ? 8 : 0)));
    expect(c.overheadMs).toBeCloseTo(4, 5);
    // Big ones the same: one in five took 40 ms longer.
    [100, 110, 90, 105, 95].forEach((t, i) => c.observe(t, 4 + 0.8 * t + (i === 2 ? 40 : 0)));
    expect(c.factorFor(100)).toBeCloseTo(0.8, 5);
  });

  test('takes the overhead from the small switchovers, not from the noise of the big ones', async () => {
    const { SwitchoverCalibration } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    // Small pauses cost 3 ms beyond their transfer; big ones 25 ms more, which no term models.
    for (const t of [0.5, 400, 1, 600, 500, 0.3, 450, 550]) c.observe(t, 3 + t + (t > 100 ? 25 : 0));
    expect(c.overheadMs).toBeCloseTo(3, 5); // a median over all of them would say 28
  });

  test('remembers only the recent switchovers', async () => {
    const { SwitchoverCalibration, CALIBRATION_WINDOW } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    for (let i = 0; i < CALIBRATION_WINDOW; i++) c.observe(1, 10);
    for (let i = 0; i < CALIBRATION_WINDOW; i++) c.observe(1, 3);
    expect(c.overheadMs).toBeCloseTo(2, 5);
  });

  test('a busy pause longer than its model does not become the next idle guest\'s overhead', async () => {
    const { SwitchoverCalibration, DEFAULT_SWITCHOVER_OVERHEAD_MS } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    // Last rounds modelled at 35 and 34 ms whose pauses left 39 and 52 ms (seen in the all-pairs
    // benchmark, before an idle guest that paused 5 ms).
    c.observe(35.3, 38.7);
    c.observe(34, 51.9);
    expect(c.overheadMs).toBe(DEFAULT_SWITCHOVER_OVERHEAD_MS);
    expect(c.factorFor(34)).toBe(1);
  });

  test('one stalled first pause does not set the overhead', async () => {
    const { SwitchoverCalibration, DEFAULT_SWITCHOVER_OVERHEAD_MS } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    // The first idle pause met a 5 ms stall; the next ones cost 3 ms.
    c.observe(0.1, 8.1);
    expect(c.overheadMs).toBeCloseTo((8 + DEFAULT_SWITCHOVER_OVERHEAD_MS) / 2, 5); // half-way, not 8
    c.observe(0.1, 3.1);
    c.observe(0.1, 3.1);
    expect(c.overheadMs).toBeCloseTo(3, 5);
  });

  test('saved and restored, predicts as it did', async () => {
    const { SwitchoverCalibration } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    for (const t of [0.2, 20, 80, 5, 150, 0.4]) c.observe(t, 2 + 0.6 * t);
    const restored = SwitchoverCalibration.fromJSON(JSON.parse(JSON.stringify(c)));
    expect(c.factorFor(100)).toBeCloseTo(0.6, 2);
    expect(restored.factorFor(100)).toBeCloseTo(c.factorFor(100), 10);
    expect(restored.overheadMs).toBeCloseTo(c.overheadMs, 10);
    expect(restored.toJSON()).toEqual(c.toJSON());
    expect(SwitchoverCalibration.fromJSON([]).overheadMs).toBe(new SwitchoverCalibration().overheadMs);
  });

  test('refuses a saved calibration that is not a list of switchovers', async () => {
    const { SwitchoverCalibration, CALIBRATION_WINDOW } = await import('../dist/precopy/switchover-calibration.js');
    for (const bad of [
      {},
      'x',
      [{ roundMs: 1 }],
      [{ roundMs: -1, residualMs: 2 }],
      [{ roundMs: 1, residualMs: Number.NaN }],
      [null],
      Array.from({ length: CALIBRATION_WINDOW + 1 }, () => ({ roundMs: 1, residualMs: 1 })),
    ]) {
      expect(() => SwitchoverCalibration.fromJSON(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    }
  });

  test('ignores a switchover whose transfer could not be modelled', async () => {
    const { SwitchoverCalibration, DEFAULT_SWITCHOVER_OVERHEAD_MS } = await import('../dist/precopy/switchover-calibration.js');
    const c = new SwitchoverCalibration();
    c.observe(Number.POSITIVE_INFINITY, 5);
    expect(c.overheadMs).toBe(DEFAULT_SWITCHOVER_OVERHEAD_MS);
    expect(c.toJSON()).toEqual([]);
  });
});
