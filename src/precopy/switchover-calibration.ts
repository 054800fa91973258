/**
 * What the pause prediction learns from the switchovers a caller completes: the overhead no term
 * of the model covers, and how much faster a paused last round goes than the rounds it is
 * modelled on. State the caller owns and may save; nothing here is global.
 */

import { InvalidArgumentError } from '../errors.js';
import type { CodecChoice } from './codec-choice.js';
import { median } from '../util/stats.js';
import { LIKE_ROUND_SIZE_RATIO } from './policy.js';

/**
 * The overhead a {@link SwitchoverCalibration} assumes until its first switchover, and counts as
 * one more switchover after it, in milliseconds: about what calibrations learn on a small host
 * with both ends on it (docs/bench/README.md, "Calibration"). The pre-flight estimate assumes it
 * too.
 */
export const DEFAULT_SWITCHOVER_OVERHEAD_MS = 3;


/** Switchovers a {@link SwitchoverCalibration} remembers; older ones are forgotten. */
export const CALIBRATION_WINDOW = 16;

/**
 * Switchovers whose last round was modelled shorter than this, in milliseconds, tell a
 * {@link SwitchoverCalibration} its overhead; those at this or more, the factor of last rounds
 * like theirs. A small switchover's pause is mostly overhead, and a ratio to its round only noise.
 */
export const CALIBRATION_SMALL_ROUND_MS = 5;

/** The bounds of a calibration's factor (see {@link SwitchoverCalibration.factorFor}). */
const MIN_FACTOR = 0.25;
const MAX_FACTOR = 1;

/**
 * Calibration of the pause prediction, learnt from completed switchovers. A pause is modelled as
 * `overheadMs + factor x roundMs + half a round trip`, where `roundMs` is the last round's bytes
 * at the pace of the pre-copy rounds before it that were like it in size, slowed down as the
 * latest one was (see `DowntimeModel.roundTimeModel`). `overheadMs` is what no term models: stopping and
 * starting vCPUs, the device state, and the event-loop latency of the records around them. The factor (see
 * {@link factorFor}) is how much faster the paused last round goes than the rounds it is modelled
 * on: the guest no longer competes for the CPU, and a first pass writes memory the target never
 * touched. A link that set the pace is no faster with the guest paused; such switchovers are not
 * learnt from.
 *
 * Both come from the last CALIBRATION_WINDOW switchovers, each from the ones that show it: the
 * overhead from the small ones (last round modelled under CALIBRATION_SMALL_ROUND_MS), the factor
 * from those about the size to predict. Medians, not least squares, so that a pause that met a
 * garbage collection does not shift the next predictions. DEFAULT_SWITCHOVER_OVERHEAD_MS counts
 * as one more small switchover, so that the first one or two do not set the overhead alone.
 *
 * A calibration is state the caller owns: `migrate()` starts a fresh one unless given one. A
 * pool agent keeps one per codec (codecs differ too much to share one; see
 * {@link calibrationsByCodec}) and may save it (`toJSON`, `fromJSON`), so that it predicts each
 * pause better than the last, across restarts too. Why medians, and the figures behind the
 * choices, are in docs/bench/README.md ("Calibration").
 */
export class SwitchoverCalibration {
  overheadMs = DEFAULT_SWITCHOVER_OVERHEAD_MS;
  /** The remembered switchovers, oldest first: modelled last round and measured residual. */
  private readonly seen: CalibrationSample[] = [];

  /**
   * A calibration that has seen `samples` (as `toJSON` gave them, oldest first), so that a pool
   * agent predicts its first pauses after a restart as well as its last ones before it.
   * @throws InvalidArgumentError if `samples` is not such a list.
   */
  static fromJSON(samples: unknown): SwitchoverCalibration {
    if (!Array.isArray(samples) || samples.length > CALIBRATION_WINDOW) {
      throw new InvalidArgumentError(`a saved calibration is a list of at most ${CALIBRATION_WINDOW} switchovers`);
    }
    const c = new SwitchoverCalibration();
    for (const sample of samples as unknown[]) {
      const { roundMs, residualMs } = (sample ?? {}) as Partial<CalibrationSample>;
      if (typeof roundMs !== 'number' || !Number.isFinite(roundMs) || roundMs < 0 || typeof residualMs !== 'number' || !Number.isFinite(residualMs)) {
        const got = JSON.stringify(sample) ?? String(sample);
        throw new InvalidArgumentError(`a saved switchover needs a finite roundMs of 0 or more and a finite residualMs, got ${got.slice(0, 200)}`);
      }
      c.observe(roundMs, residualMs);
    }
    return c;
  }

  /** The remembered switchovers, oldest first, for `fromJSON`. */
  toJSON(): CalibrationSample[] {
    return this.seen.map((o) => ({ ...o }));
  }

  /** Records one switchover: `roundMs` as modelled, `residualMs` = measured pause - half a round trip. */
  observe(roundMs: number, residualMs: number): void {
    if (!Number.isFinite(roundMs) || !Number.isFinite(residualMs)) return;
    this.seen.push({ roundMs, residualMs });
    if (this.seen.length > CALIBRATION_WINDOW) this.seen.shift();
    const left = this.seen.filter((o) => o.roundMs < CALIBRATION_SMALL_ROUND_MS).map((o) => o.residualMs - o.roundMs);
    this.overheadMs = Math.min(50, Math.max(0, median([...left, DEFAULT_SWITCHOVER_OVERHEAD_MS])!));
  }

  /**
   * The factor for a last round modelled at `roundMs`: the median of what the remembered
   * switchovers like it (modelled at CALIBRATION_SMALL_ROUND_MS or more, and within
   * LIKE_ROUND_SIZE_RATIO of it) cost per modelled millisecond beyond the overhead, between
   * MIN_FACTOR and MAX_FACTOR; 1 with none like it, or for a small round. Never above 1: with the
   * guest paused, the last round is not slower per byte than the rounds it is modelled on, and a
   * pause that says otherwise met a stall. One factor does not fit every size, hence "like it".
   */
  factorFor(roundMs: number): number {
    if (!(roundMs >= CALIBRATION_SMALL_ROUND_MS) || !Number.isFinite(roundMs)) return 1;
    const like = this.seen.filter(
      (o) => o.roundMs >= CALIBRATION_SMALL_ROUND_MS && Math.max(o.roundMs / roundMs, roundMs / o.roundMs) <= LIKE_ROUND_SIZE_RATIO,
    );
    if (like.length === 0) return 1;
    return Math.min(MAX_FACTOR, Math.max(MIN_FACTOR, median(like.map((o) => (o.residualMs - this.overheadMs) / o.roundMs))!));
  }
}

/** One switchover a calibration remembers: the last round as modelled, and what the pause cost beyond half a round trip. */
export interface CalibrationSample {
  roundMs: number;
  residualMs: number;
}

/**
 * One calibration per codec, made on first use: what a program that migrates many guests keeps
 * (the host agent, the benchmark harness), so that each codec's predictions learn from its own
 * switchovers.
 */
export function calibrationsByCodec(): (codec: CodecChoice) => SwitchoverCalibration {
  const byCodec = new Map<CodecChoice, SwitchoverCalibration>();
  return (codec) => {
    let c = byCodec.get(codec);
    if (!c) byCodec.set(codec, (c = new SwitchoverCalibration()));
    return c;
  };
}
