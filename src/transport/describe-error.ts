/** How the transport words errors from Node's sockets, TLS and file reads in its own messages. */

/**
 * The message of `err`, or its code when it has no message. Node reports a refused connection to
 * a name with several addresses as an AggregateError, possibly with an empty message: its inner
 * errors are listed instead.
 */
export function describeError(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return err.errors.map(describeError).join('; ');
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (err.message) return err.message;
    if (typeof code === 'string') return code;
  }
  return String(err);
}

/** An `error` listener for emitters whose errors nobody needs any more (an abandoned socket). */
export function ignoreError(): void {}
