/** Bounding how long something may take. */

/** The longest delay a Node timer holds; a longer one would fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `promise`, or the error `onTimeout` makes if it has not settled within `timeoutMs`. The timer
 * is cleared either way, and what the losing promise yields later is ignored. A deadline beyond
 * what a timer can hold (Infinity included) is no deadline.
 */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
  if (!(timeoutMs <= MAX_TIMER_MS)) return promise;
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
