/**
 * Building a C source shipped with the package into a per-user cache, once per content: the
 * QEMU test guest and the write-protect dirty log's two halves are built this way at run time.
 */

import { execFile } from 'node:child_process';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DomainFailedError } from '../../errors.js';

/** What to build. */
export interface GccBuild {
  /** The finished file; its name carries the hash of what it is built from. */
  out: string;
  /** gcc's arguments before `-o`, and the inputs after it. */
  flags: readonly string[];
  inputs: readonly string[];
  /** What is built, for messages ("the QEMU test guest"). */
  what: string;
  /** The Debian packages gcc needs for it, for the message when gcc is missing. */
  packages: string;
  /** The longest the build may take, in milliseconds. */
  timeoutMs: number;
}

/**
 * Resolves with `out`, building it first unless it is already there. Concurrent builds are safe:
 * each writes its own file and renames it into place.
 * @throws DomainFailedError if gcc is missing or fails (its output is in the message).
 */
export async function gccBuildOnce(b: GccBuild): Promise<string> {
  if (await isFile(b.out)) return b.out;
  await mkdir(dirname(b.out), { recursive: true, mode: 0o700 });
  const partial = `${b.out}.${process.pid}.${Date.now()}.tmp`;
  try {
    await new Promise<void>((resolve, reject) => {
      execFile('gcc', [...b.flags, '-o', partial, ...b.inputs], { timeout: b.timeoutMs }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(new DomainFailedError(`gcc not found on PATH: ${b.what} is built with gcc (Debian: apt-get install ${b.packages})`, { cause: err }));
        }
        reject(new DomainFailedError(`gcc could not build ${b.what}: ${stderr.trim() || err.message}`, { cause: err }));
      });
    });
    await rename(partial, b.out);
  } finally {
    await rm(partial, { force: true });
  }
  return b.out;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
