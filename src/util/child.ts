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
