// The benchmarks' far end reports the CPU its process used, so that bench/loopback.js can say how
// near the machine's cores a migration ran: it grows with a migration received, and stops with
// the process.
import { afterAll, expect, test } from 'vitest';
import { connectToAgent, migrate, SimulatedGuest } from '../dist/index.js';
import { TargetHost } from '../dist/bench/target-host.js';

let host: TargetHost | undefined;
afterAll(async () => {
  await host?.stop();
});

test('the target host counts the CPU of a migration it receives, and has none once stopped', async () => {
  host = await TargetHost.start();
  const before = host.cpuMs();
  expect(before).toBeDefined();
  expect(before!.user).toBeGreaterThanOrEqual(0);
  expect(before!.system).toBeGreaterThanOrEqual(0);
  const guest = await SimulatedGuest.boot({ memoryBytes: 64 * 2 ** 20, vcpus: 1, workload: 'idle', seed: 3 }, 'cpu');
  const report = await migrate(guest, await connectToAgent(host.url), { codec: 'none', verify: false });
  expect(report.outcome).toBe('completed');
  const after = host.cpuMs()!;
  // Receiving, hashing and writing 64 MiB takes tens of milliseconds of CPU at least; a tick is 10 ms.
  expect(after.user + after.system).toBeGreaterThan(before!.user + before!.system);
  await host.stop();
  expect(host.cpuMs()).toBeUndefined();
  host = undefined;
}, 60_000);
