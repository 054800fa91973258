// A target that cannot allocate the guest answers "hello" with `abort` ERR_OUT_OF_MEMORY
// (protocol.md §10); the source reports the target's code and the guest runs on where it was.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import type { MigrationRecord } from '../dist/protocol/records.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 4 * MiB, seed: 14 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('a target too small for the guest aborts with ERR_OUT_OF_MEMORY; the source reports it and the guest runs on at the source', async () => {
  const guest = await SimulatedGuest.boot(config, 'too-big-there');
  cleanups.push(() => guest.destroy());
  const source = watched(guest);
  const [a, b] = createMemoryTransportPair();
  const fromTarget: MigrationRecord[] = [];
  const targetEnd = tamperingTransport(b, (frame) => {
    fromTarget.push(decodeFrame(frame));
    return frame;
  });
  const small = new SimTargetBackend({ maxMemoryBytes: 16 * MiB });
  const incoming = acceptMigration(targetEnd, { backends: new Map([['sim', small]]), collectGarbage: null });
  const report = await migrate(source.domain, a, { collectGarbage: null });
  const result = await incoming;

  // On the wire: the target's only answer was the abort.
  expect(fromTarget).toHaveLength(1);
  expect(fromTarget[0]).toMatchObject({ type: 'abort', code: 'ERR_OUT_OF_MEMORY' });
  expect(result.outcome).toBe('discarded');

  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.code).toBe('ERR_PEER_ABORTED');
  expect(report.error?.peerCode).toBe('ERR_OUT_OF_MEMORY');
  expect(report.error?.message).toMatch(/^peer aborted the migration: ERR_OUT_OF_MEMORY: /);
  expect(report.rounds).toHaveLength(0);
  // Nothing was done to the guest: no pause, no dirty log, no destroy.
  expect(source.calls.pause).toBeUndefined();
  expect(source.calls.enableDirtyLog).toBeUndefined();
  expect(source.calls.destroy).toBeUndefined();
  expect(guest.paused).toBe(false);
  await guest.pause();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, guest.vcpuStates().map((s) => s.steps)).digest);
  await guest.resume();
});
