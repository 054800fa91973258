// The dirty-page scan of backends without a dirty log: pages whose hash differs from the one
// recorded, and only those, in memory of any kind, and in a running simulated guest.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { HashScanner, SCAN_RUN_PAGES } from '../dist/dirtylog/hash-scan.js';
import { openGuestMemory, type GuestMemoryAccess } from '../dist/domain/guest-memory.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';

const PAGE = 4096;
const MiB = 1024 * 1024;
/** More than one run of the scanner, the last run short. */
const PAGES = SCAN_RUN_PAGES + 44;

const dir = mkdtempSync(join(tmpdir(), 'livemig-hash-scan-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Changes pages of `write` (a writable accessor of the memory the scanner reads). */
function changePages(write: GuestMemoryAccess): void {
  const page = new Uint8Array(PAGE);
  const edit = (pfn: number, change: (bytes: Uint8Array) => void): void => {
    write.readPages(Uint32Array.of(pfn), page);
    change(page);
    write.writePages(Uint32Array.of(pfn), page);
  };
  edit(3, (b) => (b[100] = b[100]! ^ 1)); // one bit
  edit(SCAN_RUN_PAGES - 1, (b) => (b[PAGE - 1] = b[PAGE - 1]! ^ 0x80)); // last byte of a run
  write.zeroPages(Uint32Array.of(SCAN_RUN_PAGES)); // first page of the next run, now zeros
  edit(PAGES - 1, (b) => b.reverse()); // the last page
  // Written, then written back: the same contents as recorded, so not changed.
  edit(40, (b) => (b[0] = b[0]! ^ 0xff));
  edit(40, (b) => (b[0] = b[0]! ^ 0xff));
}

const CHANGED = [3, SCAN_RUN_PAGES - 1, SCAN_RUN_PAGES, PAGES - 1];

describe.each(['shared', 'file'] as const)('over %s memory', (kind) => {
  test('names the changed pages, ascending, in all of memory and in a range, leaving the hashes alone', () => {
    const image = randomBytes(PAGES * PAGE);
    let memory;
    if (kind === 'shared') {
      const buffer = new SharedArrayBuffer(image.length);
      new Uint8Array(buffer).set(image);
      memory = { kind, buffer, byteOffset: 0, byteLength: image.length } as const;
    } else {
      const path = join(dir, 'ram');
      writeFileSync(path, image);
      memory = { kind, path, byteOffset: 0, byteLength: image.length } as const;
    }
    const read = openGuestMemory(memory, PAGE);
    const write = openGuestMemory(memory, PAGE, { writable: true });
    try {
      const scanner = new HashScanner(read, new Uint32Array(PAGES));
      scanner.record();
      expect([...scanner.changedPages()]).toEqual([]);
      changePages(write);
      expect([...scanner.changedPages()]).toEqual(CHANGED);
      // Nothing was recorded by the scan: the same pages again.
      expect([...scanner.changedPages()]).toEqual(CHANGED);
      expect([...scanner.changedPages(10, SCAN_RUN_PAGES - 10)]).toEqual([SCAN_RUN_PAGES - 1]);
      scanner.record(0, SCAN_RUN_PAGES);
      expect([...scanner.changedPages()]).toEqual([SCAN_RUN_PAGES, PAGES - 1]);
    } finally {
      read.close();
      write.close();
    }
  });
});

test('a hash table of another size is refused', () => {
  const buffer = new SharedArrayBuffer(4 * PAGE);
  const read = openGuestMemory({ kind: 'shared', buffer, byteOffset: 0, byteLength: buffer.byteLength }, PAGE);
  expect(() => new HashScanner(read, new Uint32Array(5))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
});

test('in a running guest, finds exactly the pages whose bytes changed, all of them in its dirty log', async () => {
  const guest = await SimulatedGuest.boot({ memoryBytes: 16 * MiB, vcpus: 2, workload: 'hotset', dirtyRateBytesPerSec: 40e6, hotSetBytes: 4 * MiB, seed: 11 });
  const read = openGuestMemory(guest.memory(), PAGE);
  try {
    await guest.pause();
    const before = guest.bytes.slice();
    const scanner = new HashScanner(read, new Uint32Array(guest.pageCount));
    scanner.record();
    guest.enableDirtyLog();
    await guest.resume();
    await new Promise((resolve) => setTimeout(resolve, 150));
    await guest.pause();

    const changed: number[] = [];
    for (let pfn = 0; pfn < guest.pageCount; pfn++) {
      const at = pfn * PAGE;
      if (Buffer.compare(before.subarray(at, at + PAGE), guest.bytes.subarray(at, at + PAGE)) !== 0) changed.push(pfn);
    }
    expect(changed.length).toBeGreaterThan(10);
    const found = [...scanner.changedPages()];
    expect(found).toEqual(changed);
    const logged = new Set(guest.readDirtyLog());
    expect(found.filter((pfn) => !logged.has(pfn))).toEqual([]);
  } finally {
    read.close();
    await guest.destroy();
  }
});
