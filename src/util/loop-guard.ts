/**
 * A backstop for waits that can never end. When Node's event loop runs out of work, nothing can
 * settle a pending promise any more, and the process would exit with status 0 in the middle of
 * whatever awaited it. A guard armed around such work turns that moment into an error instead
 * ('beforeExit' fires exactly then, and the work the error starts keeps the process alive).
 *
 * Guards nest: a command guards its whole run, and a migration inside it guards its own. When the
 * loop empties, the inner guards fire first, since their work can still end by its own rules (a
 * migration resumes its guest and reports); an outermost guard fires only when no inner one is
 * armed, so that the command says nothing of a wait its migration has already answered.
 */

export interface LoopGuard {
  /** Rejects with `onEmpty()`'s error once the event loop empties while armed; never resolves. */
  readonly emptied: Promise<never>;
  /** Stops watching; idempotent. */
  disarm(): void;
}

/** How a guard takes its turn among others. */
export interface LoopGuardOptions {
  /**
   * Fire only when the loop empties with no other guard armed: for the caller that owns the
   * process (a command), whose inner guards answer for their own work first.
   * @default false
   */
  outermost?: boolean;
}

/** The armed guards, inner and outermost apart; each entry rejects its guard's promise. */
const inner = new Set<() => void>();
const outermost = new Set<() => void>();

function onBeforeExit(): void {
  const due = inner.size > 0 ? inner : outermost;
  const fire = [...due];
  due.clear();
  if (inner.size === 0 && outermost.size === 0) {
    process.off('beforeExit', onBeforeExit);
  } else {
    // One more turn of the loop, so that the guards still armed get their look should the
    // work of those fired now end without settling what they wait on.
    setImmediate(() => undefined);
  }
  for (const f of fire) f();
}

/** Arms a guard: `emptied` rejects with `onEmpty()` if the event loop empties before `disarm()`. */
export function armLoopGuard(onEmpty: () => Error, options: LoopGuardOptions = {}): LoopGuard {
  let reject: (err: Error) => void = () => undefined;
  const emptied = new Promise<never>((_resolve, rej) => {
    reject = rej;
  });
  // Nobody need listen: a guard disarmed before the loop empties never rejects.
  emptied.catch(() => undefined);
  const fire = (): void => reject(onEmpty());
  const set = options.outermost ? outermost : inner;
  if (inner.size === 0 && outermost.size === 0) process.on('beforeExit', onBeforeExit);
  set.add(fire);
  return {
    emptied,
    disarm: () => {
      if (!set.delete(fire)) return;
      if (inner.size === 0 && outermost.size === 0) process.off('beforeExit', onBeforeExit);
    },
  };
}
