/**
 * The warm-up of the long-lived commands (`livemig listen`, `livemig host`): run before they
 * serve unless `--no-warm-up` says not to, a failure said on stderr (the agent serves all the
 * same), and a few words for the listening line.
 */

import { warmUp, type WarmUpReport } from '../agent/warm-up.js';

export const WARM_UP_HELP = `  --no-warm-up           serve at once, without first migrating a few small simulated guests
                         to itself (the default does, for a second or two: its first
                         migrations then run compiled code, as later ones do)`;

/** Runs the warm-up unless `skip`; resolves with its report (undefined when skipped). */
export async function warmUpUnless(skip: boolean | undefined): Promise<WarmUpReport | undefined> {
  if (skip === true) return undefined;
  const warm = await warmUp();
  if (warm.error) {
    process.stderr.write(`livemig: the warm-up stopped after ${warm.migrations} migrations (${warm.error.code}: ${warm.error.message}); serving all the same\n`);
  }
  return warm;
}

/** What the listening line says of a warm-up: nothing when there was none. */
export function warmUpWords(warm: WarmUpReport | undefined): string {
  return warm === undefined ? '' : `; warmed up with ${warm.migrations} migrations in ${(warm.ms / 1000).toFixed(1)} s`;
}
