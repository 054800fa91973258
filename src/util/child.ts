/** Ending a child process for good. */

import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/**
 * Asks `child` to exit with SIGTERM and, if it has not within `graceMs`, kills it with SIGKILL.
 * Resolves once it has exited; at once if it already had.
 */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  const first = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (first === 'timeout') {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Ties this process's life to the process that started it, for a helper run as its child (a
 * benchmark's far end, a demo's agent): `stop` runs once, on SIGTERM or when standard input
 * closes (the parent exited, however it died), and SIGINT is ignored. Ctrl-C at a terminal
 * reaches the whole process group: the parent cancels its migration (the guest stays on its
 * source) and then stops this process; stopping here first would cut the migration's connection
 * and turn a cancel into a failure.
 */
export function stopWithParent(stop: (why: string) => Promise<void> | void): void {
  let stopping = false;
  const once = (why: string): void => {
    if (stopping) return;
    stopping = true;
    void stop(why);
  };
  process.once('SIGTERM', () => once('SIGTERM'));
  process.on('SIGINT', () => undefined);
  process.stdin.on('end', () => once('end of standard input'));
  process.stdin.on('error', () => once('end of standard input'));
  process.stdin.resume();
}
