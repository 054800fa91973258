// The fault proxy with nothing armed changes nothing: a migration through it completes, verified,
// and the guest runs on the target exactly as its replay oracle says. Without this, a cell of the
// fault matrix could be showing a fault of the relay rather than the one it injected.
import { expect, test } from 'vitest';
import { FINAL_ROUND, runCleanInProcess, runCleanSourceProcess } from './helpers/fault-matrix.js';

test('a migration through the unarmed fault proxy completes and the guest runs intact on the target', async () => {
  const { report, proxy } = await runCleanInProcess();
  expect(report.rounds.at(-1)!.stopAndCopy).toBe(true);
  // Every record of the protocol went through the relay, and nothing else did.
  expect(proxy['to-target round-end']).toBe(report.rounds.length);
  expect(proxy['to-source round-ack']).toBe(report.rounds.length);
  expect(proxy).toMatchObject({
    'to-target hello': 1,
    'to-source ready': 1,
    'to-target device-state': 1,
    'to-target complete': 1,
    'to-source prepared': 1,
    'to-target go': 1,
    'to-source resumed': 1,
  });
  expect(proxy['to-target pages']).toBeGreaterThan(0);
  expect(proxy['to-source abort']).toBeUndefined();
});

test('the source in a process of its own migrates through the unarmed proxy and prints its report', async () => {
  const report = await runCleanSourceProcess();
  expect(report.rounds.length).toBeGreaterThan(FINAL_ROUND);
  expect(report.rounds.at(-1)).toMatchObject({ stopAndCopy: true });
});
