/**
 * `livemig bench`: the benchmark harness is a tool outside the library (bench/harness/, built to
 * dist/bench/ by `npm run build`), using the library through its package entry. The command loads
 * it on demand, so the other commands neither load it nor need it built.
 */

import { existsSync } from 'node:fs';

const HARNESS = new URL('../bench/command.js', import.meta.url);

/** What the harness module offers the command. */
interface Harness {
  runBench(args: string[]): Promise<number>;
}

/** Runs `livemig bench <args>` and resolves with its exit status; 2 if the harness was not built. */
export async function runBench(args: string[]): Promise<number> {
  if (!existsSync(HARNESS)) {
    process.stderr.write('livemig: the benchmark harness is not built (dist/bench/ is missing); run "npm run build" in the livemig folder first\n');
    return 2;
  }
  const harness = (await import(HARNESS.href)) as Harness;
  return harness.runBench(args);
}
