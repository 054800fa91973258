/** Bounding how long something may take. */

import { InvalidArgumentError } from '../errors.js';

/** The longest delay a Node timer holds; a longer one would fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Whether `timeoutMs` is a deadline at all. One beyond what a timer can hold (about 24.8 days,
 * Infinity included) is none: no timer is set for it, rather than one that fires at once.
 */
export function isDeadline(timeoutMs: number): boolean {
  return timeoutMs <= MAX_TIMER_MS;
}

/**
 * Checks a timeout option: a positive number of milliseconds, Infinity (no deadline) included.
 * @throws InvalidArgumentError naming `name` otherwise (NaN, 0, a negative or a non-number).
 */
export function checkTimeoutMs(name: string, value: number): number {
  if (typeof value !== 'number' || !(value > 0)) {
    throw new InvalidArgumentError(`${name} must be a positive number of milliseconds (or Infinity for no deadline), got ${String(value)}`);
  }
  return value;
}

/**
 * `promise`, or the error `onTimeout` makes if it has not settled within `timeoutMs`. The timer
 * is cleared either way, and what the losing promise yields later is ignored. A deadline beyond
 * what a timer can hold (Infinity included) is no deadline.
 */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  if (!isDeadline(timeoutMs)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, timeoutMs));
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
    promise.catch(() => undefined);
  }
}
