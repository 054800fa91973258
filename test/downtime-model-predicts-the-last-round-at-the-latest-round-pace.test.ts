// The pause model's last round goes at the pace of the latest pre-copy round, scaled to its size by
// the rounds like it: the policy switches over on what that round left dirty, so the pause follows
// a round that went slow (best) or fast (first-fit), and the machine's spell outlasts a round.
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

describe('the last round goes at the pace of the latest round', () => {
  test('after a round that went slow, at its pace, not at the median of the rounds before', () => {
    // Four 40 MB rounds at 2 ms per MB, then one at 4: best stops on such a round (it left as
    // much dirty as the one before), and the last round goes as slow. The median would say 80 ms.
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 4));
    expect(lastRoundMs(rounds, 40)).toBeCloseTo(160, 5);
  });

  test('after a round that went fast, at its pace', () => {
    // First-fit stops on a round that went fast (it left little enough dirty to fit).
    const rounds = [1, 2, 3, 4].map((n) => round(n, 40, 2));
    rounds.push(round(5, 40, 1.5));
    expect(lastRoundMs(rounds, 30)).toBeCloseTo(45, 5);
  });

  test('a latest round smaller than the last one says how fast the machine is, not the pace of its size', () => {
    // Small rounds cost 3 ms per MB here, large ones 2 (the fixed part weighs more in a small one).
    const usual = [round(1, 40, 2), round(2, 40, 2), round(3, 10, 3), round(4, 10, 3)];
    // A small latest round at its usual pace: a 40 MB last round at the large rounds' 2 ms per MB.
    expect(lastRoundMs([...usual, round(5, 10, 3)], 40)).toBeCloseTo(80, 5);
    // The same round at twice its usual pace: the 40 MB last round at twice theirs.
    expect(lastRoundMs([...usual, round(5, 10, 6)], 40)).toBeCloseTo(160, 5);
  });

  test('rounds that all went alike: as before, the pace of the rounds like the last one', () => {
    const rounds = [1, 2, 3, 4, 5].map((n) => round(n, 40 - 5 * n, 2.5));
    const model = new DowntimeModel(rounds, PAGE, new SwitchoverCalibration(), undefined);
    expect(model.paceNow()).toBeCloseTo(1, 10);
    expect(lastRoundMs(rounds, 12)).toBeCloseTo(30, 5);
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
