// End to end: a running simulated guest moves to a target agent in another process over a real
// WebSocket, and the target's memory and registers equal the replay oracle, at resume and later.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig, Workload } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { checkAgainstOracle } from '../dist/cli/oracle-check.js';
import { startAgentProcess, sleep, type AgentProcess } from './helpers/agent-process.js';

const MiB = 1024 * 1024;

let agent: AgentProcess;
beforeAll(async () => {
  agent = await startAgentProcess();
});
afterAll(async () => {
  await agent.stop();
});

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
      const atPause = guest.vcpuStates();
      const oracle = oracleDigest(config, atPause.map((v) => v.steps));
      expect(report.targetDigest).toBe(oracle.digest);
      expect(oracle.vcpus).toEqual(atPause);

      // And it runs on over there, still exactly what replay says.
      await sleep(300);
      const later = await checkAgainstOracle(agent.url, report.migrationId, config);
      expect(later.state).toBe('running');
      expect(later.memoryMatches).toBe(true);
      expect(later.registersMatch).toBe(true);
      if (workload !== 'idle') {
        for (let i = 0; i < vcpus; i++) expect(later.steps[i]!).toBeGreaterThan(atPause[i]!.steps);
      }
    } finally {
      await guest.destroy();
    }
  });
});
