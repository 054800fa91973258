/** What `listen` and `host` share as long-lived processes: one event line each, and how they stop. */

import { stopWithParent } from '../util/child.js';

/** Prints one event: a JSON line with its time in `--json` mode, else `words` for people. */
export type EventPrinter = (event: Record<string, unknown>, words: string) => void;

export function eventPrinter(json: boolean): EventPrinter {
  return (event, words) => {
    process.stdout.write(json ? `${JSON.stringify({ time: new Date().toISOString(), ...event })}\n` : `${words}\n`);
  };
}

/**
 * Serves until SIGTERM or SIGINT (or, `supervised`, until the parent goes away), then says so,
 * runs `close` once and exits 0. Never returns. `announce` prints the listening line once the
 * signal handlers are in place: a parent that signals as soon as it reads that line must not
 * meet the default action, which would kill the process.
 */
export async function serveUntilStopped(close: () => Promise<void>, say: EventPrinter, supervised: boolean, what: string, announce: () => void): Promise<never> {
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say({ type: 'stopping', signal }, `stopping on ${signal}: guests running here stop with this ${what}`);
    await close();
    process.exit(0);
  };
  if (supervised) {
    stopWithParent(stop);
  } else {
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
  }
  announce();
  return new Promise<never>(() => undefined);
}
