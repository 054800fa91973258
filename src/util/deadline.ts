/** Bounding how long something may take. */

/**
 * `promise`, or the error `onTimeout` makes if it has not settled within `timeoutMs`. The timer
 * is cleared either way, and what the losing promise yields later is ignored.
 */
export async function withDeadline<T>(promise: Promise<T>, timeoutMs: number, onTimeout: () => Error): Promise<T> {
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
