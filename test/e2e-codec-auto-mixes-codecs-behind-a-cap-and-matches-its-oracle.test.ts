// End to end with codec auto behind a bandwidth cap: the one migration sends batches of both
// codecs (uncompressed until lz4 is measured, or where the pages stop shrinking; lz4 where they
// shrink), and the guest on the target is still exactly what its replay oracle says.
import { expect, test } from 'vitest';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { migrate } from '../dist/precopy/migration.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { connectWebSocket } from '../dist/transport/ws-connect.js';
import { agentProcessForFile, sleep } from './helpers/agent-process.js';
import { expectAgentGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;

const agent = agentProcessForFile();

test('auto behind a cap compresses most batches, sends some raw, and the guest matches its oracle', async () => {
  const config: SimGuestConfig = { memoryBytes: 64 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 4e6, hotSetBytes: 4 * MiB, seed: 5 };
  const guest = await SimulatedGuest.boot(config, 'e2e-auto');
  try {
    await sleep(100);
    const transport = await connectWebSocket(agent.url);
    // Count the codec of every batch of round 0 with data pages as it goes on the wire: the
    // image, whose data pages shrink. (What the guest dirties later may not, and how many later
    // rounds there are depends on how loaded the machine is.)
    const batches = { lz4: 0, none: 0, delta: 0 };
    const send = transport.send.bind(transport);
    transport.send = (frame: Uint8Array) => {
      const record = decodeFrame(frame);
      if (record.type === 'pages' && record.rawLength > 0 && record.round === 0) batches[record.codec]++;
      return send(frame);
    };
    // The cap sits far below what lz4 does on one loaded core (a few hundred MB/s idle), so auto's
    // choice of lz4 holds on a busy machine too: at 25 MB/s, with the whole suite running on two
    // cores, auto once measured lz4 slower than the link and sent most of round 0 raw.
    const report = await migrate(guest, transport, { codec: 'auto', maxBandwidthBytesPerSec: 12e6, destroySource: false, targetName: agent.url });

    expect(report.error).toBeUndefined();
    expect(report.outcome).toBe('completed');
    expect(report.codec).toBe('auto');
    expect(report.verified).toBe(true);
    // The first batch goes before lz4 was measured, uncompressed; most of the rest compressed.
    expect(batches.none).toBeGreaterThan(0);
    expect(batches.lz4).toBeGreaterThan(batches.none);
    // The image's data pages shrink to about 0.6 with lz4: most of round 0 went compressed.
    expect(report.rounds[0]!.bytesWire).toBeLessThan(0.8 * report.rounds[0]!.bytesRaw);

    await expectAgentGuestMatchesOracle(agent.url, report, guest, config);
  } finally {
    await guest.destroy();
  }
}, 60_000);
