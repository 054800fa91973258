// A simulated target backend with `spareThreads` keeps a pre-fault thread (and SPARE_VCPU_THREADS
// vCPU threads) started: a guest it builds takes them instead of starting its own, a migration
// into it completes true to its oracle, and once that guest runs (or is destroyed) the spares are
// started again, never while another guest is still arriving. A
// ThreadKind drops a spare that dies, and a thread handed out gets its input either way.
import { afterEach, expect, test } from 'vitest';
import { TargetAgent } from '../dist/agent/target-agent.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { simDescriptor } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import { PREFAULT_MIN_MEMORY_BYTES } from '../dist/domain/sim/prefault.js';
import { SimTargetBackend, SPARE_REFILL_DELAY_MS, SPARE_VCPU_THREADS } from '../dist/domain/sim/target-backend.js';
import { migrate } from '../dist/precopy/migration.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { ThreadKind } from '../dist/util/spare-threads.js';

const config: SimGuestConfig = {
  memoryBytes: PREFAULT_MIN_MEMORY_BYTES,
  vcpus: 2,
  workload: 'uniform',
  dirtyRateBytesPerSec: 20e6,
  hotSetBytes: 0,
  seed: 11,
};

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('a guest built on spare threads receives a migration true to its oracle, and the spares come back', async () => {
  const backend = new SimTargetBackend({ spareThreads: true });
  cleanups.push(() => backend.close());
  expect(backend.spareThreads).toBe(SPARE_VCPU_THREADS + 1);
  const built: SimulatedGuest[] = [];
  const sparesLeft: number[] = [];
  const agent = await TargetAgent.start({
    backends: [
      {
        kind: backend.kind,
        async create(descriptor) {
          const guest = (await backend.create(descriptor)) as SimulatedGuest;
          built.push(guest);
          sparesLeft.push(backend.spareThreads);
          return guest;
        },
      },
    ],
  });
  cleanups.push(() => agent.close());
  const source = await SimulatedGuest.boot(config, 'spare-threads');
  cleanups.push(() => source.destroy());

  const report = await migrate(source, await connectWebSocket(agent.url), { codec: 'none' });
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
  // The walk (and the vCPUs, as far as spares were kept of them) took the spares: none was left.
  expect(sparesLeft).toEqual([0]);
  const guest = built[0]!;
  cleanups.push(() => guest.destroy());
  expect(guest.prefault).toBeDefined();
  await guest.prefault!.ended;
  expect(guest.prefault!.progress).toBeGreaterThan(0);
  // The guest ran on threads that were spares; it runs on them still, from the state it was sent.
  await guest.pause();
  const steps = guest.vcpuStates().map((s) => s.steps);
  expect(steps).toHaveLength(2);
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, steps).digest);
  await until(() => backend.spareThreads === SPARE_VCPU_THREADS + 1, 'the spares to be started again');
});

test('spares are taken by guests and started again only after a delay once the guest is destroyed', async () => {
  const backend = new SimTargetBackend({ spareThreads: true });
  cleanups.push(() => backend.close());
  const spares = SPARE_VCPU_THREADS + 1;
  expect(backend.spareThreads).toBe(spares);
  const descriptor = simDescriptor({ ...config, vcpus: 1 }, 'empty');
  const guest = (await backend.create(descriptor)) as SimulatedGuest;
  // Its walk took the pre-fault spare, and its one vCPU a vCPU spare if any were kept.
  expect(backend.spareThreads).toBe(Math.max(0, SPARE_VCPU_THREADS - 1));
  const destroyedAt = Date.now();
  await guest.destroy();
  expect(backend.spareThreads).toBeLessThan(spares);
  await until(() => backend.spareThreads === spares, 'the spares to be started again');
  expect(Date.now() - destroyedAt).toBeGreaterThanOrEqual(SPARE_REFILL_DELAY_MS - 5);
});

test('no spare is started while another guest is still being received', async () => {
  const backend = new SimTargetBackend({ spareThreads: true });
  cleanups.push(() => backend.close());
  const descriptor = simDescriptor({ ...config, vcpus: 1 }, 'empty');
  const first = (await backend.create(descriptor)) as SimulatedGuest;
  // The second finds the spares taken and starts its threads itself.
  const second = (await backend.create(descriptor)) as SimulatedGuest;
  expect(backend.spareThreads).toBe(0);
  // The first resumes (and is destroyed too): the second still arrives, so no spare yet.
  await first.resume();
  await first.destroy();
  await new Promise((resolve) => setTimeout(resolve, SPARE_REFILL_DELAY_MS * 3));
  expect(backend.spareThreads).toBe(0);
  await second.destroy();
  await until(() => backend.spareThreads === SPARE_VCPU_THREADS + 1, 'the spares to be started again');
});

/** A worker module from source text, importing threadInput as a script of a ThreadKind does. */
function script(body: string): URL {
  const from = new URL('../dist/util/spare-threads.js', import.meta.url).href;
  return new URL('data:text/javascript,' + encodeURIComponent(`import { threadInput } from '${from}';\n${body}`));
}

test('a ThreadKind hands its input to a spare or to a new thread, and keeps no spare after close', async () => {
  const kind = new ThreadKind(script("import { parentPort } from 'node:worker_threads'; parentPort.postMessage((await threadInput()) * 2);"), 2);
  cleanups.push(() => kind.close());
  kind.fill();
  expect(kind.spares).toBe(2);
  const answer = (n: number): Promise<unknown> => {
    const worker = kind.start(n);
    return new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  };
  expect(await answer(21)).toBe(42);
  expect(await answer(5)).toBe(10);
  expect(kind.spares).toBe(0);
  // With no spare left, a new thread is started and gets its input the same way.
  expect(await answer(8)).toBe(16);
  kind.fill();
  expect(kind.spares).toBe(2);
  await kind.close();
  expect(kind.spares).toBe(0);
  kind.fill();
  expect(kind.spares).toBe(0);
});

test('a spare that dies leaves the pool, and a thread that fails reports to whoever took it', async () => {
  const kind = new ThreadKind(script("throw new Error('broken script');"), 2);
  cleanups.push(() => kind.close());
  kind.fill();
  expect(kind.spares).toBe(2);
  await until(() => kind.spares === 0, 'the dead spares to leave the pool');
  const worker = kind.start(1);
  const error = await new Promise<Error>((resolve) => worker.once('error', resolve));
  expect(error.message).toContain('broken script');
});
