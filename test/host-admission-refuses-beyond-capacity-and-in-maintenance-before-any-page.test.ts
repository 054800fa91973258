// Admission, with each host a separate `livemig host` process: a target that cannot hold a guest
// refuses its hello with ERR_INSUFFICIENT_CAPACITY before any page moves, and reserves nothing;
// a host in maintenance (`livemig host disable`) refuses a new guest and an incoming migration
// with ERR_HOST_IN_MAINTENANCE. In every case the guest keeps running on its source, whole.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { writeKeyFile } from '../dist/agent/key-file.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { expectHostGuestMatchesOracle, runLivemig, startHostProcess, type HostProcess } from './helpers/host-process.js';

const MiB = 2 ** 20;
let dir: string;
let keyFile: string;
let a: HostProcess;
let b: HostProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'livemig-admission-'));
  keyFile = join(dir, 'pool.key');
  const key = await writeKeyFile(keyFile);
  [a, b] = await Promise.all([
    startHostProcess('A', ['--capacity', '256MiB', '--key-file', keyFile], key),
    startHostProcess('B', ['--capacity', '48MiB', '--key-file', keyFile], key),
  ]);
});

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** The JSON lines host `h` logged about migration `id`. */
function logged(h: HostProcess, id: string): Array<Record<string, unknown>> {
  return h.events.filter((e) => e.migrationId === id);
}

test('a target at capacity refuses the hello with ERR_INSUFFICIENT_CAPACITY before any page, and the guest stays on its source', async () => {
  // B holds 32 of its 48 MiB: a 24 MiB guest does not fit.
  await b.client.startGuest({ name: 'resident', memoryBytes: 32 * MiB, config: { workload: 'idle' } });
  const mover = await a.client.startGuest({ name: 'mover', memoryBytes: 24 * MiB, config: { workload: 'hotset', dirtyRateBytesPerSec: 4_000_000, seed: 3 } });
  const begun = await a.client.migrateGuest(mover.id, { to: b.url });
  const ended = await a.client.waitForMigration(begun.migrationId, { intervalMs: 25 });
  expect(ended).toMatchObject({ state: 'failed', guestRunningOn: 'source', error: { code: 'ERR_INSUFFICIENT_CAPACITY' } });
  // Authentication and the hello only: not one page of 24 MiB went out.
  expect(ended.bytesWire).toBeLessThan(4096);
  // B never admitted it: no migration under that id, nothing reserved, its guest alone.
  await expect(b.client.migration(begun.migrationId)).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  expect(logged(b, begun.migrationId)).toEqual([]);
  expect(await b.client.host()).toMatchObject({ guests: 1, usedBytes: 32 * MiB, reservedBytes: 0, freeBytes: 16 * MiB });
  expect((await b.client.guests()).map((g) => g.name)).toEqual(['resident']);
  // The guest runs on A, whole.
  expect(await a.client.guest(mover.id)).toMatchObject({ state: 'running' });
  await expectHostGuestMatchesOracle(a.client, mover.id, mover.config as unknown as SimGuestConfig);
  await a.client.stopGuest(mover.id);
}, 60_000);

test('a host in maintenance refuses a new guest and an incoming migration, and takes them again after it', async () => {
  const small = await a.client.startGuest({ name: 'small', memoryBytes: 8 * MiB, config: { workload: 'uniform', dirtyRateBytesPerSec: 4_000_000, seed: 9 } });
  const config = small.config as unknown as SimGuestConfig;
  const auth = ['--host', b.url, '--key-file', keyFile, '--json'];
  const disabled = runLivemig(['host', 'disable', ...auth]);
  expect(disabled.status, disabled.stderr).toBe(0);
  expect(JSON.parse(disabled.stdout)).toMatchObject({ name: 'B', maintenance: true });

  await expect(b.client.startGuest({ name: 'newcomer', memoryBytes: 8 * MiB })).rejects.toMatchObject({ code: 'ERR_HOST_IN_MAINTENANCE' });
  const refusedStart = runLivemig(['vm', 'start', ...auth, '--name', 'newcomer', '--memory', '8MiB']);
  expect(refusedStart.status).toBe(1);
  expect(refusedStart.stderr).toContain('ERR_HOST_IN_MAINTENANCE');

  const refused = await a.client.migrateGuest(small.id, { to: b.url });
  const ended = await a.client.waitForMigration(refused.migrationId, { intervalMs: 25 });
  expect(ended).toMatchObject({ state: 'failed', guestRunningOn: 'source', error: { code: 'ERR_HOST_IN_MAINTENANCE' } });
  expect(ended.bytesWire).toBeLessThan(4096);
  expect(await a.client.guest(small.id)).toMatchObject({ state: 'running' });
  await expectHostGuestMatchesOracle(a.client, small.id, config);
  expect(await b.client.host()).toMatchObject({ maintenance: true, guests: 1, reservedBytes: 0 });

  // Out of maintenance, the same guest moves: it was the flag that refused it.
  const enabled = runLivemig(['host', 'enable', ...auth]);
  expect(enabled.status, enabled.stderr).toBe(0);
  const moved = runLivemig(['vm', 'migrate', '--host', a.url, '--key-file', keyFile, '--guest', 'small', '--to', b.url, '--json']);
  expect(moved.status, moved.stderr).toBe(0);
  expect(JSON.parse(moved.stdout)).toMatchObject({ state: 'completed', guestId: small.id });
  expect(await a.client.guests()).toEqual([]);
  await expectHostGuestMatchesOracle(b.client, small.id, config);
}, 60_000);
