// The link fails after "go": the source keeps its copy paused, asks the target afresh what it
// did, and then destroys or resumes its copy. Only a target that cannot be asked leaves the
// outcome indeterminate, with the guest paused on the source and never running twice.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { connectToAgent, queryAgent } from '../dist/agent/agent-client.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { helloFor } from './helpers/hostile-peer.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 20e6, hotSetBytes: 8 * MiB, seed: 3 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function bootGuest() {
  const guest = await SimulatedGuest.boot(config, 'after-go');
  cleanups.push(() => guest.destroy());
  return guest;
}

/** A transport that cuts itself right after "go" was handed over (or instead of sending it). */
async function cutAtGo(url: string, deliverGo: boolean) {
  const inner = await connectWebSocket(url);
  let cut = false;
  const t = tamperingTransport(inner, (frame) => {
    if (!cut && decodeFrame(frame).type === 'go') {
      cut = true;
      if (!deliverGo) {
        inner.destroy();
        return null;
      }
      setImmediate(() => inner.destroy());
    }
    return frame;
  });
  return { transport: t, wasCut: () => cut };
}

test('"go" arrived, the reply did not: the source learns the guest runs on the target and retires its copy', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const { transport, wasCut } = await cutAtGo(agent.url, true);
  const report = await migrate(guest, transport, {
    destroySource: false,
    resolveOutcome: async (id) => (await queryAgent(agent.url, id)).state,
  });
  expect(wasCut()).toBe(true);
  expect(report.outcome).toBe('completed');
  expect(report.guestRunningOn).toBe('target');
  expect(report.resolvedAfterLinkFailure?.code).toMatch(/^ERR_(CONNECTION_CLOSED|TIMEOUT)$/);
  expect(report.downtimeMs).toBeUndefined();
  expect(report.downtimeUpperBoundMs).toBeGreaterThan(0);
  // The source copy never ran again: still paused, at exactly the state the target resumed from.
  expect(guest.paused).toBe(true);
  const atPause = guest.vcpuStates();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, atPause.map((v) => v.steps)).digest);
  const there = await checkAgainstOracle(agent.url, report.migrationId, config);
  expect(there.state).toBe('running');
  expect(there.matches).toBe(true);
  expect(there.steps[0]!).toBeGreaterThanOrEqual(atPause[0]!.steps);
});

test('"go" was lost with the link: the target discards, and the source resumes its copy', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const { transport, wasCut } = await cutAtGo(agent.url, false);
  const report = await migrate(guest, transport, {
    resolveOutcome: async (id) => (await queryAgent(agent.url, id)).state,
  });
  expect(wasCut()).toBe(true);
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.resolvedAfterLinkFailure).toBeDefined();
  expect(report.error?.message).toMatch(/reported the migration (discarded|unknown), so the guest resumed here/);
  expect(guest.paused).toBe(false);
  expect([...agent.migrations.values()].every((m) => m.state === 'discarded' && m.domain === undefined)).toBe(true);
  await guest.pause();
  const states = guest.vcpuStates();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, states.map((s) => s.steps)).digest);
  await guest.resume();
});

test('the target dies after "go" and cannot be asked: indeterminate, the guest stays paused here', async () => {
  const agent = await startAgentProcess();
  cleanups.push(() => agent.stop());
  const guest = await bootGuest();
  const inner = await connectWebSocket(agent.url);
  const transport = tamperingTransport(inner, (frame) => {
    if (decodeFrame(frame).type === 'go') agent.child.kill('SIGKILL');
    return frame;
  });
  const report = await migrate(guest, transport, {
    resolveTimeoutMs: 1500,
    resolveOutcome: async (id) => (await queryAgent(agent.url, id, { connectTimeoutMs: 300 })).state,
  });
  expect(report.outcome).toBe('indeterminate');
  expect(report.guestRunningOn).toBe('unknown');
  expect(report.error?.code).toBe('ERR_INDETERMINATE');
  expect(report.error?.message).toContain(report.migrationId);
  expect(report.error?.message).toMatch(/kept paused here/);
  expect(guest.paused).toBe(true);
});

test('a target that takes the question and never answers: indeterminate by the deadline, not a hang', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const { transport } = await cutAtGo(agent.url, true);
  // Before, migrate() waited on the question for ever; now it returns once resolveTimeoutMs passed.
  const report = await migrate(guest, transport, {
    destroySource: false,
    resolveTimeoutMs: 800,
    resolveOutcome: () => new Promise(() => undefined),
  });
  expect(report.outcome).toBe('indeterminate');
  expect(report.error?.message).toMatch(/did not answer before the deadline/);
  expect(guest.paused).toBe(true);
});

test('while a copy is prepared, a second hello under its id is refused: the agent never holds two copies of one migration', async () => {
  const agent = await TargetAgent.start({ goTimeoutMs: 1500 });
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const inner = await connectWebSocket(agent.url);
  let prepared!: () => void;
  const atGo = new Promise<void>((resolve) => (prepared = resolve));
  const transport = tamperingTransport(inner, (frame) => {
    if (decodeFrame(frame).type !== 'go') return frame;
    prepared();
    return null; // held back: the target stays prepared
  });
  const migrationId = 'held-at-go';
  const migrating = migrate(guest, transport, { migrationId, destroySource: false, switchoverTimeoutMs: 1000 });
  await atGo;
  expect(agent.migrations.get(migrationId)?.state).toBe('prepared');

  const second = await connectToAgent(agent.url);
  await second.send(encodeRecord({ ...helloFor(16 * MiB), migrationId }));
  const answer = decodeFrame((await second.receive())!);
  expect(answer).toMatchObject({ type: 'abort', code: 'ERR_UNEXPECTED_RECORD' });
  expect(answer.type === 'abort' && answer.message).toMatch(/already known here \(prepared\)/);
  second.destroy();
  expect(agent.migrations.get(migrationId)?.state).toBe('prepared');

  // "go" never came: the agent discards at its deadline; the source, unable to ask, keeps its copy paused.
  const report = await migrating;
  expect(report.outcome).toBe('indeterminate');
  expect(guest.paused).toBe(true);
});

test('asking without a deadline stops when the migration is cancelled: indeterminate, the copy still paused here', async () => {
  const agent = await TargetAgent.start();
  cleanups.push(() => agent.close());
  const guest = await bootGuest();
  const { transport } = await cutAtGo(agent.url, true);
  const cancel = new AbortController();
  let asked = 0;
  const report = await migrate(guest, transport, {
    destroySource: false,
    signal: cancel.signal,
    resolveTimeoutMs: Number.POSITIVE_INFINITY,
    // An agent that keeps saying "still receiving"; the operator gives up after a few answers.
    resolveOutcome: async () => {
      if (++asked === 3) cancel.abort();
      return 'receiving';
    },
  });
  expect(asked).toBe(3);
  expect(report.outcome).toBe('indeterminate');
  expect(report.error?.message).toMatch(/given up when the migration was cancelled/);
  expect(guest.paused).toBe(true);
});
