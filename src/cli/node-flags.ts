/** How the livemig command runs Node, for itself and for the processes it starts. */

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Node options of every livemig process: bin/livemig.js passes them in its first line, and
 * {@link spawnLivemig} to the agents and far ends it starts.
 *
 * `--v8-pool-size=1`: V8 gives its background work to a pool of four threads by default: the
 * sweeping that follows a collection, the unmapping of the memory it freed, optimising
 * compilations. The engine collects just before the pause, so that work ran during the pause,
 * four threads on top of the two processes and the guest, and on a host with few cores a
 * switchover message then waited several milliseconds for a core (traced: a target's main
 * thread queued 4 ms behind one of them while the other core idled). With one thread, idle 256 MiB
 * and 1 GiB guests on a 2-core machine paused over 8 ms in 3 of 160 switchovers instead of 17, and
 * predictions missed 4 of 160 instead of 20. A collection marks with fewer helpers, outside the
 * pause.
 *
 * `--initial-old-space-size=128`: V8 sets the old generation's next limit at 1.1 times what
 * survived a full collection, and counts the Buffers the WebSocket hands over (each message, and
 * each 64 KiB read under it) against it. A target keeps a few megabytes alive, so while pages
 * stream in it ran a full mark-compact ("allocation failure", 5-8 ms) about every 75 ms, and one
 * of them landed in most last rounds of a 256 MiB guest, and between "prepared" and "go" in
 * some (traced with --trace-gc; the collection before the pause only resets the count). With a
 * floor of 128 MB under the limit, a far end received the same rounds with no such collection
 * (one short incremental one in two runs), and in the medium matrix none fell in a pause on
 * either side, against 16 of 64 pauses without it. It is a limit, not a reservation: the heap
 * still grows only as it is used.
 */
export const NODE_FLAGS: readonly string[] = ['--v8-pool-size=1', '--initial-old-space-size=128'];

/** Node's options in a process: those on its command line, then those in NODE_OPTIONS. */
export function nodeOptionsOf(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  return [...execArgv, ...nodeOptions.split(/\s+/).filter((option) => option !== '')];
}

/**
 * The options of {@link NODE_FLAGS} a process runs without (see {@link nodeOptionsOf}); one given
 * with another value (the user's choice) counts as given.
 */
export function missingNodeFlags(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const given = nodeOptionsOf(execArgv, nodeOptions).map((option) => option.split('=')[0]);
  return NODE_FLAGS.filter((flag) => !given.includes(flag.split('=')[0]));
}

/**
 * What to tell someone who runs `livemig <command>` with Node options `missing` (see
 * {@link missingNodeFlags}) left out, as `node bin/livemig.js` does: nothing if none are. The
 * command still works; its pauses come out longer and noisier.
 */
export function missingNodeFlagsNote(command: string, missing: readonly string[]): string[] {
  if (missing.length === 0) return [];
  const options = missing.join(' ');
  return [
    `note: Node runs here without ${options}, as the livemig command would have it: pauses of a few milliseconds`,
    `  come out longer and noisier (src/cli/node-flags.ts says why); run it as \`npx livemig ${command}\` or \`node ${options} bin/livemig.js ${command}\``,
  ];
}

/**
 * Starts `livemig <args>` as a child with {@link NODE_FLAGS}: its standard input is a pipe (so it
 * can see this process go away), its output a pipe to read, its errors this process's.
 */
export function spawnLivemig(args: readonly string[]): ChildProcess {
  const bin = fileURLToPath(new URL('../../bin/livemig.js', import.meta.url));
  return spawn(process.execPath, [...NODE_FLAGS, bin, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}
