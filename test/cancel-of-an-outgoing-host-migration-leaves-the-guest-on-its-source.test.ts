// Cancelling a guest's migration between two `livemig host` processes while pages stream: the
// migration ends `cancelled`, the guest runs on its source and matches its oracle, and the target
// holds nothing of it (no guest, nothing reserved; its copy discarded). A second cancel is a
// conflict, and the guest can then move for real.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { writeKeyFile } from '../dist/agent/key-file.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { expectHostGuestMatchesOracle, startHostProcess, type HostProcess } from './helpers/host-process.js';

const MiB = 2 ** 20;
let dir: string;
let a: HostProcess;
let b: HostProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'livemig-cancel-'));
  const keyFile = join(dir, 'pool.key');
  const key = await writeKeyFile(keyFile);
  [a, b] = await Promise.all(['A', 'B'].map((name) => startHostProcess(name, ['--capacity', '128MiB', '--key-file', keyFile], key)));
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

test('a cancelled migration leaves the guest running on its source and nothing on the target', async () => {
  const guest = await a.client.startGuest({ name: 'stayer', memoryBytes: 32 * MiB, config: { workload: 'uniform', dirtyRateBytesPerSec: 16_000_000, seed: 11 } });
  const config = guest.config as unknown as SimGuestConfig;
  // A 4 MB/s cap keeps the 32 MiB guest's first round going for seconds.
  const begun = await a.client.migrateGuest(guest.id, { to: b.url, maxBandwidthBytesPerSec: 4_000_000 });
  expect(await a.client.guest(guest.id)).toMatchObject({ state: 'migrating-out', migrationId: begun.migrationId });
  for (;;) {
    const now = await a.client.migration(begun.migrationId);
    expect(now.state).toBe('running');
    if (now.phase === 'precopy' && (now.bytesWire ?? 0) > 1 * MiB) break;
    await sleep(50);
  }
  // B holds the reservation while the pages come in.
  expect((await b.client.host()).reservedBytes).toBe(32 * MiB);
  const cancelling = await a.client.cancelMigration(begun.migrationId);
  expect(cancelling.migrationId).toBe(begun.migrationId);
  const ended = await a.client.waitForMigration(begun.migrationId, { intervalMs: 25 });
  expect(ended).toMatchObject({ state: 'cancelled', guestRunningOn: 'source', error: { code: 'ERR_CANCELLED' } });
  await expect(a.client.cancelMigration(begun.migrationId)).rejects.toMatchObject({ code: 'ERR_CONFLICT' });

  expect(await a.client.guest(guest.id)).toMatchObject({ state: 'running' });
  expect((await a.client.guest(guest.id)).migrationId).toBeUndefined();
  await expectHostGuestMatchesOracle(a.client, guest.id, config);
  // The target discarded its copy and released the reservation.
  const incoming = await waitForEnd(b, begun.migrationId);
  expect(incoming).toMatchObject({ direction: 'in', state: 'failed' });
  expect(await b.client.guests()).toEqual([]);
  expect(await b.client.host()).toMatchObject({ guests: 0, usedBytes: 0, reservedBytes: 0, freeBytes: 128 * MiB, migrationsIn: 0 });

  // Nothing is left half-done: the same guest now moves, and matches its oracle there.
  const again = await a.client.migrateGuest(guest.id, { to: b.url });
  expect(await a.client.waitForMigration(again.migrationId, { intervalMs: 25 })).toMatchObject({ state: 'completed' });
  expect(await a.client.guests()).toEqual([]);
  await expectHostGuestMatchesOracle(b.client, guest.id, config);
}, 60_000);

/** The target's record of `migrationId`, once it has ended. */
async function waitForEnd(host: HostProcess, migrationId: string): Promise<Record<string, unknown>> {
  for (;;) {
    const info = await host.client.migration(migrationId);
    if (info.endedAt !== undefined) return info as unknown as Record<string, unknown>;
    await sleep(25);
  }
}
