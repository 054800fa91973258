// The thread pre-faulting a target guest's fresh memory ends on every path: when the migration
// completes (the guest resumed there, its memory true to its oracle), fails (connection cut) or is
// cancelled (both: the copy destroyed), and when the guest is destroyed, paused or given its state
// before the walk is over. Each `ended` below would otherwise never settle and the test time out.
// A walk that altered pages is caught by prefault-never-alters-a-page-written-beside-it.test.ts:
// here the walk mostly runs ahead of the writes, so these migrations seldom race it.
import { afterEach, expect, test } from 'vitest';
import { TargetAgent } from '../dist/agent/target-agent.js';
import type { DomainDescriptor, TargetBackend, TargetDomain } from '../dist/domain/backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { simDescriptor } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import { PREFAULT_MIN_MEMORY_BYTES } from '../dist/domain/sim/prefault.js';
import { encodeSimState } from '../dist/domain/sim/state-codec.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { initialVcpuState } from '../dist/domain/sim/workload.js';
import { migrate } from '../dist/precopy/migration.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { startCuttingProxy } from './helpers/cutting-proxy.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = {
  memoryBytes: PREFAULT_MIN_MEMORY_BYTES,
  vcpus: 1,
  workload: 'uniform',
  dirtyRateBytesPerSec: 20e6,
  hotSetBytes: 0,
  seed: 7,
};

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The simulated backend, keeping every guest it builds. */
function keepingBackend(): { backend: TargetBackend; built: SimulatedGuest[] } {
  const inner = new SimTargetBackend({ prefault: true });
  const built: SimulatedGuest[] = [];
  const backend: TargetBackend = {
    kind: inner.kind,
    async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
      const guest = (await inner.create(descriptor)) as SimulatedGuest;
      built.push(guest);
      return guest;
    },
  } as TargetBackend;
  return { backend, built };
}

async function agentWith(backend: TargetBackend): Promise<TargetAgent> {
  const agent = await TargetAgent.start({ backends: [backend] });
  cleanups.push(() => agent.close());
  return agent;
}

async function bootSource(): Promise<SimulatedGuest> {
  const guest = await SimulatedGuest.boot(config, 'prefault-test');
  cleanups.push(() => guest.destroy());
  return guest;
}

test('completed: the walk ends and the resumed guest is true to its oracle', async () => {
  const { backend, built } = keepingBackend();
  const agent = await agentWith(backend);
  const source = await bootSource();
  // A second of transfer behind the cap: the walk's thread starts and walks on a loaded machine too.
  const report = await migrate(source, await connectWebSocket(agent.url), { codec: 'none', maxBandwidthBytesPerSec: 64e6 });
  expect(report.outcome).toBe('completed');
  expect(built).toHaveLength(1);
  const target = built[0]!;
  cleanups.push(() => target.destroy());
  expect(target.prefault).toBeDefined();
  await target.prefault!.ended;
  expect(target.prefault!.progress).toBeGreaterThan(0);
  await target.pause();
  const steps = target.vcpuStates().map((s) => s.steps);
  expect(digestBuffer(target.bytes, 4096)).toBe(oracleDigest(config, steps).digest);
});

test('completed over 2 page channels: the walk ends and the guest is true to its oracle', async () => {
  const { backend, built } = keepingBackend();
  const agent = await agentWith(backend);
  const source = await bootSource();
  const report = await migrate(source, await connectWebSocket(agent.url), {
    codec: 'none',
    channels: 2,
    openChannel: () => connectWebSocket(agent.url),
  });
  expect(report.outcome).toBe('completed');
  expect(report.channels).toBe(2);
  const target = built[0]!;
  cleanups.push(() => target.destroy());
  await target.prefault!.ended;
  await target.pause();
  const steps = target.vcpuStates().map((s) => s.steps);
  expect(digestBuffer(target.bytes, 4096)).toBe(oracleDigest(config, steps).digest);
});

test('failed: a connection cut mid-copy destroys the copy and ends the walk', async () => {
  const { backend, built } = keepingBackend();
  const agent = await agentWith(backend);
  const proxy = await startCuttingProxy(agent.url);
  cleanups.push(() => proxy.close());
  proxy.cutAfter(8 * MiB);
  const source = await bootSource();
  const report = await migrate(source, await connectWebSocket(proxy.url), { codec: 'none' });
  expect(report.outcome).toBe('failed');
  expect(built).toHaveLength(1);
  await built[0]!.prefault!.ended;
  expect(built[0]!.memory().kind).toBe('none');
});

test('cancelled: a source that cancels mid-copy has the copy destroyed and the walk ended', async () => {
  const { backend, built } = keepingBackend();
  const agent = await agentWith(backend);
  const source = await bootSource();
  const cancel = new AbortController();
  const discarded = new Promise((resolve) => agent.on('event', (e: { type: string }) => e.type === 'migration-discarded' && resolve(e)));
  const report = await migrate(source, await connectWebSocket(agent.url), {
    codec: 'none',
    signal: cancel.signal,
    progressIntervalMs: 5,
    onProgress: (p) => {
      if (p.phase === 'precopy' && p.bytesRaw > 4 * MiB) cancel.abort();
    },
  });
  expect(report.outcome).toBe('cancelled');
  await discarded;
  expect(built).toHaveLength(1);
  await built[0]!.prefault!.ended;
  expect(built[0]!.memory().kind).toBe('none');
});

test('a target guest destroyed, paused or given its state stops its walk short; a small one, or one told not to, has none; one by default has one', async () => {
  // 1 GiB: a walk takes the better part of a second of a free core, and each stop comes as soon
  // as the shell is built, so a walk that was really stopped has not reached the end.
  const descriptor = simDescriptor({ ...config, memoryBytes: 1024 * MiB }, 'shell');
  const destroyed = await SimulatedGuest.createEmpty(descriptor, { prefault: true });
  const walk = destroyed.prefault!;
  let ended = false;
  void walk.ended.then(() => (ended = true));
  await destroyed.destroy();
  // `destroy` waits for the thread.
  expect(ended).toBe(true);
  expect(walk.progress).toBeLessThan(walk.pageCount);

  const paused = await SimulatedGuest.createEmpty(descriptor, { prefault: true });
  cleanups.push(() => paused.destroy());
  await paused.pause();
  await paused.prefault!.ended;
  expect(paused.prefault!.progress).toBeLessThan(paused.prefault!.pageCount);

  const loaded = await SimulatedGuest.createEmpty(descriptor, { prefault: true });
  cleanups.push(() => loaded.destroy());
  await loaded.loadState(encodeSimState([initialVcpuState(config.seed, 0)]));
  await loaded.prefault!.ended;
  expect(loaded.prefault!.progress).toBeLessThan(loaded.prefault!.pageCount);

  const small = await SimulatedGuest.createEmpty(simDescriptor({ ...config, memoryBytes: 16 * MiB }, 'small'), { prefault: true });
  cleanups.push(() => small.destroy());
  expect(small.prefault).toBeUndefined();
  const toldNot = await new SimTargetBackend({ prefault: false }).create(simDescriptor(config, 'told-not'));
  cleanups.push(() => toldNot.destroy());
  expect((toldNot as SimulatedGuest).prefault).toBeUndefined();
  const byDefault = await new SimTargetBackend().create(simDescriptor(config, 'by-default'));
  cleanups.push(() => byDefault.destroy());
  expect((byDefault as SimulatedGuest).prefault).toBeDefined();
});
