/**
 * How either side of a migration (or an agent refusing one) ends a connection that failed: tell
 * the peer why in an `abort` record, close so that the record arrives before the end of the
 * stream, and cut the connection; all within one grace period, so that a peer that does not read
 * cannot hold this side up.
 */

import type { MigrationError } from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import { MAX_TEXT_FIELD_CHARS } from '../protocol/field-checks.js';
import type { Transport } from '../transport/transport.js';

/** How long a failing side spends telling the peer why and closing, in milliseconds. */
export const ABORT_GRACE_MS = 1000;

/**
 * The `abort` record for `error`. Its message is cut to what the record may carry: an error can
 * quote what a peer sent (a backend name, a field), and a long quote must not keep the peer
 * from learning why.
 */
export function encodeAbort(error: MigrationError): Uint8Array {
  return encodeRecord({ type: 'abort', code: error.code, message: error.message.slice(0, MAX_TEXT_FIELD_CHARS) });
}

/**
 * Tells the peer why (when `tell` and the link is still open), closes, and destroys the
 * transport with `error` as the reason, within {@link ABORT_GRACE_MS}. Never rejects.
 */
export async function abortPeer(transport: Transport, error: MigrationError, tell: boolean): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise((resolve) => (timer = setTimeout(resolve, ABORT_GRACE_MS)));
  try {
    if (tell && !transport.closed) {
      const sent = Promise.resolve()
        .then(() => transport.send(encodeAbort(error)))
        .catch(() => undefined);
      await Promise.race([sent, grace]);
    }
    await Promise.race([transport.close().catch(() => undefined), grace]);
  } finally {
    clearTimeout(timer);
    transport.destroy(error);
  }
}
