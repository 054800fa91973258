// End to end: a running simulated guest moves to a target agent in another process over a real
// WebSocket, and the target's memory and registers equal the replay oracle, at resume and later.
import { describe, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig, Workload } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

const agent = agentProcessForFile();

const cases: Array<{ workload: Workload; memoryBytes: number; vcpus: number; rate: number; codec: 'lz4' | 'none' }> = [
  { workload: 'idle', memoryBytes: 64 * MiB, vcpus: 1, rate: 0, codec: 'lz4' },
  { workload: 'uniform', memoryBytes: 128 * MiB, vcpus: 2, rate: 40e6, codec: 'lz4' },
  { workload: 'hotset', memoryBytes: 128 * MiB, vcpus: 1, rate: 200e6, codec: 'none' },
  { workload: 'sequential', memoryBytes: 256 * MiB, vcpus: 2, rate: 80e6, codec: 'lz4' },
];

describe.each(cases)('$workload guest, $memoryBytes bytes, $vcpus vCPU, $codec', ({ workload, memoryBytes, vcpus, rate, codec }) => {
  test('arrives intact, resumes, and keeps running true to its oracle', async () => {
    const config: SimGuestConfig = { memoryBytes, vcpus, workload, dirtyRateBytesPerSec: rate, hotSetBytes: 16 * MiB, seed: 7 + vcpus };
    const guest = await SimulatedGuest.boot(config, `e2e-${workload}`);
    try {
      await sleep(200);
      const transport = await connectWebSocket(agent.url);
      const report = await migrate(guest, transport, { codec, destroySource: false, targetName: agent.url });

      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      expect(report.guestRunningOn).toBe('target');
      expect(report.verified).toBe(true);
      expect(report.downtimeMs).toBeGreaterThan(0);
      expect(report.downtimeMs!).toBeLessThanOrEqual(report.downtimeUpperBoundMs!);
      expect(report.rounds[0]!.pages).toBe(memoryBytes / 4096);
      expect(report.rounds.at(-1)!.stopAndCopy).toBe(true);
      expect(report.bytesRaw).toBeGreaterThan(0);
      if (workload === 'idle') {
        // Zero pages cost only their numbers and the rest compresses: well under the memory size.
        expect(report.bytesWire).toBeLessThan(report.memoryBytes / 2);
        expect(report.rounds[0]!.zeroPages).toBeGreaterThan(0.35 * (memoryBytes / 4096));
      }

      // The source copy stayed paused: its state is the state the target resumed from.
      expect(guest.paused).toBe(true);
      // And it runs on over there, still exactly what replay says.
      const { atPause, oracle, later } = await expectAgentGuestMatchesOracle(agent.url, report, guest, config, 300);
      expect(oracle.vcpus).toEqual(atPause);
      expect(later.state).toBe('running');
      if (workload !== 'idle') {
        for (let i = 0; i < vcpus; i++) expect(later.steps[i]!).toBeGreaterThan(atPause[i]!.steps);
      }
    } finally {
      await guest.destroy();
    }
  });
});
