// End to end with pages sent again as deltas (docs/protocol.md §5), to a target agent in another
// process behind a bandwidth cap, on the control connection and on page channels: pages go as
// deltas, the wire carries fewer bytes than the pages, and the guest on the target is exactly
// what its replay oracle says; where `auto` turns them off after round 0, no cache is ever held.
// Beside it, over the in-memory pair: deltas stay off when the cache does not fit the memory
// bound, and when the target does not take them, and the source then holds no cache.
import { describe, expect, test } from 'vitest';
import { connectToAgent } from '../dist/agent/agent-client.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { migrate } from '../dist/precopy/migration.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle, expectTargetDigestAtPause } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

const agent = agentProcessForFile();

describe.each([1, 2])('%i connection(s) for pages', (channels) => {
  test('pages sent again go as deltas, and the guest runs on true to its oracle', async () => {
    // The guest rewrites most of its 48 MiB hot set (12,288 pages) while a round sends it, so
    // rounds 2 and 3 send again more pages than go on the control connection alone (8192).
    const config: SimGuestConfig = { memoryBytes: 256 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 300e6, hotSetBytes: 48 * MiB, seed: 21 + channels };
    const guest = await SimulatedGuest.boot(config, `delta-${channels}`);
    try {
      await sleep(200);
      const report = await migrate(guest, await connectToAgent(agent.url), {
        delta: 'on',
        maxBandwidthBytesPerSec: 400e6,
        // Round 1 fills the cache; rounds 2 and 3 send deltas, however soon the pause would fit.
        policy: (stats) => (stats.round < 4 ? 'continue' : 'stop-and-copy'),
        ...(channels > 1 ? { channels, openChannel: () => connectToAgent(agent.url) } : {}),
        destroySource: false,
        targetName: agent.url,
      });

      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      expect(report.verified).toBe(true);
      if (channels > 1) expect(report.channels).toBe(channels);
      const delta = report.delta!;
      expect(delta.on).toBe(true);
      expect(delta.pages).toBeGreaterThan(0);
      // The guest writes 64 bytes a step: a page sent again goes in a small share of its size.
      const later = report.rounds.slice(1);
      const raw = later.reduce((n, r) => n + r.bytesRaw, 0);
      const wire = later.reduce((n, r) => n + r.bytesWire, 0);
      expect(wire).toBeLessThan(raw);
      // The cache is part of the source's memory, which stays within its bound.
      expect(report.memory!.atPeak.deltaCache).toBe(delta.cacheBytes);
      expect(report.memory!.peakBytes).toBeLessThanOrEqual(report.memory!.boundBytes);

      await expectAgentGuestMatchesOracle(agent.url, report, guest, config);
    } finally {
      await guest.destroy();
    }
  }, 120_000);

  test('auto turns deltas off before round 1 when the working set outgrows the cache, and holds no cache', async () => {
    // A hot set of 512 pages, all rewritten during round 0: more than a 1 MiB cache holds (256).
    const config: SimGuestConfig = { memoryBytes: 128 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 40e6, hotSetBytes: 2 * MiB, seed: 5 + channels };
    const guest = await SimulatedGuest.boot(config, `delta-auto-off-${channels}`);
    try {
      await sleep(100);
      const report = await migrate(guest, await connectToAgent(agent.url), {
        deltaCacheBytes: MiB,
        maxBandwidthBytesPerSec: 400e6,
        ...(channels > 1 ? { channels, openChannel: () => connectToAgent(agent.url) } : {}),
        destroySource: false,
        targetName: agent.url,
      });

      expect(report.error).toBeUndefined();
      expect(report.outcome).toBe('completed');
      if (channels > 1) expect(report.channels).toBe(channels);
      expect(report.delta).toMatchObject({ mode: 'auto', on: false, why: 'cache-too-small', pages: 0, cacheBytes: 0 });
      // The cache was never allocated, so it is nowhere in the source's memory at its peak.
      expect(report.memory!.atPeak.deltaCache).toBeUndefined();
      expectTargetDigestAtPause(report, guest, config);
    } finally {
      await guest.destroy();
    }
  }, 60_000);
});

describe('deltas stay off', () => {
  // A hot set of 512 pages: more than a 1 MiB cache holds (256), fewer than the default cache of this guest (637).
  const config: SimGuestConfig = { memoryBytes: 128 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 40e6, hotSetBytes: 2 * MiB, seed: 9 };

  async function run(options: Parameters<typeof migrate>[2], delta: boolean) {
    const guest = await SimulatedGuest.boot(config, 'delta-off');
    try {
      await sleep(100);
      const [a, b] = createMemoryTransportPair();
      const incoming = acceptMigration(b, { backends: new Map([['sim', new SimTargetBackend()]]), delta });
      const report = await migrate(guest, a, { destroySource: false, ...options });
      const result = await incoming;
      await result.domain?.destroy();
      expect(report.outcome).toBe('completed');
      expectTargetDigestAtPause(report, guest, config);
      return report;
    } finally {
      await guest.destroy();
    }
  }

  test('when the cache asked for does not fit within a tenth of guest RAM', async () => {
    const report = await run({ delta: 'on', deltaCacheBytes: 16 * MiB, maxBandwidthBytesPerSec: 400e6 }, true);
    expect(report.delta).toMatchObject({ on: false, why: 'memory-bound', pages: 0 });
    expect(report.memory!.atPeak.deltaCache).toBeUndefined();
  }, 60_000);

  test('when the target does not take them', async () => {
    const report = await run({ delta: 'on', maxBandwidthBytesPerSec: 400e6 }, false);
    expect(report.delta).toMatchObject({ on: false, why: 'target', pages: 0, cacheBytes: 0 });
    expect(report.memory!.atPeak.deltaCache).toBeUndefined();
  }, 60_000);

  test('under auto once the pages sent again outnumber the cache, which on keeps using', async () => {
    // The guest rewrites its whole hot set during the first pass.
    const auto = await run({ deltaCacheBytes: MiB, maxBandwidthBytesPerSec: 400e6 }, true);
    expect(auto.delta).toMatchObject({ mode: 'auto', on: false, why: 'cache-too-small', pages: 0, cacheBytes: 0 });
    expect(auto.memory!.atPeak.deltaCache).toBeUndefined();
    const on = await run({ delta: 'on', deltaCacheBytes: MiB, maxBandwidthBytesPerSec: 400e6 }, true);
    expect(on.delta).toMatchObject({ mode: 'on', on: true });
    expect(on.memory!.atPeak.deltaCache).toBe(on.delta!.cacheBytes);
  }, 60_000);

  test('under auto without a cap, and on with one', async () => {
    expect((await run({}, true)).delta).toMatchObject({ mode: 'auto', on: false, why: 'not-asked' });
    const capped = await run({ maxBandwidthBytesPerSec: 400e6 }, true);
    expect(capped.delta).toMatchObject({ mode: 'auto', on: true });
  }, 60_000);
});
