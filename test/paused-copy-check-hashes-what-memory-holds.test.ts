// The check of the paused copy, on its own: whether worker threads or this thread hash the memory,
// its digest is the digest of what the memory holds, and it counts the pages that differ from the
// hashes of what was sent.
import { afterAll, beforeAll, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { PausedCopyCheck } from '../dist/precopy/copy-verification.js';
import { digestBuffer, PageDigest } from '../dist/protocol/page-digest.js';

const MiB = 1024 * 1024;
const PAGE = 4096;
let guest: SimulatedGuest;
let sent: PageDigest;
const CHANGED = [0, 5000, 16383];

beforeAll(async () => {
  guest = await SimulatedGuest.boot({ memoryBytes: 64 * MiB, vcpus: 1, workload: 'idle', dirtyRateBytesPerSec: 0, hotSetBytes: 4 * MiB, seed: 3 }, 'check');
  await guest.pause();
  // What was "sent": the memory as it is now; then a few pages change behind the sender's back.
  sent = new PageDigest(guest.pageCount, PAGE);
  for (let pfn = 0; pfn < guest.pageCount; pfn++) sent.update(pfn, guest.bytes, pfn * PAGE);
  for (const pfn of CHANGED) guest.bytes[pfn * PAGE + 17]! ^= 0xff;
});
afterAll(async () => {
  await guest.destroy();
});

test.each([
  [0, 'this-thread'],
  [1, 'workers'],
  [3, 'workers'],
] as const)('with %i worker threads: the digest of what memory holds, and the pages that differ from what was sent', async (threads, method) => {
  const check = await new PausedCopyCheck(guest, sent, threads).start();
  expect(check.method).toBe(method);
  expect(check.digest).toBe(digestBuffer(guest.bytes, PAGE));
  expect(check.digest).not.toBe(sent.digest());
  expect(check.missedPages).toBe(CHANGED.length);
});

test('a cancelled check rejects with ERR_CANCELLED', async () => {
  const check = new PausedCopyCheck(guest, sent, 2);
  const outcome = check.start();
  check.cancel();
  await expect(outcome).rejects.toMatchObject({ code: 'ERR_CANCELLED' });
});
