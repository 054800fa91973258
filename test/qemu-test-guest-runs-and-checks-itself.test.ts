import { open } from 'node:fs/promises';
import { afterEach, expect } from 'vitest';
import type { TestGuestCheckFailure, TestGuestStart } from '../dist/domain/qemu/test-guest.js';
import { qemuTest, startTestGuest, waitFor, type TestGuest } from './helpers/qemu.js';

const MIB = 64;
let guest: TestGuest | undefined;

afterEach(async () => {
  await guest?.stop();
  guest = undefined;
});

qemuTest('the guest boots, writes at its rate and checks its whole memory without an error', async () => {
  guest = await startTestGuest(MIB, { ratePagesPerSecond: 2000 });
  const reports = await guest.waitForReports(3);
  const start = (await guest.lines()).find((l): l is TestGuestStart => l.kind === 'start');
  expect(start).toBeDefined();
  // Nearly all of the 64 MiB, less the firmware's first 2 MiB and the version table.
  expect(start!.pages).toBeGreaterThan(((MIB - 3) * 1024 * 1024) / 4096);
  expect(start!.ratePagesPerSecond).toBe(2000);
  for (let i = 1; i < reports.length; i++) {
    expect(reports[i]!.seconds).toBeGreaterThan(reports[i - 1]!.seconds);
    expect(reports[i]!.writes).toBeGreaterThan(reports[i - 1]!.writes);
    expect(reports[i]!.checked).toBeGreaterThan(reports[i - 1]!.checked);
  }
  // Paced: never ahead of 2000 writes per second of its clock (a busy host may hold it back).
  for (const r of reports) expect(r.writes).toBeLessThanOrEqual(r.seconds * 2000 + 2);
  expect(reports[2]!.passes).toBeGreaterThan(0);
  expect(reports.every((r) => r.errors === 0)).toBe(true);
});

qemuTest('paused with stop it reports nothing; after cont it goes on where it was, still consistent', async () => {
  guest = await startTestGuest(MIB, { ratePagesPerSecond: 2000 });
  await guest.waitForReports(2);
  await guest.qemu.qmp.execute('stop');
  expect(await guest.qemu.qmp.execute('query-status')).toMatchObject({ status: 'paused', running: false });
  const atStop = await guest.reports();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(await guest.reports()).toEqual(atStop);

  await guest.qemu.qmp.execute('cont');
  expect(await guest.qemu.qmp.execute('query-status')).toMatchObject({ status: 'running', running: true });
  const after = await guest.waitForReports(atStop.length + 2);
  const last = after.at(-1)!;
  const before = atStop.at(-1)!;
  expect(last.seconds).toBeGreaterThan(before.seconds);
  expect(last.writes).toBeGreaterThan(before.writes);
  expect(last.passes).toBeGreaterThan(before.passes);
  expect(after.every((r) => r.errors === 0)).toBe(true);
});

qemuTest('a byte flipped in its RAM file while it runs is reported as a failed check', async () => {
  guest = await startTestGuest(MIB, { ratePagesPerSecond: 500 });
  await guest.waitForReports(1);
  const start = (await guest.lines()).find((l): l is TestGuestStart => l.kind === 'start')!;

  // Eight pages spread over the region, one byte each (in word 100). The guest may rewrite one
  // of them before its checker gets there (then that flip is gone), but not all eight.
  const flipped = Array.from({ length: 8 }, (_, i) => Math.floor(((i + 0.5) * start.pages) / 8));
  const ram = await open(guest.qemu.definition.ramPath, 'r+');
  try {
    const byte = Buffer.alloc(1);
    for (const page of flipped) {
      const at = start.firstPageAddress + page * 4096 + 100 * 4;
      await ram.read(byte, 0, 1, at);
      byte[0] = byte[0]! ^ 0x40;
      await ram.write(byte, 0, 1, at);
    }
  } finally {
    await ram.close();
  }

  const failures = await waitFor('a failed check', async () => {
    const found = (await guest!.lines()).filter((l): l is TestGuestCheckFailure => l.kind === 'check-failed');
    return found.length > 0 ? found : undefined;
  });
  for (const f of failures) {
    expect(flipped).toContain(f.page);
    expect(f.word).toBe(100);
    expect((f.want ^ f.got) >>> 0).toBe(0x40);
  }
  // The per-second line counts them too, once each: the guest rewrites a bad page afresh.
  const reports = await guest.waitForReports((await guest.reports()).length + 2);
  const errors = reports.at(-1)!.errors;
  expect(errors).toBe((await guest.lines()).filter((l) => l.kind === 'check-failed').length);
  expect(errors).toBeGreaterThanOrEqual(1);
  expect(errors).toBeLessThanOrEqual(flipped.length);
});
