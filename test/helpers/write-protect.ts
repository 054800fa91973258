// The write-protect dirty log of QEMU guests needs Linux 6.7 or later (UFFD_FEATURE_WP_ASYNC and
// PAGEMAP_SCAN). On such a kernel a test that needs the log runs and the log must work; on an
// older one the test says plainly that it did not run and asserts the fallback instead: the
// source scans, and says why.
import { release } from 'node:os';
import { expect } from 'vitest';
import { QemuSourceDomain } from '../../dist/domain/qemu/source-domain.js';
import { testGuestSourceHash } from '../../dist/domain/qemu/test-guest.js';
import { qemuTest, startTestGuest } from './qemu.js';

const [major = 0, minor = 0] = release().split('.').map((n) => Number.parseInt(n, 10));
/** Whether this kernel is new enough for the write-protect dirty log. */
export const KERNEL_HAS_WP_ASYNC = process.platform === 'linux' && (major > 6 || (major === 6 && minor >= 7));

/** `qemuTest` for a body that needs the write-protect dirty log; see the file's head. */
export function writeProtectTest(name: string, body: () => Promise<void>, timeoutMs?: number): void {
  qemuTest(
    name,
    async () => {
      if (KERNEL_HAS_WP_ASYNC) return body();
      console.warn(`write-protect log tests did not run: kernel ${release()} is older than 6.7 (test "${name}")`);
      const guest = await startTestGuest(16);
      try {
        const domain = await QemuSourceDomain.attach(guest.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() } });
        expect(domain.dirtyTracking).toBe('scan');
        expect(domain.dirtyLogUnavailable).toBeTruthy();
      } finally {
        await guest.stop();
      }
    },
    timeoutMs,
  );
}
