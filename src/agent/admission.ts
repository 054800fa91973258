/**
 * What a target agent tells whoever admitted an incoming migration (`TargetAgentOptions.admit`),
 * and how it makes sure it tells them once: a host's reservation is released on every path.
 */

import type { TargetDomain } from '../domain/backend.js';
import type { IncomingResult } from '../precopy/incoming.js';

/**
 * How an admitted migration ends, told to whoever admitted it (`TargetAgentOptions.admit`):
 * exactly one of the two calls, `resumed` the moment the guest runs here, `discarded` once the
 * copy here is gone. What they throw is ignored.
 */
export interface Admission {
  resumed(domain: TargetDomain, result: IncomingResult): void;
  discarded(error?: { code: string; message: string }): void;
}

/** `admission`, or nothing, as an Admission told at most once whatever the agent calls, never throwing. */
export function settleOnce(admission: Admission | void): Admission {
  let settled = false;
  const once = (tell: () => void): void => {
    if (settled) return;
    settled = true;
    try {
      tell();
    } catch {
      // A host's bookkeeping must not change what happens to the migration.
    }
  };
  return {
    resumed: (domain, result) => once(() => admission?.resumed(domain, result)),
    discarded: (error) => once(() => admission?.discarded(error)),
  };
}

