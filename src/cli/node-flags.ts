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
 * The glibc tunable of every livemig process: bin/livemig.js sets it in its first line, and
 * {@link spawnLivemig} for the processes it starts. glibc then asks the kernel for transparent
 * huge pages on the large blocks it maps, guest memory among them (a SharedArrayBuffer is one
 * such block), as QEMU asks for its guest RAM. A target's first touch of fresh guest memory then
 * costs one fault per 2 MiB instead of one per 4 KiB page, less than half the CPU (figures in
 * docs/bench/README.md, "Huge pages"). Without transparent huge pages in the kernel it changes
 * nothing.
 */
export const HUGE_PAGES_TUNABLE = 'glibc.malloc.hugetlb=1';

/**
 * `tunables` (a GLIBC_TUNABLES value) with {@link HUGE_PAGES_TUNABLE} in front; a value the
 * user gave `glibc.malloc.hugetlb` comes later and so wins.
 */
export function withHugePagesTunable(tunables: string | undefined): string {
  if (tunables !== undefined && hugePagesTunableSet(tunables)) return tunables;
  return tunables === undefined || tunables === '' ? HUGE_PAGES_TUNABLE : `${HUGE_PAGES_TUNABLE}:${tunables}`;
}

/** Whether `tunables` (a GLIBC_TUNABLES value) leaves glibc's huge pages on, as livemig wants them. */
export function hugePagesTunableSet(tunables = process.env.GLIBC_TUNABLES ?? ''): boolean {
  const last = tunables
    .split(':')
    .filter((tunable) => tunable.startsWith('glibc.malloc.hugetlb='))
    .at(-1);
  return last !== undefined && last !== 'glibc.malloc.hugetlb=0';
}

/**
 * What to tell someone whose `livemig <command>` holds guest memory without glibc's huge pages
 * (see {@link hugePagesTunableSet}): nothing if it has them.
 */
export function missingHugePagesNote(command: string, set: boolean): string[] {
  if (set) return [];
  return [
    `note: guest memory here is mapped in 4 KiB pages, not huge pages, so a target receives the first pass more slowly;`,
    `  run it as \`npx livemig ${command}\` or with GLIBC_TUNABLES=${HUGE_PAGES_TUNABLE} (src/cli/node-flags.ts says why)`,
  ];
}

/**
 * Starts `livemig <args>` as a child with {@link NODE_FLAGS} and {@link HUGE_PAGES_TUNABLE}: its
 * standard input is a pipe (so it can see this process go away), its output a pipe to read, its
 * errors this process's.
 */
export function spawnLivemig(args: readonly string[]): ChildProcess {
  const bin = fileURLToPath(new URL('../../bin/livemig.js', import.meta.url));
  const env = { ...process.env, GLIBC_TUNABLES: withHugePagesTunable(process.env.GLIBC_TUNABLES) };
  return spawn(process.execPath, [...NODE_FLAGS, bin, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env });
}
