/** V8's garbage collector, where the process offers it. */

/**
 * A full, synchronous garbage collection of this process, if Node runs with `--expose-gc` (the
 * livemig command turns it on for itself); undefined otherwise.
 */
export function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? () => void (gc as () => unknown)() : undefined;
}

/** The collector an engine option asks for: its own function, none for `null`, else {@link exposedGc}. */
export function collectorFrom(option: (() => void) | null | undefined): (() => void) | undefined {
  return option === null ? undefined : (option ?? exposedGc());
}
