// End to end over page channels: a running simulated guest moves to a target agent in another
// process with 2 and 4 page channels (docs/protocol.md §15), and the target's memory, read back
// from the guest itself, equals the replay oracle at resume and later.
import { describe, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { CHANNEL_MIN_ROUND_PAGES } from '../dist/precopy/channels.js';
import { migrate } from '../dist/precopy/migration.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

const agent = agentProcessForFile();

const cases = [
  { channels: 2, codec: 'lz4' as const, workload: 'uniform' as const, vcpus: 2 },
  { channels: 4, codec: 'none' as const, workload: 'sequential' as const, vcpus: 1 },
];

describe.each(cases)('$channels channels, $codec, $workload guest', ({ channels, codec, workload, vcpus }) => {
  test('every page arrives where it belongs, and the guest runs on true to its oracle', async () => {
    const config: SimGuestConfig = { memoryBytes: 256 * MiB, vcpus, workload, dirtyRateBytesPerSec: 300e6, hotSetBytes: 16 * MiB, seed: 11 + channels };
    const guest = await SimulatedGuest.boot(config, `channels-${channels}`);
    try {
      await sleep(200);
      const report = await migrate(guest, await connectToAgent(agent.url), {
        codec,
        channels,
        openChannel: () => connectToAgent(agent.url),
        destroySource: false,
        targetName: agent.url,
      });

      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      expect(report.channels).toBe(channels);
      expect(report.verified).toBe(true);
      expect(report.rounds[0]!.pages).toBe(config.memoryBytes / 4096);
      // Round 0 at least went on the channels; the small last round goes on the control connection.
      expect(report.rounds.filter((r) => r.pages >= CHANNEL_MIN_ROUND_PAGES).length).toBeGreaterThanOrEqual(1);
      expect(report.rounds.length).toBeGreaterThanOrEqual(2);

      expect(guest.paused).toBe(true);
      // The agent reads its guest's memory itself: the channels wrote every page in its place.
      const { atPause, later } = await expectAgentGuestMatchesOracle(agent.url, report, guest, config);
      expect(later.state).toBe('running');
      for (let i = 0; i < vcpus; i++) expect(later.steps[i]!).toBeGreaterThan(atPause[i]!.steps);
    } finally {
      await guest.destroy();
    }
  });
});
