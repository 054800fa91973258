/**
 * A backstop for waits that can never end. When Node's event loop runs out of work, nothing can
 * settle a pending promise any more, and the process would exit with status 0 in the middle of
 * whatever awaited it. A guard armed around such work turns that moment into an error instead
 * ('beforeExit' fires exactly then, and the work the error starts keeps the process alive).
 */

export interface LoopGuard {
  /** Rejects with `onEmpty()`'s error once the event loop empties while armed; never resolves. */
  readonly emptied: Promise<never>;
  /** Stops watching; idempotent. */
  disarm(): void;
}

export function armLoopGuard(onEmpty: () => Error): LoopGuard {
  let reject: (err: Error) => void = () => undefined;
  const emptied = new Promise<never>((_resolve, rej) => {
    reject = rej;
  });
  // Nobody need listen: a guard disarmed before the loop empties never rejects.
  emptied.catch(() => undefined);
  const onBeforeExit = (): void => {
    process.off('beforeExit', onBeforeExit);
    reject(onEmpty());
  };
  process.on('beforeExit', onBeforeExit);
  return {
    emptied,
    disarm: () => process.off('beforeExit', onBeforeExit),
  };
}
