// ControlPoolHosts, the pool as an evacuation coordinator calls it, over real host agents'
// control APIs with the pool key: hosts under their pool names, a migration's target sent as a
// URL and reported back by name, the evacuation claim held by one id, and every call settling
// with a code when a host is gone or unknown.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { generateKey } from '../dist/agent/key-file.js';
import { HostAgent } from '../dist/agent/host-agent.js';
import { ControlPoolHosts } from '../dist/pool/control-pool-hosts.js';
import { FilePoolStore } from '../dist/pool/pool-store.js';

const MiB = 2 ** 20;
const key = generateKey();
let dir: string;
let a: HostAgent;
let b: HostAgent;
let pool: ControlPoolHosts;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'livemig-pool-hosts-'));
  // The agents call themselves by other names than the pool does: the pool's names win.
  a = await HostAgent.start({ host: '127.0.0.1', port: 0, name: 'self-a', capacityBytes: 64 * MiB, key });
  b = await HostAgent.start({ host: '127.0.0.1', port: 0, name: 'self-b', capacityBytes: 64 * MiB, key });
  const file = join(dir, 'pool.json');
  // "gone" listens nowhere: port 1 on loopback refuses.
  writeFileSync(file, JSON.stringify({ hosts: [{ name: 'A', url: a.url }, { name: 'B', url: b.url }, { name: 'gone', url: 'http://127.0.0.1:1' }] }));
  pool = new ControlPoolHosts(new FilePoolStore(file), { key, timeoutMs: 5_000, statusTimeoutMs: 2_000 });
});

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

test('hosts() lists the hosts that answer under their pool names and leaves out one that does not', async () => {
  const hosts = await pool.hosts();
  expect(hosts.map((h) => h.name)).toEqual(['A', 'B']);
  expect(hosts[0]).toMatchObject({ capacityBytes: 64 * MiB, freeBytes: 64 * MiB, maintenance: false });
});

test('a call to a host that is gone fails with ERR_CONNECT_FAILED, to an unknown name with ERR_NOT_FOUND', async () => {
  await expect(pool.guests('gone')).rejects.toMatchObject({ code: 'ERR_CONNECT_FAILED' });
  await expect(pool.setMaintenance('gone', true)).rejects.toMatchObject({ code: 'ERR_CONNECT_FAILED' });
  await expect(pool.guests('nobody')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  await expect(pool.migration('A', 'no-such-migration')).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
});

test('a migration to B by name runs to B and is reported with B as its target', async () => {
  const guest = await a.startGuest({ name: 'mover', memoryBytes: 8 * MiB, config: { workload: 'idle' } });
  const started = await pool.migrate('A', guest.id, { to: 'B' });
  expect(started.to).toBe('B');
  const ended = await a.settled(started.migrationId);
  expect(ended?.state).toBe('completed');
  expect(await pool.migration('A', started.migrationId)).toMatchObject({ state: 'completed', to: 'B', guestRunningOn: 'target' });
  expect((await pool.guests('B')).map((g) => g.id)).toEqual([guest.id]);
  expect(await pool.guests('A')).toEqual([]);
});

test('maintenance and the evacuation claim go to the named host; a second claim under another id is ERR_CONFLICT', async () => {
  expect(await pool.setMaintenance('B', true)).toMatchObject({ name: 'B', maintenance: true });
  expect(b.inMaintenance).toBe(true);
  await pool.setMaintenance('B', false);
  await pool.claimEvacuation('A', 'evac-1');
  await pool.claimEvacuation('A', 'evac-1');
  expect(a.status().evacuationId).toBe('evac-1');
  await expect(pool.claimEvacuation('A', 'evac-2')).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
  await expect(pool.releaseEvacuation('A', 'evac-2')).rejects.toMatchObject({ code: 'ERR_CONFLICT' });
  await pool.releaseEvacuation('A', 'evac-1');
  expect(a.status().evacuationId).toBeUndefined();
});
