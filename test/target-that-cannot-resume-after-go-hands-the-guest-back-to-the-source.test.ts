// A target that gets "go" but cannot resume its copy sends `abort` (ERR_DOMAIN_FAILED) and
// destroys the copy; the source, told so after "go", resumes its own (protocol.md §10, §11).
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import type { MigrationRecord } from '../dist/protocol/records.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { watched, WatchedSimBackend } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 30e6, hotSetBytes: 4 * MiB, seed: 21 };

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

test('a target whose resume fails after "go" aborts with ERR_DOMAIN_FAILED, destroys its copy, and the guest runs on at the source', async () => {
  const guest = await SimulatedGuest.boot(config, 'resume-fails-there');
  cleanups.push(() => guest.destroy());
  const source = watched(guest);
  const backend = new WatchedSimBackend({
    resume: () => {
      throw new Error('the hypervisor refused to start the vCPUs');
    },
  });
  cleanups.push(() => backend.destroyAll());

  const [a, b] = createMemoryTransportPair();
  // What each side put on the wire, in order.
  const fromSource: MigrationRecord['type'][] = [];
  const fromTarget: MigrationRecord[] = [];
  const sourceEnd = tamperingTransport(a, (frame) => {
    fromSource.push(decodeFrame(frame).type);
    return frame;
  });
  const targetEnd = tamperingTransport(b, (frame) => {
    fromTarget.push(decodeFrame(frame));
    return frame;
  });
  const incoming = acceptMigration(targetEnd, { backends: new Map([['sim', backend]]), collectGarbage: null });
  const report = await migrate(source.domain, sourceEnd, { collectGarbage: null });
  const result = await incoming;

  // The failure came after "go": the source sent it, and the target answered it with an abort.
  expect(fromSource).toContain('go');
  expect(fromTarget.map((r) => r.type)).toEqual(expect.arrayContaining(['prepared']));
  const last = fromTarget.at(-1)!;
  expect(last).toMatchObject({ type: 'abort', code: 'ERR_DOMAIN_FAILED' });
  expect(fromTarget.some((r) => r.type === 'resumed')).toBe(false);

  // The target tried once, then destroyed its copy.
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_DOMAIN_FAILED');
  expect(backend.built).toHaveLength(1);
  expect(backend.built[0]!.calls.resume).toBe(1);
  expect(backend.built[0]!.calls.destroy).toBe(1);

  // The source reports the target's code, resumed its paused copy and kept it.
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.code).toBe('ERR_PEER_ABORTED');
  expect(report.error?.message).toContain('ERR_DOMAIN_FAILED');
  expect(report.downtimeMs).toBeUndefined();
  expect(source.calls.pause).toBe(1);
  expect(source.calls.resume).toBe(1);
  expect(source.calls.destroy).toBeUndefined();
  expect(guest.paused).toBe(false);

  // Its memory is what the replay oracle says for the steps its vCPU ran.
  await guest.pause();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, guest.vcpuStates().map((s) => s.steps)).digest);
  await guest.resume();
});
