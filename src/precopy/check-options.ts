/**
 * Range checks of {@link migrate}'s options. A value out of range is refused with
 * ERR_INVALID_ARGUMENT before anything happens to the guest, rather than behaving oddly later:
 * a zero stall timeout gave up at once, a NaN budget never fitted, a codec the engine does not
 * know reached the target, and a progress interval longer than a timer holds fired every
 * millisecond. The page sender and the bandwidth cap check their own options.
 */

import { InvalidArgumentError } from '../errors.js';
import { MAX_TEXT_FIELD_CHARS } from '../protocol/field-checks.js';
import { DEFAULT_MAX_CHANNELS } from '../protocol/limits.js';
import { MAX_TIMER_MS } from '../util/deadline.js';
import { CODEC_CHOICES } from './codec-choice.js';
import { DELTA_MODES } from './delta-plan.js';
import { SwitchoverCalibration } from './switchover-calibration.js';
import { type MigrateOptions } from './migrate-options.js';

/** Throws InvalidArgumentError naming the first option out of range. Absent options are fine. */
export function checkMigrateOptions(o: MigrateOptions): void {
  oneOf('codec', o.codec, CODEC_CHOICES);
  oneOf('delta', o.delta, DELTA_MODES);
  if (o.deltaCacheBytes !== undefined && !(Number.isSafeInteger(o.deltaCacheBytes) && o.deltaCacheBytes >= 0)) {
    throw new InvalidArgumentError(`deltaCacheBytes must be a whole number of bytes, 0 or more, got ${String(o.deltaCacheBytes)}`);
  }
  oneOf('autoConverge', o.autoConverge, ['off', 'on', 'auto']);
  oneOf('timeoutAction', o.timeoutAction, ['abort', 'force-switchover']);
  oneOf('switchover', o.switchover, ['best', 'first-fit']);
  if (o.calibration !== undefined && !(o.calibration instanceof SwitchoverCalibration)) {
    throw new InvalidArgumentError('calibration must be a SwitchoverCalibration (new, or SwitchoverCalibration.fromJSON of a saved one)');
  }
  positive('downtimeBudgetMs', o.downtimeBudgetMs, false);
  if (o.maxRounds !== undefined && !(Number.isInteger(o.maxRounds) && o.maxRounds >= 1)) {
    throw new InvalidArgumentError(`maxRounds must be a whole number of at least 1, got ${String(o.maxRounds)}`);
  }
  if (o.downtimeRamp !== undefined) {
    const r = o.downtimeRamp;
    positive('downtimeRamp.initialMs', r.initialMs, false);
    positive('downtimeRamp.stepIntervalMs', r.stepIntervalMs, false);
    if (!(Number.isInteger(r.steps) && r.steps >= 0)) {
      throw new InvalidArgumentError(`downtimeRamp.steps must be a whole number, got ${String(r.steps)}`);
    }
  }
  // Deadlines: Infinity means none.
  positive('completionTimeoutMsPerGiB', o.completionTimeoutMsPerGiB, true);
  positive('stallTimeoutMs', o.stallTimeoutMs, true);
  positive('handshakeTimeoutMs', o.handshakeTimeoutMs, true);
  positive('switchoverTimeoutMs', o.switchoverTimeoutMs, true);
  positive('resolveTimeoutMs', o.resolveTimeoutMs, true);
  if (o.progressIntervalMs !== undefined && !(o.progressIntervalMs >= 1 && o.progressIntervalMs <= MAX_TIMER_MS)) {
    throw new InvalidArgumentError(`progressIntervalMs must be from 1 to ${MAX_TIMER_MS} ms, got ${String(o.progressIntervalMs)}`);
  }
  if (o.channels !== undefined && !(Number.isInteger(o.channels) && o.channels >= 1 && o.channels <= DEFAULT_MAX_CHANNELS)) {
    throw new InvalidArgumentError(`channels must be a whole number from 1 to ${DEFAULT_MAX_CHANNELS}, got ${String(o.channels)}`);
  }
  if ((o.channels ?? 1) > 1 && typeof o.openChannel !== 'function') {
    throw new InvalidArgumentError('channels above 1 need openChannel, a function that opens one more authenticated connection to the target');
  }
  if (o.migrationId !== undefined && !(typeof o.migrationId === 'string' && o.migrationId.length > 0 && o.migrationId.length <= MAX_TEXT_FIELD_CHARS)) {
    throw new InvalidArgumentError(`migrationId must be a string of 1 to ${MAX_TEXT_FIELD_CHARS} characters`);
  }
}

function oneOf(name: string, value: unknown, allowed: readonly string[]): void {
  if (value !== undefined && !allowed.includes(value as string)) {
    throw new InvalidArgumentError(`${name} must be one of ${allowed.join(', ')}, got ${describe(value)}`);
  }
}

function positive(name: string, value: number | undefined, infiniteAllowed: boolean): void {
  if (value === undefined) return;
  const ok = typeof value === 'number' && value > 0 && (infiniteAllowed || Number.isFinite(value));
  if (!ok) {
    throw new InvalidArgumentError(`${name} must be a positive number of milliseconds${infiniteAllowed ? ' (or Infinity)' : ''}, got ${describe(value)}`);
  }
}

/** A value for an error message, cut short: it may come from anywhere. */
function describe(value: unknown): string {
  const text = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
