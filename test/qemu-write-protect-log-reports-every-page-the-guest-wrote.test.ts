// The write-protect dirty log of a running QEMU guest (preload in QEMU, PAGEMAP_SCAN reader
// beside it) reports every page the guest wrote: each page whose bytes in the RAM file changed
// between two reads is in the log taken between them. While the guest runs a write may land after
// a take and before the next read, so there the page must be in that take or the next one. The
// log also reports little beyond what changed: a log that never re-arms would report every page
// ever written. Without the preload, the source falls back to scanning.
import { readFileSync } from 'node:fs';
import { afterEach, expect } from 'vitest';
import { QemuSourceDomain } from '../dist/domain/qemu/source-domain.js';
import { testGuestSourceHash } from '../dist/domain/qemu/test-guest.js';
import { WriteProtectLog } from '../dist/domain/qemu/write-protect-log.js';
import { qemuTest, startTestGuest, type TestGuest } from './helpers/qemu.js';
import { writeProtectTest } from './helpers/write-protect.js';

const MIB = 64;
const PAGE = 4096;
/** About 20 MB/s: a few thousand of the 16384 pages change between two reads 300 ms apart. */
const RATE_PAGES_PER_SECOND = 5000;
const INTERVAL_MS = 300;
const ROUNDS = 6;

let guest: TestGuest | undefined;
let domain: QemuSourceDomain | undefined;
let reader: WriteProtectLog | undefined;

afterEach(async () => {
  reader?.close();
  if (domain) await domain.destroy();
  else await guest?.stop();
  guest = domain = reader = undefined;
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The pages whose bytes differ between two reads of the RAM file. */
function changedPages(before: Buffer, after: Buffer): number[] {
  const changed: number[] = [];
  for (let at = 0; at < before.length; at += PAGE) {
    if (before.compare(after, at, at + PAGE, at, at + PAGE) !== 0) changed.push(at / PAGE);
  }
  return changed;
}

async function startGuest(): Promise<TestGuest> {
  const g = await startTestGuest(MIB, { ratePagesPerSecond: RATE_PAGES_PER_SECOND });
  await g.waitForReports(1);
  return g;
}

async function attach(g: TestGuest): Promise<QemuSourceDomain> {
  return QemuSourceDomain.attach(g.qemu, { kernel: { kind: 'test-guest', hash: await testGuestSourceHash() }, name: 'wp-log' });
}

/**
 * With the guest stopped at each take and the read after it: every page that changed since the
 * previous read is in the take, and the take holds little else; a peek just before counts what
 * the take returns. `take` has been armed before; a first take, with the guest stopped, starts
 * the log and the first read at the same point.
 */
async function expectExactWhilePausedAtTakes(g: TestGuest, take: () => Promise<Uint32Array>, peek: () => Promise<number>): Promise<void> {
  const ramPath = g.qemu.definition.ramPath;
  await g.qemu.qmp.execute('stop');
  await take();
  let before = readFileSync(ramPath);
  await g.qemu.qmp.execute('cont');
  let changedTotal = 0;
  for (let round = 0; round < ROUNDS; round++) {
    await sleep(INTERVAL_MS);
    await g.qemu.qmp.execute('stop');
    const peeked = await peek();
    const logged = await take();
    expect(peeked, `the peek before the take in round ${round}`).toBe(logged.length);
    const after = readFileSync(ramPath);
    await g.qemu.qmp.execute('cont');
    const inLog = new Set(logged);
    const changed = changedPages(before, after);
    expect(changed.filter((p) => !inLog.has(p)), `pages changed but missing from the log in round ${round}`).toEqual([]);
    // Logged but unchanged: pages written with what they held (the guest's own bookkeeping).
    expect(logged.length - changed.length, `pages logged beyond those that changed in round ${round}`).toBeLessThan(Math.max(64, changed.length / 4));
    for (let i = 1; i < logged.length; i++) {
      if (logged[i]! <= logged[i - 1]!) expect.fail(`the log is not ascending, each page once: ${logged[i]} after ${logged[i - 1]}`);
    }
    changedTotal += changed.length;
    before = after;
  }
  // The guest wrote enough for the comparison to mean something.
  expect(changedTotal).toBeGreaterThan(ROUNDS * 200);
}

writeProtectTest('the write-protect log holds every page the guest changed, paused at each take and running', async () => {
  guest = await startGuest();
  domain = await attach(guest);
  expect(domain.dirtyLogUnavailable).toBeUndefined();
  expect(domain.dirtyTracking).toBe('log');
  const d = domain;

  await d.enableDirtyLog();
  await expectExactWhilePausedAtTakes(guest, async () => d.readDirtyLog(), async () => d.peekDirtyCount());

  // Running: a page changed between two reads is in the take between them or in the next one.
  const ramPath = guest.qemu.definition.ramPath;
  let previousLog = new Set(await d.readDirtyLog());
  let before = readFileSync(ramPath);
  let pendingChanged: number[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    await sleep(INTERVAL_MS);
    const logged = new Set(await d.readDirtyLog());
    const missed = pendingChanged.filter((p) => !previousLog.has(p) && !logged.has(p));
    expect(missed, `pages changed but in neither take around round ${round}`).toEqual([]);
    const after = readFileSync(ramPath);
    pendingChanged = changedPages(before, after);
    expect(pendingChanged.length).toBeGreaterThan(0);
    before = after;
    previousLog = logged;
  }

  // The guest is still fine after all this, with no check failed.
  expect((await guest.reports()).at(-1)!.errors).toBe(0);
}, 120_000);

writeProtectTest('a walk that finds more runs of written pages than one call returns goes on where it stopped', async () => {
  guest = await startGuest();
  const wp = guest.qemu.writeProtect;
  if (wp.kind !== 'registered') expect.fail(`the preload is not in QEMU: ${wp.reason}`);
  // About a thousand runs per take, eight per call.
  reader = await WriteProtectLog.open(wp.reader, guest.qemu.pid, wp.range, PAGE, { runsPerCall: 8 });
  const r = reader;
  expect(await r.arm()).toBeGreaterThan(0);
  await expectExactWhilePausedAtTakes(guest, () => r.take(), () => r.peek());
}, 120_000);

qemuTest('without the preload in QEMU the source finds dirty pages by scanning, and says why', async () => {
  guest = await startTestGuest(MIB, { ratePagesPerSecond: RATE_PAGES_PER_SECOND }, { writeProtectLog: false });
  await guest.waitForReports(1);
  expect(guest.qemu.writeProtect.kind).toBe('off');
  domain = await attach(guest);
  expect(domain.dirtyTracking).toBe('scan');
  expect(domain.dirtyLogUnavailable).toMatch(/not asked for/);
  expect(await domain.readDirtyLog()).toHaveLength(0);
}, 60_000);
