// A target agent remembers a discarded migration for `outcomeMemoryMs`, so that a source that lost
// its link can still ask what became of it; after that a query answers `unknown`. A guest that
// runs here is never forgotten, not even when an earlier, discarded try under the same id is.
import { afterEach, expect, test } from 'vitest';
import { connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { TargetAgent, type AgentEvent } from '../dist/agent/target-agent.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { encodeRecord } from '../dist/protocol/codec.js';
import type { StatusRecord } from '../dist/protocol/records.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { helloFor, nextRecord, REAL_GUEST, waitForEvent } from './helpers/hostile-peer.js';

const MiB = 1024 * 1024;

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startAgent(outcomeMemoryMs?: number): Promise<{ agent: TargetAgent; events: AgentEvent[] }> {
  const agent = await TargetAgent.start(outcomeMemoryMs === undefined ? {} : { outcomeMemoryMs });
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));
  return { agent, events };
}

/** Starts a migration with a raw hello, then gives it up; resolves once the agent discarded it. */
async function discardedMigration(agent: TargetAgent, events: AgentEvent[], migrationId?: string): Promise<string> {
  const transport = await connectWebSocket(agent.url);
  cleanups.push(() => transport.destroy());
  const hello = { ...helloFor(16 * MiB), ...(migrationId === undefined ? {} : { migrationId }) };
  await transport.send(encodeRecord(hello));
  expect(await nextRecord(transport)).toMatchObject({ type: 'ready', migrationId: hello.migrationId });
  await transport.send(encodeRecord({ type: 'abort', code: 'ERR_CANCELLED', message: 'the source gave up' }));
  await waitForEvent(events, (e) => e.type === 'migration-discarded' && e.migrationId === hello.migrationId);
  return hello.migrationId;
}

async function stateOf(agent: TargetAgent, migrationId: string): Promise<StatusRecord['state']> {
  return (await queryAgent(agent.url, migrationId)).state;
}

/** Asks until the agent answers `unknown`; rejects if it still remembers after `timeoutMs`. */
async function untilForgotten(agent: TargetAgent, migrationId: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await stateOf(agent, migrationId)) !== 'unknown') {
    if (Date.now() > deadline) throw new Error(`the agent still remembers ${migrationId} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('a discarded migration is answered as discarded, then as unknown once outcomeMemoryMs passed; the default remembers longer', async () => {
  const brief = await startAgent(1500);
  const lasting = await startAgent();
  const remembered = await discardedMigration(lasting.agent, lasting.events);
  const forgotten = await discardedMigration(brief.agent, brief.events);

  expect(await stateOf(brief.agent, forgotten)).toBe('discarded');
  await untilForgotten(brief.agent, forgotten);
  expect(brief.agent.migrations.has(forgotten)).toBe(false);
  // Discarded before the other and still remembered after it was forgotten.
  expect(await stateOf(lasting.agent, remembered)).toBe('discarded');
});

test('a guest that runs here under the id of a forgotten, discarded try is still known as running', async () => {
  const { agent, events } = await startAgent(1500);
  const migrationId = await discardedMigration(agent, events);
  // Tried again under the same id, this time to the end.
  const guest = await SimulatedGuest.boot({ ...REAL_GUEST, memoryBytes: 16 * MiB, hotSetBytes: MiB }, 'retried');
  cleanups.push(() => guest.destroy());
  const report = await migrate(guest, await connectToAgent(agent.url), { migrationId, targetName: agent.url });
  expect(report.error).toBeUndefined();
  expect(report.outcome).toBe('completed');

  // A try discarded after the first is forgotten after it too: by then the first try's time is up.
  const later = await discardedMigration(agent, events);
  await untilForgotten(agent, later);
  expect(await stateOf(agent, migrationId)).toBe('running');
});

test('outcomeMemoryMs must be a positive number of milliseconds', async () => {
  for (const bad of [0, -1, Number.NaN]) {
    await expect(TargetAgent.start({ outcomeMemoryMs: bad })).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  }
});
