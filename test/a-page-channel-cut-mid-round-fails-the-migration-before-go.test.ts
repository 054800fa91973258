// A page channel that breaks in the middle of a round ends the migration before "go", as the
// control connection does (docs/protocol.md §15): the guest runs on at the source, and the target
// agent, in another process, discards its copy.
import { expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { migrate } from '../dist/precopy/migration.js';
import type { Transport } from '../dist/transport/transport.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { tamperingTransport } from './helpers/faulty-transport.js';

const MiB = 1024 * 1024;

const agent = agentProcessForFile();

test('the source resumes its guest and the target discards its copy', async () => {
  const config: SimGuestConfig = { memoryBytes: 256 * MiB, vcpus: 1, workload: 'uniform', dirtyRateBytesPerSec: 50e6, hotSetBytes: 16 * MiB, seed: 5 };
  const guest = await SimulatedGuest.boot(config, 'channel-cut');
  try {
    await sleep(100);
    let opened = 0;
    // The second channel's connection is cut after its channel-hello and a few batches of round 0.
    const openChannel = async (): Promise<Transport> => {
      const transport = await connectToAgent(agent.url);
      if (opened++ !== 1) return transport;
      return tamperingTransport(transport, (frame, index) => {
        if (index === 4) transport.destroy();
        return frame;
      });
    };
    const report = await migrate(guest, await connectToAgent(agent.url), { codec: 'none', channels: 2, openChannel, targetName: agent.url });

    expect(report.outcome).toBe('failed');
    expect(report.guestRunningOn).toBe('source');
    expect(report.rounds.length).toBe(0);
    expect(report.downtimeMs).toBeUndefined();
    // It runs on, intact: a pause shows exactly what its oracle says.
    expect(guest.paused).toBe(false);
    const steps = guest.stepCounts()[0]!;
    // On a loaded machine a vCPU thread may wait a while for a core.
    for (let i = 0; i < 50 && guest.stepCounts()[0]! <= steps; i++) await sleep(100);
    await guest.pause();
    const states = guest.vcpuStates();
    expect(states[0]!.steps).toBeGreaterThan(steps);
    expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, states.map((v) => v.steps)).digest);

    const discarded = await agent.waitFor((e) => e.type === 'migration-discarded' && e.migrationId === report.migrationId);
    expect(discarded.error).toBeDefined();
    expect(agent.events.some((e) => e.type === 'migration-resumed' && e.migrationId === report.migrationId)).toBe(false);
  } finally {
    await guest.destroy();
  }
});
