/**
 * Building the two native halves of the write-protect dirty log (`wp/`): the library preloaded
 * into QEMU and the reader that runs beside it. Both are built with gcc at run time, once per
 * content of their sources and flags, into a per-user cache folder, as the test guest is.
 */

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gccBuildOnce } from './gcc-build.js';

/** The C sources; shipped with the package (`src/` is in its files). */
export const WRITE_PROTECT_SOURCE_DIR = fileURLToPath(new URL('../../../src/domain/qemu/wp/', import.meta.url));

/** The longest one build may take, in milliseconds. */
export const WRITE_PROTECT_BUILD_TIMEOUT_MS = 60_000;

const COMMON_FLAGS = ['-O2', '-Wall', '-Wextra'];
const PRELOAD_FLAGS = [...COMMON_FLAGS, '-shared', '-fPIC'];

/** Where built files are kept: a per-user folder in the temp dir. */
export function defaultWriteProtectCacheDir(): string {
  return join(tmpdir(), `livemig-qemu-wp-${process.getuid?.() ?? 'user'}`);
}

/** Paths of the built preload library and reader. */
export interface WriteProtectBinaries {
  /** The shared library for QEMU's LD_PRELOAD. */
  preload: string;
  /** The reader executable. */
  reader: string;
}

let built: Promise<WriteProtectBinaries> | undefined;

/**
 * Builds both halves (once per process, and once per source content across processes: later
 * calls find them in `cacheDir`). Concurrent builds are safe: each writes its own file and
 * renames it into place.
 * @throws DomainFailedError if gcc is missing or fails (its output is in the message).
 */
export function buildWriteProtect(cacheDir = defaultWriteProtectCacheDir()): Promise<WriteProtectBinaries> {
  if (cacheDir !== defaultWriteProtectCacheDir()) return build(cacheDir);
  built ??= build(cacheDir);
  // A failed build is tried again next time (gcc may have been installed meanwhile).
  built.catch(() => (built = undefined));
  return built;
}

async function build(cacheDir: string): Promise<WriteProtectBinaries> {
  const [preload, reader] = await Promise.all([
    buildOne(cacheDir, 'wp-preload.c', PRELOAD_FLAGS, 'so'),
    buildOne(cacheDir, 'wp-reader.c', COMMON_FLAGS, 'bin'),
  ]);
  return { preload, reader };
}

async function buildOne(cacheDir: string, source: string, flags: string[], suffix: string): Promise<string> {
  const path = join(WRITE_PROTECT_SOURCE_DIR, source);
  const hash = createHash('sha256').update(await readFile(path)).update('\0').update(flags.join(' ')).digest('hex').slice(0, 16);
  return gccBuildOnce({
    out: join(cacheDir, `${source.replace(/\.c$/, '')}-${hash}.${suffix}`),
    flags,
    inputs: [path],
    what: `${source} of the write-protect dirty log of QEMU guests`,
    packages: 'gcc libc6-dev',
    timeoutMs: WRITE_PROTECT_BUILD_TIMEOUT_MS,
  });
}
