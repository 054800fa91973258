/**
 * livemig's QEMU test guest (`guest/guest.c`): building it, its kernel command line, and reading
 * what it reports on its serial port. The guest writes its memory at a paced rate and checks it
 * page by page; its serial log shows that it runs and whether its memory is still consistent.
 */

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from '../../errors.js';
import { gccBuildOnce } from './gcc-build.js';

/** The guest's sources; shipped with the package (`src/` is in its files). */
export const TEST_GUEST_SOURCE_DIR = fileURLToPath(new URL('../../../src/domain/qemu/guest/', import.meta.url));

const SOURCES = ['guest.c', 'link.ld'] as const;

/** A freestanding 32-bit kernel: no libc, no libgcc, no SSE (the guest never enables it). */
const GCC_FLAGS = [
  '-m32', '-O2', '-ffreestanding', '-nostdlib', '-fno-pie', '-no-pie', '-fno-stack-protector',
  '-fno-asynchronous-unwind-tables', '-mgeneral-regs-only', '-Wall', '-Wextra',
  '-Wl,--build-id=none',
];

/** The longest a build of the guest may take, in milliseconds. */
export const TEST_GUEST_BUILD_TIMEOUT_MS = 60_000;

/** Page writes per second when the command line names none (the guest's own default). */
export const DEFAULT_TEST_GUEST_RATE_PAGES_PER_SECOND = 1000;

/** Where built kernels are kept, one file per source hash: a per-user folder in the temp dir. */
export function defaultTestGuestCacheDir(): string {
  return join(tmpdir(), `livemig-qemu-guest-${process.getuid?.() ?? 'user'}`);
}

/**
 * Builds the test guest with gcc (once per content of its sources and flags; later calls find
 * the kernel in `cacheDir`) and resolves with the path of the multiboot ELF for `-kernel`.
 * Concurrent builds are safe: each writes its own file and renames it into place.
 * @throws DomainFailedError if gcc is missing or fails (its output is in the message).
 */
export async function buildTestGuest(cacheDir = defaultTestGuestCacheDir()): Promise<string> {
  return gccBuildOnce({
    out: join(cacheDir, `guest-${await testGuestSourceHash()}.elf`),
    flags: [...GCC_FLAGS, '-T', join(TEST_GUEST_SOURCE_DIR, 'link.ld')],
    inputs: [join(TEST_GUEST_SOURCE_DIR, 'guest.c')],
    what: 'the QEMU test guest',
    packages: 'gcc libc6-dev-i386',
    timeoutMs: TEST_GUEST_BUILD_TIMEOUT_MS,
  });
}

/**
 * The hash of the guest's sources and build flags (16 hex digits), which names its kernel. Two
 * hosts with the same hash build the same kernel, so a migrating guest names its kernel by this
 * hash rather than by a path on the source host.
 */
export async function testGuestSourceHash(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of SOURCES) hash.update(name).update('\0').update(await readFile(join(TEST_GUEST_SOURCE_DIR, name))).update('\0');
  hash.update(GCC_FLAGS.join(' '));
  return hash.digest('hex').slice(0, 16);
}

/** What the test guest is asked to do. */
export interface TestGuestOptions {
  /** Page writes per second; 0 writes as fast as the vCPU can. @default 1000 */
  ratePagesPerSecond?: number;
  /** Size of the region it writes, in MiB. @default all RAM above its version table */
  regionMiB?: number;
}

/** The kernel command line (`-append`) for `options`. */
export function testGuestAppend(options: TestGuestOptions = {}): string {
  const words: string[] = [];
  const rate = options.ratePagesPerSecond ?? DEFAULT_TEST_GUEST_RATE_PAGES_PER_SECOND;
  if (!Number.isSafeInteger(rate) || rate < 0 || rate > 0xffff_ffff) {
    throw new InvalidArgumentError(`the test guest's rate must be a whole number of pages per second from 0 (unpaced), got ${rate}`);
  }
  words.push(`rate=${rate}`);
  if (options.regionMiB !== undefined) {
    if (!Number.isSafeInteger(options.regionMiB) || options.regionMiB < 1 || options.regionMiB > 4096) {
      throw new InvalidArgumentError(`the test guest's region must be a whole number of MiB from 1 to 4096, got ${options.regionMiB}`);
    }
    words.push(`mib=${options.regionMiB}`);
  }
  return words.join(' ');
}

/** The guest's first line: where its pages are (guest-physical, which is the RAM file offset on q35 below 2.75 GiB). */
export interface TestGuestStart {
  kind: 'start';
  pages: number;
  firstPageAddress: number;
  tableAddress: number;
  ratePagesPerSecond: number;
  tscHz: number;
}

/** The guest's line each second; every count is since boot. */
export interface TestGuestReport {
  kind: 'report';
  /** Seconds the guest has run (guest time: it stands still while QEMU is stopped). */
  seconds: number;
  writes: number;
  checked: number;
  /** Complete checks of the whole region. */
  passes: number;
  errors: number;
}

/** A page the guest found different from what its version says. */
export interface TestGuestCheckFailure {
  kind: 'check-failed';
  page: number;
  version: number;
  word: number;
  want: number;
  got: number;
}

export type TestGuestLine = TestGuestStart | TestGuestReport | TestGuestCheckFailure;

/** The `key=value` fields after `prefix` on a line, or undefined if the line has no such prefix. */
function fields(line: string, prefix: string): Map<string, number> | undefined {
  const at = line.indexOf(prefix);
  if (at === -1) return undefined;
  const found = new Map<string, number>();
  for (const m of line.slice(at + prefix.length).matchAll(/(\w+)=(0x[0-9a-f]+|\d+)/g)) found.set(m[1]!, Number(m[2]));
  return found;
}

function need(map: Map<string, number>, ...keys: string[]): number[] | undefined {
  const values = keys.map((k) => map.get(k));
  return values.every((v) => v !== undefined) ? (values as number[]) : undefined;
}

/** One line of the guest's serial output, or undefined for any other text (the firmware's). */
export function parseTestGuestLine(line: string): TestGuestLine | undefined {
  let f = fields(line, 'guest: running ');
  if (f) {
    const v = need(f, 'pages', 'first', 'table', 'rate', 'tsc_hz');
    return v && { kind: 'start', pages: v[0]!, firstPageAddress: v[1]!, tableAddress: v[2]!, ratePagesPerSecond: v[3]!, tscHz: v[4]! };
  }
  f = fields(line, 'check failed: ');
  if (f) {
    const v = need(f, 'page', 'version', 'word', 'want', 'got');
    return v && { kind: 'check-failed', page: v[0]!, version: v[1]!, word: v[2]!, want: v[3]!, got: v[4]! };
  }
  if (line.startsWith('t=')) {
    const v = need(fields(line, '')!, 't', 'writes', 'checked', 'passes', 'errors');
    return v && { kind: 'report', seconds: v[0]!, writes: v[1]!, checked: v[2]!, passes: v[3]!, errors: v[4]! };
  }
  return undefined;
}

/**
 * Every complete line the guest has written to its serial log so far, parsed; the firmware's
 * text and a last line still being written are left out.
 */
export async function readTestGuestLog(serialPath: string): Promise<TestGuestLine[]> {
  let text: string;
  try {
    text = await readFile(serialPath, 'latin1');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const lines = text.split('\n');
  lines.pop();
  return lines.flatMap((l) => parseTestGuestLine(l.replace(/\r$/, '')) ?? []);
}
