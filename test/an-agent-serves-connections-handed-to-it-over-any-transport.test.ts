// A program that accepts connections its own way hands them to the agent with `serve()`: over the
// in-memory pair, with no socket anywhere, the agent authenticates the peer, receives a live
// migration, answers a query and refuses a stranger, exactly as on its WebSocket listener. Left
// without `backends`, an agent takes simulated guests; a list given replaces that default.
import { afterEach, expect, test } from 'vitest';
import { authenticateToAgent } from '../dist/agent/agent-client.js';
import { generateKey } from '../dist/agent/key-file.js';
import { TargetAgent, type AgentEvent, type TargetAgentOptions } from '../dist/agent/target-agent.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import { migrate } from '../dist/precopy/migration.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 2 * MiB, seed: 31 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startAgent(key: Uint8Array, options: TargetAgentOptions = {}): Promise<{ agent: TargetAgent; events: AgentEvent[] }> {
  const agent = await TargetAgent.start({ key, ...options });
  cleanups.push(() => agent.close());
  const events: AgentEvent[] = [];
  agent.on('event', (e: AgentEvent) => events.push(e));
  return { agent, events };
}

test('a migration over the in-memory pair, with the pool key, resumes on the agent and matches the oracle', async () => {
  const key = generateKey();
  const { agent, events } = await startAgent(key);
  const guest = await SimulatedGuest.boot(config, 'in-process');
  cleanups.push(() => guest.destroy());

  const [source, target] = createMemoryTransportPair();
  const served = agent.serve(target, 'in-process peer');
  await authenticateToAgent(source, { key });
  const report = await migrate(guest, source, { destroySource: false });
  await served;

  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  expect(events.find((e) => e.type === 'migration-started')).toMatchObject({ migrationId: report.migrationId, from: 'in-process peer' });
  const resumed = events.find((e) => e.type === 'migration-resumed');
  expect(resumed).toMatchObject({ migrationId: report.migrationId });
  const steps = guest.vcpuStates().map((s) => s.steps);
  expect(resumed?.type === 'migration-resumed' && resumed.digest).toBe(oracleDigest(config, steps).digest);
  expect(agent.migrations.get(report.migrationId)?.state).toBe('running');
  // The agent's digest is its bookkeeping of what arrived; the guest's memory is read itself.
  await expectGuestMatchesOracle(agent.migrations.get(report.migrationId)?.domain, config, steps);

  // A query handed in the same way is answered about that migration.
  const [asker, answerer] = createMemoryTransportPair();
  const answered = agent.serve(answerer, 'in-process asker');
  await authenticateToAgent(asker, { key });
  await asker.send(encodeRecord({ type: 'query', migrationId: report.migrationId, inspect: false }));
  const status = decodeFrame((await asker.receive())!);
  expect(status).toMatchObject({ type: 'status', migrationId: report.migrationId, state: 'running' });
  await answered;
});

test('a peer with another key is refused with ERR_AUTH_FAILED, as on the listener', async () => {
  const { agent, events } = await startAgent(generateKey());
  const [stranger, target] = createMemoryTransportPair();
  const served = agent.serve(target, 'stranger');
  await expect(authenticateToAgent(stranger, { key: generateKey() })).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' });
  await served;
  expect(events).toContainEqual(expect.objectContaining({ type: 'connection-refused', from: 'stranger', error: expect.objectContaining({ code: 'ERR_AUTH_FAILED' }) }));
  expect(agent.stats.authFailures).toBe(1);
  expect(agent.migrations.size).toBe(0);
});

test('close() ends a handed-in connection that is still open, and a closed agent serves none', async () => {
  const { agent } = await startAgent(generateKey());
  const [silent, target] = createMemoryTransportPair();
  const served = agent.serve(target, 'silent');
  await agent.close();
  await served;
  expect(target.closed).toBe(true);
  await expect(silent.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });

  const [late, lateTarget] = createMemoryTransportPair();
  await agent.serve(lateTarget, 'late');
  expect(lateTarget.closed).toBe(true);
  await expect(late.receive()).rejects.toMatchObject({ code: 'ERR_CONNECTION_CLOSED' });
});

test('backends given replace the simulator default: a simulated guest is refused with ERR_UNKNOWN_BACKEND', async () => {
  const key = generateKey();
  const otherKind = { kind: 'other', create: () => Promise.reject(new Error('never called')) };
  const { agent, events } = await startAgent(key, { backends: [otherKind] });
  const guest = await SimulatedGuest.boot(config, 'unwanted');
  cleanups.push(() => guest.destroy());

  const [source, target] = createMemoryTransportPair();
  const served = agent.serve(target, 'in-process peer');
  await authenticateToAgent(source, { key });
  const report = await migrate(guest, source);
  await served;

  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.message).toContain('ERR_UNKNOWN_BACKEND');
  expect(events.find((e) => e.type === 'migration-discarded')).toMatchObject({ error: expect.objectContaining({ code: 'ERR_UNKNOWN_BACKEND' }) });
});
