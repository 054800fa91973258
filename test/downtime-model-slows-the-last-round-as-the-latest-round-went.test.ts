// The pause model's last round goes at the pace of the recent rounds like it, slowed down as much as
// the latest round was against the rounds like it: the policy switches over on what that round left
// dirty, so the pause follows a round that went slow (best) or fast (first-fit). A slow spell of a
// shared host outlasts the round; a fast round is a gap in the contention that does not.
import { describe, expect, test } from 'vitest';
import { DowntimeModel } from '../dist/precopy/downtime-model.js';
import type { RoundReport } from '../dist/precopy/report.js';
import { SwitchoverCalibration } from '../dist/precopy/switchover-calibration.js';

const MB = 1e6;
const PAGE = 4096;

/** A finished pre-copy round of `mb` data megabytes at `msPerMb`. */
function round(n: number, mb: number, msPerMb: number, extra: Partial<RoundReport> = {}): RoundReport {
  const durationMs = mb * msPerMb;
  return {
    round: n,
    stopAndCopy: false,
    pages: Math.round((mb * MB) / PAGE),
    zeroPages: 0,
    bytesRaw: mb * MB,
    bytesWire: mb * MB * 0.6,
    durationMs,
    dirtyRateBytesPerSec: 0,
    bandwidthBytesPerSec: (mb * MB * 1000) / durationMs,
    sendMs: durationMs - 2,
    ackMs: 2,
    gcMs: 0,
    targetGcMs: 0,
    throttlePercent: 0,
    ...extra,
  };
}

/** The modelled last round of `mb` megabytes, in milliseconds (no overhead, no round trip). */
function lastRoundMs(rounds: RoundReport[], mb: number): number {
  const model = new DowntimeModel(rounds, PAGE, new SwitchoverCalibration(), undefined).roundTimeModel(mb * MB)!;
  return model.fixedMs + mb * MB * model.msPerByte;
}

describe('the last round goes at the usual pace, slowed down as the latest round was', () => {
  test('after a round that went slow, as slow, not at the median of the rounds before', () => {
    // Four 40 MB rounds at 2 ms per MB, then one at 4: best stops on such a round (it left as
    // much dirty as the one before), and the last round goes as slow. The median would say 80 ms.
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 4));
    expect(lastRoundMs(rounds, 40)).toBeCloseTo(160, 5);
  });

  test('after a round that went fast, at the usual pace of the rounds like the last one', () => {
    // First-fit stops on a round that went fast (it left little enough dirty to fit); the last
    // round goes at the usual pace again.
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 1.5));
    expect(lastRoundMs(rounds, 30)).toBeCloseTo(60, 5);
  });

  test('a latest round smaller than the last one: slowed down as much as it was against the rounds of its size', () => {
    // Small rounds cost 3 ms per MB here, large ones 2: a small one pays more for the pipeline
    // filling and draining, contention or not.
    const usual = [round(1, 40, 2), round(2, 40, 2), round(3, 10, 3), round(4, 10, 3), round(5, 10, 3)];
    // A small latest round at twice its usual pace: a 40 MB last round at twice the large rounds'.
    expect(lastRoundMs([...usual, round(6, 10, 6)], 40)).toBeCloseTo(160, 5);
    // At its usual pace: the large rounds' 2 ms per MB, not the small one's 3.
    expect(lastRoundMs([...usual, round(6, 10, 3)], 40)).toBeCloseTo(80, 5);
  });

  test('rounds that all went alike: the pace they all went at', () => {
    const rounds = [1, 2, 3, 4, 5].map((n) => round(n, 40 - 5 * n, 2.5));
    expect(lastRoundMs(rounds, 12)).toBeCloseTo(30, 5);
  });

  test('a latest round that sent nothing: the rounds of the last second like the last one in size', () => {
    const rounds = [round(1, 50, 3), round(2, 20, 2), round(3, 20, 2.2), round(4, 18, 2.1)];
    rounds.push({ ...round(5, 0, 0), durationMs: 1, pages: 0 });
    // Like 20 MB: the 20, 20 and 18 MB rounds, median 2.1 ms per MB.
    expect(lastRoundMs(rounds, 20)).toBeCloseTo(42, 5);
  });

  test('the round in progress, when given, is the latest', () => {
    // 30 MB at 3 ms per MB against 2 for the rounds like it: half as slow again.
    const rounds = [1, 2, 3].map((n) => round(n, 40, 2));
    const model = new DowntimeModel(rounds, PAGE, new SwitchoverCalibration(), undefined).roundTimeModel(20 * MB, { bytes: 30 * MB, ms: 90 })!;
    expect(20 * MB * model.msPerByte).toBeCloseTo(60, 5);
  });

  test("the target's collection before the acknowledgement does not make the latest round slow", () => {
    // 40 ms of the latest round's 120 were the target collecting before it acknowledged.
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 3, { ackMs: 42, targetGcMs: 40 }));
    expect(lastRoundMs(rounds, 40)).toBeCloseTo(80, 5);
  });

  test('the predicted pause carries it, with the overhead and half the round trip', () => {
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 4));
    const model = new DowntimeModel(rounds, PAGE, new SwitchoverCalibration(), undefined);
    model.observeRoundTrip(1);
    expect(model.predict(40 * MB)).toBeCloseTo(model.calibration.overheadMs + 160 + 0.5, 5);
  });
});
