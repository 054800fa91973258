// A target agent receives at most `maxConcurrentMigrations` at once: with that many under way, one
// more hello is refused with ERR_LIMIT_EXCEEDED before anything is allocated for it, the ones
// under way complete, and once they have, the agent takes a new one again.
import { afterEach, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { TargetAgent, type AgentEvent } from '../dist/agent/target-agent.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import type { MigrationReport } from '../dist/precopy/report.js';
import type { Transport } from '../dist/transport/transport.js';
import { waitForEvent } from './helpers/hostile-peer.js';

const MiB = 1024 * 1024;
const GUEST: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 5e6, hotSetBytes: MiB, seed: 21 };

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function bootGuest(name: string): Promise<InstanceType<typeof SimulatedGuest>> {
  const guest = await SimulatedGuest.boot({ ...GUEST, seed: GUEST.seed + cleanups.length }, name);
  cleanups.push(() => guest.destroy());
  return guest;
}

/**
 * `inner`, holding back every frame after the first (the hello) until `release()`: the agent has
 * taken the migration in and counts it as under way, and the source can go no further.
 */
function heldAfterHello(inner: Transport): { transport: Transport; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let sent = 0;
  const transport: Transport = {
    send: async (frame) => {
      if (sent++ > 0) await released;
      return inner.send(frame);
    },
    get bufferedBytes() {
      return inner.bufferedBytes;
    },
    receive: () => inner.receive(),
    ping: () => inner.ping(),
    close: () => inner.close(),
    destroy: (reason) => inner.destroy(reason),
    get closed() {
      return inner.closed;
    },
    get bytesSent() {
      return inner.bytesSent;
    },
    get bytesReceived() {
      return inner.bytesReceived;
    },
  };
  return { transport, release };
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function expectCompleted(report: MigrationReport, agent: TargetAgent): void {
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  expect(agent.migrations.get(report.migrationId)?.state).toBe('running');
}

test('with two migrations under way and a limit of two, a third is refused with ERR_LIMIT_EXCEEDED; the two complete', async () => {
  const agent = await TargetAgent.start({ maxConcurrentMigrations: 2 });
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));

  const underWay = await Promise.all(
    ['first', 'second'].map(async (name) => {
      const guest = await bootGuest(name);
      const held = heldAfterHello(await connectToAgent(agent.url));
      return { held, report: migrate(guest, held.transport, { targetName: agent.url }) };
    }),
  );
  await until(() => agent.stats.activeMigrations === 2, 'both migrations are under way at the agent');

  const third = await migrate(await bootGuest('third'), await connectToAgent(agent.url), { targetName: agent.url });
  expect(third.outcome).toBe('failed');
  expect(third.guestRunningOn).toBe('source');
  expect(third.error?.code).toBe('ERR_PEER_ABORTED');
  expect(third.error?.message).toContain('ERR_LIMIT_EXCEEDED');
  const refused = await waitForEvent(events, (e) => e.type === 'connection-refused');
  expect(refused.type === 'connection-refused' && refused.error.code).toBe('ERR_LIMIT_EXCEEDED');
  // Refused before anything was allocated or remembered for it.
  expect(agent.migrations.has(third.migrationId)).toBe(false);
  expect(events.filter((e) => e.type === 'migration-started')).toHaveLength(2);
  expect(agent.stats.activeMigrations).toBe(2);

  for (const { held } of underWay) held.release();
  for (const { report } of underWay) expectCompleted(await report, agent);
  expect(agent.stats.activeMigrations).toBe(0);

  // The slots are free again.
  const fourth = await migrate(await bootGuest('fourth'), await connectToAgent(agent.url), { targetName: agent.url });
  expectCompleted(fourth, agent);
});
