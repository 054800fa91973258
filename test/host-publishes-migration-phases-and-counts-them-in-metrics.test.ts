// A host tells embedders and scrapers what its migrations do: every phase, in and out, on the
// diagnostics channel `livemig:migration` and in its log, and the outcome, downtime and bytes
// in its Prometheus metrics (through prom-client). Two hosts in this process, on loopback.
import diagnostics_channel from 'node:diagnostics_channel';
import { afterEach, expect, test } from 'vitest';
import { HostAgent } from '../dist/agent/host-agent.js';
import { MIGRATION_CHANNEL, type MigrationEvent } from '../dist/agent/host-metrics.js';

const MiB = 2 ** 20;
const hosts: HostAgent[] = [];
afterEach(async () => {
  await Promise.all(hosts.splice(0).map((h) => h.close()));
});

/** The value of one sample line of a Prometheus text. */
function sample(text: string, line: string): number {
  const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
  return hit === undefined ? Number.NaN : Number(hit.slice(line.length + 1));
}

test('each phase of a migration is published and logged once, in order, and the metrics count its end', async () => {
  const logged: MigrationEvent[] = [];
  const a = await HostAgent.start({ name: 'A', capacityBytes: 64 * MiB, log: (e) => logged.push(e) });
  const b = await HostAgent.start({ name: 'B', capacityBytes: 64 * MiB });
  hosts.push(a, b);
  const published: MigrationEvent[] = [];
  const onEvent = (e: unknown): void => void published.push(e as MigrationEvent);
  diagnostics_channel.subscribe(MIGRATION_CHANNEL, onEvent);
  try {
    const guest = await a.startGuest({ name: 'watched', memoryBytes: 8 * MiB, config: { workload: 'hotset', dirtyRateBytesPerSec: 4_000_000 } });
    const begun = a.migrateGuest(guest.id, { to: b.url });
    const ended = await a.settled(begun.migrationId);
    expect(ended).toMatchObject({ state: 'completed' });
    const out = published.filter((e) => e.migrationId === begun.migrationId && e.direction === 'out');
    expect(out.map((e) => e.phase)).toEqual(['connecting', 'handshake', 'precopy', 'stop-and-copy', 'switchover', 'verify', 'done']);
    expect(out.at(-1)).toMatchObject({ host: 'A', guestId: guest.id, guestName: 'watched', state: 'completed' });
    expect(out.at(-1)!.downtimeMs).toBeGreaterThan(0);
    const inbound = published.filter((e) => e.migrationId === begun.migrationId && e.direction === 'in');
    expect(inbound.map((e) => [e.host, e.phase, e.state])).toEqual([
      ['B', 'receiving', 'running'],
      ['B', 'resumed', 'completed'],
    ]);
    expect(inbound[1]).toMatchObject({ guestId: guest.id });
    // The log hook sees A's events, the same objects as the channel.
    expect(logged.filter((e) => e.migrationId === begun.migrationId)).toEqual(out);
  } finally {
    diagnostics_channel.unsubscribe(MIGRATION_CHANNEL, onEvent);
  }
  const ma = (await a.metricsText()).text;
  const mb = (await b.metricsText()).text;
  expect(sample(ma, 'livemig_migrations_total{direction="out",outcome="completed"}')).toBe(1);
  expect(sample(ma, 'livemig_migration_downtime_seconds_count')).toBe(1);
  expect(sample(ma, 'livemig_migration_bytes_total{direction="out"}')).toBeGreaterThan(1000);
  expect(sample(ma, 'livemig_guests')).toBe(0);
  expect(sample(ma, 'livemig_memory_free_bytes')).toBe(64 * MiB);
  expect(sample(mb, 'livemig_migrations_total{direction="in",outcome="completed"}')).toBe(1);
  expect(sample(mb, 'livemig_migration_bytes_total{direction="in"}')).toBeGreaterThan(1000);
  expect(sample(mb, 'livemig_guests')).toBe(1);
  expect(sample(mb, 'livemig_memory_used_bytes')).toBe(8 * MiB);
  expect(sample(mb, 'livemig_memory_free_bytes')).toBe(56 * MiB);
  expect(sample(mb, 'livemig_migrations_in_flight{direction="in"}')).toBe(0);
}, 60_000);

test('a host refuses a second concurrent evacuation of itself with ERR_CONFLICT', async () => {
  const a = await HostAgent.start({ name: 'A', capacityBytes: 64 * MiB });
  hosts.push(a);
  a.claimEvacuation('e1');
  a.claimEvacuation('e1');
  expect(() => a.claimEvacuation('e2')).toThrow(expect.objectContaining({ code: 'ERR_CONFLICT' }));
  expect(a.status().evacuationId).toBe('e1');
  a.releaseEvacuation('e2');
  expect(a.status().evacuationId).toBe('e1');
  a.releaseEvacuation('e1');
  a.claimEvacuation('e2');
  expect(a.status().evacuationId).toBe('e2');
});
