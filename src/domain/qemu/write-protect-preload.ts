/**
 * Putting the write-protect dirty log into a QEMU process: the environment that preloads
 * `wp/wp-preload.c` and names the RAM file whose mapping it registers, and reading what the
 * preload reported once QEMU has mapped its RAM. QEMU runs whether or not any of this works;
 * a source then finds dirty pages by scanning instead.
 */

import { realpathSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { buildWriteProtect } from './write-protect-build.js';
import type { WriteProtectRange } from './write-protect-log.js';

/** Whether a QEMU process has the write-protect dirty log, and if not, why. */
export type WriteProtectStatus =
  | {
      kind: 'registered';
      /** QEMU's RAM mapping, registered for asynchronous write-protection. */
      range: WriteProtectRange;
      /** The reader executable that reads the log. */
      reader: string;
    }
  | { kind: 'off'; reason: string };

/** The environment for QEMU with the preload, or why there is none. */
export type PreloadEnvironment = { env: NodeJS.ProcessEnv; reader: string } | { env: undefined; off: string };

/** The path the kernel shows for `path` in /proc/PID/fd (symbolic links resolved), whether or not it exists yet. */
function canonicalPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return join(realpathSync(dirname(path)), basename(path));
  }
}

/**
 * This process's environment plus the preload for a QEMU whose RAM file is `ramPath`, with the
 * preload's report going to `statusPath`. Builds the native parts on first use. Never throws:
 * a failure comes back as the reason the log is off.
 */
export async function preloadEnvironment(ramPath: string, statusPath: string): Promise<PreloadEnvironment> {
  if (process.platform !== 'linux') return { env: undefined, off: `write-protect tracking needs Linux, this is ${process.platform}` };
  try {
    const { preload, reader } = await buildWriteProtect();
    const inherited = process.env.LD_PRELOAD;
    return {
      reader,
      env: {
        ...process.env,
        LD_PRELOAD: inherited ? `${preload} ${inherited}` : preload,
        LIVEMIG_WP_RAM_PATH: canonicalPath(ramPath),
        LIVEMIG_WP_STATUS: statusPath,
      },
    };
  } catch (err) {
    return { env: undefined, off: (err as Error).message };
  }
}

/** What the preload wrote to `statusPath` (see wp-preload.c), as a status. */
export async function readPreloadStatus(statusPath: string, reader: string): Promise<WriteProtectStatus> {
  let line: string;
  try {
    line = (await readFile(statusPath, 'utf8')).trim();
  } catch {
    return { kind: 'off', reason: 'the preload in QEMU reported nothing (it did not load, or QEMU never mapped its RAM file)' };
  }
  const ok = /^ok ([0-9a-f]+) ([0-9a-f]+)$/.exec(line);
  if (!ok) return { kind: 'off', reason: `the preload in QEMU could not register its RAM: ${line}` };
  return { kind: 'registered', range: { start: BigInt(`0x${ok[1]!}`), length: Number.parseInt(ok[2]!, 16) }, reader };
}

/**
 * Whether process `pid` maps `ramPath` at exactly `range` now (its /proc/PID/maps), so that a walk
 * of that range reads QEMU's RAM: a walk over addresses mapped to nothing finds no page written
 * and fails nothing.
 */
export async function mapsRamAt(pid: number, range: WriteProtectRange, ramPath: string): Promise<boolean> {
  let maps: string;
  try {
    maps = await readFile(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return false;
  }
  const path = canonicalPath(ramPath);
  const end = range.start + BigInt(range.length);
  return maps.split('\n').some((line) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s+(.*)$/.exec(line);
    return m !== null && BigInt(`0x${m[1]!}`) === range.start && BigInt(`0x${m[2]!}`) === end && m[3] === path;
  });
}
