/** The options of an evacuation, their defaults, and their checks. */

import type { MigrateGuestRequest } from '../agent/control-types.js';
import { InvalidArgumentError } from '../errors.js';
import type { EvacuationEvent } from './pool-types.js';

/** Migrations of one evacuation at once. Parallel moves share the link and lengthen each pause. */
export const DEFAULT_EVACUATION_PARALLEL = 2;

/** Migrations of one evacuation at once into one target host (Nova runs one per compute node). */
export const DEFAULT_EVACUATION_PER_TARGET = 1;

/** Tries per guest: the first, and one retry on another host. */
export const EVACUATION_ATTEMPTS_PER_GUEST = 2;

/** How often the source is asked how each migration stands, in milliseconds. */
export const DEFAULT_EVACUATION_POLL_INTERVAL_MS = 500;

/** Longest wait for any one call to a host, in milliseconds; the host's own deadlines are usually shorter. */
export const DEFAULT_POOL_CALL_TIMEOUT_MS = 30_000;

/**
 * Polls of one migration that may fail in a row (its source does not answer) before the guest is
 * reported `indeterminate` with its migration id.
 */
export const DEFAULT_MAX_POLL_FAILURES = 20;

/** How to evacuate a host. */
export interface EvacuateOptions {
  /** Hosts to move guests to, by name (`--to B,C`); every enabled host but the source otherwise. */
  to?: string[];
  /** Migrations at once: the sliding window. The limit per source is this window, as one evacuation empties one host. @default DEFAULT_EVACUATION_PARALLEL */
  parallel?: number;
  /** Migrations at once into one target host. @default DEFAULT_EVACUATION_PER_TARGET */
  perTarget?: number;
  /**
   * Move the guests that fit when some cannot be placed, and report the others. Without it an
   * evacuation whose plan does not fit moves nothing. @default false
   */
  moveWhatFits?: boolean;
  /**
   * Start guests in order of their pause estimates within each priority, and move busy guests
   * alone (docs/pool.md, "Order"); false: priority, then larger first, all sharing the window.
   * @default true
   */
  orderByPause?: boolean;
  /** Ledger file; a rerun given the same file resumes the evacuation it records. In memory only when absent. */
  ledgerPath?: string;
  /** Stops new migrations and cancels those in flight; each guest not past its switchover stays on the source. */
  signal?: AbortSignal;
  /** Told of each step; one progress line per guest can be drawn from it. Exceptions it throws are ignored. */
  onEvent?: (event: EvacuationEvent) => void;
  /** Engine options for every migration (the target is set by the plan). */
  migration?: Omit<MigrateGuestRequest, 'to'>;
  /** Id of a new evacuation (a ledger's id wins). @default a random UUID */
  evacuationId?: string;
  /** @default DEFAULT_EVACUATION_POLL_INTERVAL_MS */
  pollIntervalMs?: number;
  /** @default DEFAULT_POOL_CALL_TIMEOUT_MS */
  callTimeoutMs?: number;
  /** @default DEFAULT_MAX_POLL_FAILURES */
  maxPollFailures?: number;
}

/** Options with their defaults filled in. */
export type CheckedEvacuateOptions = Required<Pick<EvacuateOptions, 'parallel' | 'perTarget' | 'moveWhatFits' | 'orderByPause' | 'pollIntervalMs' | 'callTimeoutMs' | 'maxPollFailures'>> &
  Omit<EvacuateOptions, 'parallel' | 'perTarget' | 'moveWhatFits' | 'orderByPause' | 'pollIntervalMs' | 'callTimeoutMs' | 'maxPollFailures'>;

/** @throws InvalidArgumentError naming the first option that is not acceptable. */
export function checkEvacuateOptions(options: EvacuateOptions): CheckedEvacuateOptions {
  const checked = {
    ...options,
    parallel: positiveInteger('parallel', options.parallel ?? DEFAULT_EVACUATION_PARALLEL),
    perTarget: positiveInteger('perTarget', options.perTarget ?? DEFAULT_EVACUATION_PER_TARGET),
    moveWhatFits: options.moveWhatFits ?? false,
    orderByPause: options.orderByPause ?? true,
    pollIntervalMs: positiveNumber('pollIntervalMs', options.pollIntervalMs ?? DEFAULT_EVACUATION_POLL_INTERVAL_MS),
    callTimeoutMs: positiveNumber('callTimeoutMs', options.callTimeoutMs ?? DEFAULT_POOL_CALL_TIMEOUT_MS),
    maxPollFailures: positiveInteger('maxPollFailures', options.maxPollFailures ?? DEFAULT_MAX_POLL_FAILURES),
  };
  if (options.to !== undefined && (!Array.isArray(options.to) || options.to.length === 0 || options.to.some((n) => typeof n !== 'string' || n === ''))) {
    throw new InvalidArgumentError('to must name at least one target host');
  }
  return checked;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a whole number of at least 1, got ${String(value)}`);
  return value;
}

function positiveNumber(name: string, value: number): number {
  if (typeof value !== 'number' || !(value > 0)) throw new InvalidArgumentError(`${name} must be a positive number of milliseconds, got ${String(value)}`);
  return value;
}
