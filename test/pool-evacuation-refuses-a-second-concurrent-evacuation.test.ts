// One host, one evacuation at a time: the host refuses a second claim with ERR_CONFLICT, the
// second coordinator moves nothing, and once the first ends its claim is released.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import type { EvacuationReport } from '../dist/pool/pool-types.js';
import { evacuate } from '../dist/pool/evacuation.js';
import { FakePool } from './helpers/fake-pool.js';

test('a second evacuation of a host under evacuation is refused and moves nothing', async () => {
  const p = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }, { name: 'C', capacityMiB: 4096 }]);
  const ids = Array.from({ length: 4 }, (_, i) => p.addGuest('A', { name: `g${i}`, memoryMiB: 256, durationMs: 20 }));
  // Settled into a value at once, so that its refusal is not an unhandled rejection meanwhile.
  let second: Promise<EvacuationReport | unknown> | undefined;
  const first = evacuate(p, 'A', {
    parallel: 1,
    pollIntervalMs: 2,
    onEvent: (e) => {
      if (e.type === 'started' && !second) second = evacuate(p, 'A', { parallel: 4, perTarget: 4, pollIntervalMs: 2 }).catch((err: unknown) => err);
    },
  });
  const report = await first;
  expect(await second).toMatchObject({ code: 'ERR_CONFLICT', message: expect.stringContaining('already being evacuated') });
  expect(report.hostEmpty).toBe(true);
  expect(p.started).toHaveLength(ids.length);
  expect(p.peak.overall).toBe(1);
  for (const id of ids) expect(p.started.filter((m) => m.guestId === id)).toHaveLength(1);
  expect(p.claimOf('A')).toBeUndefined();

  // Released: evacuating again is allowed, and finds nothing to do.
  const again = await evacuate(p, 'A', { pollIntervalMs: 2 });
  expect(again).toMatchObject({ state: 'completed', hostEmpty: true, guests: [] });
});

test('a claim left by a coordinator that died blocks a fresh evacuation until it is resumed or released', async () => {
  const p = new FakePool([{ name: 'A', capacityMiB: 8192 }, { name: 'B', capacityMiB: 4096 }]);
  p.addGuest('A', { name: 'g', memoryMiB: 256 });
  p.setClaim('A', 'evac-dead');
  const dir = await mkdtemp(join(tmpdir(), 'livemig-claim-'));
  const ledgerPath = join(dir, 'evacuate-A.json');
  try {
    await expect(evacuate(p, 'A', { pollIntervalMs: 2, ledgerPath })).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
    // No ledger of a refused evacuation is left to be resumed by mistake.
    expect(await readdir(dir)).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  expect(p.started).toEqual([]);
  expect(p.isInMaintenance('A')).toBe(false);
  await p.releaseEvacuation('A', 'evac-dead');
  expect((await evacuate(p, 'A', { pollIntervalMs: 2 })).hostEmpty).toBe(true);
});
