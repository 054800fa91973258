// Guest memory of the simulated guest is a SharedArrayBuffer, which glibc maps for V8. Under the
// tunable an operator may set (HUGE_PAGES_TUNABLE; livemig does not set it, src/cli/node-flags.ts
// says why), glibc asks the kernel for transparent huge pages there; without it, only a kernel set
// to "always" gives them. What the kernel allows is read from sysfs, so each mode has its
// expected outcome.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { HUGE_PAGES_TUNABLE } from '../dist/cli/node-flags.js';

const MIB = 1024 * 1024;

/** Huge-page-backed bytes of a fresh process after it writes every page of a 64 MiB SharedArrayBuffer. */
function hugeBytesOfGuestMemory(tunables: string | undefined): number {
  const script = `
    const memory = new Uint8Array(new SharedArrayBuffer(64 * 1024 * 1024));
    for (let i = 0; i < memory.length; i += 4096) memory[i] = 1;
    const kb = /AnonHugePages:\\s+(\\d+) kB/.exec(require('fs').readFileSync('/proc/self/smaps_rollup', 'utf8'))[1];
    process.stdout.write(String(Number(kb) * 1024));`;
  const { GLIBC_TUNABLES: _, ...env } = process.env;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: tunables === undefined ? env : { ...env, GLIBC_TUNABLES: tunables }, timeout: 30_000 });
  expect(run.status, run.stderr).toBe(0);
  return Number(run.stdout);
}

test('guest memory is backed by huge pages under the tunable wherever the kernel offers them, and not without it under madvise', () => {
  const mode = /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
  const withTunable = hugeBytesOfGuestMemory(HUGE_PAGES_TUNABLE);
  const without = hugeBytesOfGuestMemory(undefined);
  if (mode === 'never') {
    expect(withTunable).toBe(0);
  } else {
    // Most of it: the mapping's ends need not be 2 MiB-aligned.
    expect(withTunable).toBeGreaterThanOrEqual(32 * MIB);
  }
  if (mode === 'madvise') expect(without).toBeLessThan(32 * MIB);
  if (mode === 'always') expect(without).toBeGreaterThanOrEqual(32 * MIB);
}, 60_000);
