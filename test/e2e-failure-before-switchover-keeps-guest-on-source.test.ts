// A migration that fails before "go" leaves the guest running on the source, intact, and the
// report says why with a stable code.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { startAgentProcess, sleep, type AgentProcess } from './helpers/agent-process.js';
import { startCuttingProxy, type CuttingProxy } from './helpers/cutting-proxy.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 128 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 50e6, hotSetBytes: 16 * MiB, seed: 42 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The guest still runs on the source, and a pause shows exactly what its oracle says. */
async function expectRunningIntact(guest: InstanceType<typeof SimulatedGuest>): Promise<void> {
  expect(guest.paused).toBe(false);
  const before = guest.stepCounts()[0]!;
  await sleep(150);
  await guest.pause();
  const states = guest.vcpuStates();
  expect(states[0]!.steps).toBeGreaterThan(before);
  const oracle = oracleDigest(config, states.map((s) => s.steps));
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracle.digest);
  expect(oracle.vcpus).toEqual(states);
  await guest.resume();
}

async function bootGuest(): Promise<InstanceType<typeof SimulatedGuest>> {
  const guest = await SimulatedGuest.boot(config, 'failure-test');
  cleanups.push(() => guest.destroy());
  return guest;
}

test('target process killed during the first round', async () => {
  const agent: AgentProcess = await startAgentProcess();
  cleanups.push(() => agent.stop());
  const guest = await bootGuest();
  const transport = await connectWebSocket(agent.url);
  let killed = false;
  const report = await migrate(guest, transport, {
    codec: 'none',
    onProgress: (p) => {
      if (!killed && p.phase === 'precopy' && p.bytesRaw > 8 * MiB) {
        killed = true;
        agent.child.kill('SIGKILL');
      }
    },
    progressIntervalMs: 5,
  });
  expect(killed).toBe(true);
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.code).toMatch(/^ERR_(CONNECTION_CLOSED|TIMEOUT)$/);
  await expectRunningIntact(guest);
});

test('connection cut in the middle of pre-copy', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const proxy: CuttingProxy = await startCuttingProxy(agent.url);
  cleanups.push(() => proxy.close());
  proxy.cutAfter(20 * MiB);
  const guest = await bootGuest();
  const discarded = new Promise((resolve) => agent.on('event', (e: { type: string }) => e.type === 'migration-discarded' && resolve(e)));
  const report = await migrate(guest, await connectWebSocket(proxy.url), { codec: 'none' });
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_CONNECTION_CLOSED');
  expect(report.guestRunningOn).toBe('source');
  await discarded;
  expect([...agent.migrations.values()].every((m) => m.state === 'discarded' && m.domain === undefined)).toBe(true);
  await expectRunningIntact(guest);
});

test('target refuses a guest larger than it may allocate', async () => {
  const agent = await TargetAgent.start({ limits: { maxGuestMemoryBytes: 64 * MiB } });
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const report = await migrate(guest, await connectWebSocket(agent.url));
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_PEER_ABORTED');
  expect(report.error?.message).toContain('ERR_LIMIT_EXCEEDED');
  expect(report.rounds).toHaveLength(0);
  await expectRunningIntact(guest);
});

test('cancelled through an AbortSignal during pre-copy', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const controller = new AbortController();
  const discarded = new Promise((resolve) => agent.on('event', (e: { type: string }) => e.type === 'migration-discarded' && resolve(e)));
  const report = await migrate(guest, await connectWebSocket(agent.url), {
    codec: 'none',
    signal: controller.signal,
    progressIntervalMs: 5,
    onProgress: (p) => {
      if (p.bytesRaw > 4 * MiB) controller.abort();
    },
  });
  expect(report.outcome).toBe('cancelled');
  expect(report.error?.code).toBe('ERR_CANCELLED');
  expect(report.guestRunningOn).toBe('source');
  const event = (await discarded) as { error?: { code: string } };
  expect(event.error?.code).toBe('ERR_PEER_ABORTED');
  await expectRunningIntact(guest);
});
