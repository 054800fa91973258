// Inspecting a guest pauses it, reads its state and digest, and resumes it. Several inspections of
// one guest at once must take turns: one that resumed the guest must not leave another reading it
// while it runs, which would pair a state with the memory of a later moment.
import { afterEach, expect, test } from 'vitest';
import { TargetAgent } from '../dist/agent/target-agent.js';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';

const MiB = 1024 * 1024;
// A guest that rewrites its small hot set quickly, so that memory read while it runs differs
// from memory read while it is paused.
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 200e6, hotSetBytes: 2 * MiB, seed: 21 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/**
 * The simulated target, but its guests take 20 ms to pause, as a hypervisor under load may: long
 * enough for inspections sent together to overlap.
 */
class SlowToPauseBackend extends SimTargetBackend {
  override async create(descriptor: Parameters<SimTargetBackend['create']>[0]) {
    const domain = await super.create(descriptor);
    const pause = domain.pause.bind(domain);
    domain.pause = async () => {
      await new Promise((r) => setTimeout(r, 20));
      await pause();
    };
    return domain;
  }
}

test('concurrent inspections of a running guest each see one consistent moment', async () => {
  const agent = await TargetAgent.start({ backends: [new SlowToPauseBackend()] });
  cleanups.push(() => agent.close());
  const guest = await SimulatedGuest.boot(config, 'inspected');
  cleanups.push(() => guest.destroy());
  const report = await migrate(guest, await connectWebSocket(agent.url), { codec: 'none' });
  expect(report.outcome).toBe('completed');

  for (let attempt = 0; attempt < 3; attempt++) {
    const checks = await Promise.all(Array.from({ length: 6 }, () => checkAgainstOracle(agent.url, report.migrationId, config)));
    for (const check of checks) expect(check).toMatchObject({ state: 'running', memoryMatches: true, registersMatch: true });
  }
});
