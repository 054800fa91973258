// QEMU in tests: a test that needs QEMU runs its body where qemu-system-x86_64 is installed. In CI
// (which installs it) QEMU must be there; elsewhere, without it, the test says plainly that it did
// not run and asserts exactly that, so the outcome is visible rather than silently skipped.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { QemuProcess, findQemuBinary, type QemuStartOptions } from '../../dist/domain/qemu/qemu-process.js';
import { buildTestGuest, readTestGuestLog, testGuestAppend, type TestGuestLine, type TestGuestOptions, type TestGuestReport } from '../../dist/domain/qemu/test-guest.js';

export const QEMU_FOUND = findQemuBinary() !== undefined;

/** `test(name, body)` for a body that needs QEMU; see the file's head for what happens without it. */
export function qemuTest(name: string, body: () => Promise<void>, timeoutMs?: number): void {
  test(name, async () => {
    if (process.env.CI) expect(QEMU_FOUND, 'CI must install qemu-system-x86 (see .ci/run)').toBe(true);
    if (!QEMU_FOUND) {
      console.warn(`QEMU tests did not run: qemu-system-x86_64 not found (test "${name}")`);
      expect(QEMU_FOUND).toBe(false);
      return;
    }
    await body();
  }, timeoutMs);
}

/** Polls `probe` every 50 ms until it returns a value other than undefined, for up to `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`waited ${timeoutMs} ms for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export interface TestGuest {
  qemu: QemuProcess;
  serialPath: string;
  /** Every parsed line of the serial log so far. */
  lines(): Promise<TestGuestLine[]>;
  reports(): Promise<TestGuestReport[]>;
  /** Resolves with the reports once there are at least `count` of them. */
  waitForReports(count: number): Promise<TestGuestReport[]>;
  /** Ends QEMU and removes its RAM file and the serial log. */
  stop(): Promise<void>;
}

let serial = 0;

/** Builds the test guest and boots it under QEMU with `memoryMiB` of RAM in /dev/shm. */
export async function startTestGuest(memoryMiB: number, guest: TestGuestOptions = {}, options: QemuStartOptions = {}): Promise<TestGuest> {
  const kernel = await buildTestGuest();
  const dir = await mkdtemp(join(tmpdir(), 'livemig-test-guest-'));
  const serialPath = join(dir, 'serial.log');
  const ramPath = `/dev/shm/livemig-test-${process.pid}-${serial++}`;
  let qemu: QemuProcess;
  try {
    qemu = await QemuProcess.start({ memoryMiB, ramPath, kernel, append: testGuestAppend(guest), serialPath }, options);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const lines = (): Promise<TestGuestLine[]> => readTestGuestLog(serialPath);
  const reports = async (): Promise<TestGuestReport[]> => (await lines()).filter((l): l is TestGuestReport => l.kind === 'report');
  return {
    qemu,
    serialPath,
    lines,
    reports,
    waitForReports: (count) =>
      waitFor(`${count} guest reports in ${serialPath}`, async () => {
        const r = await reports();
        return r.length >= count ? r : undefined;
      }),
    async stop() {
      await qemu.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
