/** How the livemig command runs Node, for itself and for the processes it starts. */

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Node options of every livemig process: bin/livemig.js passes them in its first line, and
 * {@link spawnLivemig} to the agents and far ends it starts.
 *
 * `--v8-pool-size=1`: V8's background threads (sweeping after a collection, unmapping, optimising
 * compilations) would otherwise run during the pause, right after the collection the engine makes
 * before it, and on a host with few cores the switchover's messages would wait for a core.
 *
 * `--initial-old-space-size=128`: a floor under the old generation's limit, so that a target
 * receiving pages (the WebSocket's buffers count against that limit) does not run a full
 * collection every few tens of milliseconds, one of which would land in the pause. A limit, not
 * a reservation: the heap still grows only as it is used.
 *
 * The traces and figures behind both are in docs/bench/README.md ("Node options").
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
 * The glibc tunable that maps guest memory in transparent huge pages, as QEMU asks for its
 * anonymous RAM: glibc then asks the kernel for them on the large blocks it maps, and a
 * SharedArrayBuffer is one. livemig does not set it: where huge pages come cheap a target's first
 * touch of fresh guest memory costs less than half the CPU, but where they do not (a virtual
 * machine whose host takes freed memory back, a host that must compact memory to find them) it
 * costs many times more (docs/bench/README.md, "Huge pages off by default"). An operator who
 * knows the host may set it; the processes livemig starts inherit it.
 */
export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';

/**
 * Starts `livemig <args>` as a child with {@link NODE_FLAGS} and this process's environment: its
 * standard input is a pipe (so it can see this process go away), its output a pipe to read, its
 * errors this process's.
 */
export function spawnLivemig(args: readonly string[]): ChildProcess {
  const bin = fileURLToPath(new URL('../../bin/livemig.js', import.meta.url));
  return spawn(process.execPath, [...NODE_FLAGS, bin, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}
