// The engine and the target receiver back to back over the in-memory transport: the decisions
// and the undo paths, without processes or sockets.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { calibrationsByCodec } from '../dist/precopy/switchover-calibration.js';
import { SwitchoverCalibration } from '../dist/precopy/switchover-calibration.js';
import { type MigrateOptions } from '../dist/precopy/migrate-options.js';
import type { MigrationProgress } from '../dist/precopy/report.js';
import { PROTOCOL_VERSION, type PageCodec } from '../dist/protocol/records.js';
import type { AutoConvergeMode } from '../dist/precopy/auto-converge.js';
import type { TimeoutAction } from '../dist/precopy/progress-watchdog.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame } from '../dist/protocol/codec.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { expectGuestMatchesOracle } from './helpers/target-memory.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 32 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 30e6, hotSetBytes: 4 * MiB, seed: 5 };
const backends = new Map([['sim', new SimTargetBackend()]]);

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function bootGuest(): Promise<InstanceType<typeof SimulatedGuest>> {
  const guest = await SimulatedGuest.boot(config, 'memory-transport');
  cleanups.push(() => guest.destroy());
  return guest;
}

async function expectIntactOnSource(guest: InstanceType<typeof SimulatedGuest>): Promise<void> {
  expect(guest.paused).toBe(false);
  await guest.pause();
  const states = guest.vcpuStates();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, states.map((s) => s.steps)).digest);
  await guest.resume();
}

test('completes, and the target holds what the oracle says', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, a, { destroySource: false });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(result.outcome).toBe('resumed');
  expect(report.verified).toBe(true);
  // The source's paused copy and the guest's memory on the target, each against the replay.
  const atPause = await expectGuestMatchesOracle(guest, config);
  await expectGuestMatchesOracle(result.domain, config, atPause);
});

test('a flipped payload byte fails the batch checksum; the guest stays on the source', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  let pagesSeen = 0;
  const faulty = tamperingTransport(a, (frame) => {
    const copy = new Uint8Array(frame);
    const record = decodeFrame(copy);
    if (record.type === 'pages' && record.pages.length > 0 && ++pagesSeen === 3) {
      copy[copy.length - 100]! ^= 0x40;
    }
    return copy;
  });
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, faulty, { codec: 'none' });
  const result = await incoming;
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_CHECKSUM_MISMATCH');
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_PEER_ABORTED');
  expect(report.error?.message).toContain('ERR_CHECKSUM_MISMATCH');
  expect(report.guestRunningOn).toBe('source');
  await expectIntactOnSource(guest);
});

test('a dropped batch is noticed by its sequence number; the guest stays on the source', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  let dropped = false;
  const faulty = tamperingTransport(a, (frame) => {
    const record = decodeFrame(frame);
    if (!dropped && record.type === 'pages' && record.round === 1) {
      dropped = true;
      return null;
    }
    return frame;
  });
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, faulty, { codec: 'lz4', policy: (s) => (s.round < 2 ? 'continue' : 'stop-and-copy') });
  const result = await incoming;
  expect(dropped).toBe(true);
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_UNEXPECTED_RECORD');
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  await expectIntactOnSource(guest);
});

test('a garbled frame is refused as malformed; the guest stays on the source', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  let garbled = false;
  const faulty = tamperingTransport(a, (frame) => {
    if (!garbled && decodeFrame(frame).type === 'pages') {
      garbled = true;
      const copy = new Uint8Array(frame);
      copy.fill(0xc1, 4, 40); // 0xc1 is never valid msgpack
      return copy;
    }
    return frame;
  });
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, faulty);
  const result = await incoming;
  expect(result.error?.code).toBe('ERR_MALFORMED_RECORD');
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  await expectIntactOnSource(guest);
});

test('a policy that gives up leaves the guest running on the source', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, a, { policy: (s) => (s.round >= 2 ? 'abort' : 'continue') });
  const result = await incoming;
  expect(report.outcome).toBe('failed');
  expect(report.error?.code).toBe('ERR_POLICY_ABORT');
  expect(report.rounds).toHaveLength(2);
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_PEER_ABORTED');
  await expectIntactOnSource(guest);
});

test('a policy decides the number of rounds', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const report = await migrate(guest, a, { policy: (s) => (s.round >= 4 ? 'stop-and-copy' : 'continue') });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(report.rounds.map((r) => r.stopAndCopy)).toEqual([false, false, false, false, true]);
  expect(report.verified).toBe(true);
});

test('progress reports the dirty rate the guest runs at, in bytes and in pages; rounds its CPU use', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const samples: MigrationProgress[] = [];
  const report = await migrate(guest, a, {
    policy: (s) => (s.round >= 4 ? 'stop-and-copy' : 'continue'),
    progressIntervalMs: 5,
    onProgress: (p) => {
      if (p.phase === 'precopy' && p.round >= 1) samples.push(p);
    },
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(samples.length).toBeGreaterThan(0);
  for (const p of samples) expect(p.dirtyRateBytesPerSec).toBeCloseTo(p.dirtyPagesPerSec * 4096, -1);
  // The guest's vCPU ran during pre-copy (a short round may fall between its slices) and not at
  // all in the paused round.
  for (const r of report.rounds) expect(r.guestCpuCores, `round ${r.round}`).toEqual(expect.any(Number));
  const precopyCpuMs = report.rounds.filter((r) => !r.stopAndCopy).reduce((sum, r) => sum + r.guestCpuCores! * r.durationMs, 0);
  expect(precopyCpuMs).toBeGreaterThan(0);
  expect(report.rounds.at(-1)).toMatchObject({ stopAndCopy: true, guestCpuCores: 0 });
  // Distinct pages newly dirtied: more than none, and not beyond what the guest writes (30 MB/s),
  // with room for the weighting of short intervals.
  const rates = samples.map((p) => p.dirtyRateBytesPerSec).sort((x, y) => x - y);
  const median = rates[rates.length >> 1]!;
  expect(median).toBeGreaterThan(0);
  expect(median).toBeLessThan(3 * config.dirtyRateBytesPerSec);
});

test('a migration learns into the calibration it is given, and a process keeps none of its own', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const byCodec = calibrationsByCodec();
  const saved = SwitchoverCalibration.fromJSON([{ roundMs: 2, residualMs: 4 }]);
  const report = await migrate(guest, a, { codec: 'lz4', calibration: saved });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(report.outcome).toBe('completed');
  expect(saved.toJSON()).toHaveLength(2);
  // One calibration per codec, made on first use and kept: the caller's state, not the process's.
  expect(byCodec('lz4')).toBe(byCodec('lz4'));
  expect(byCodec('none')).not.toBe(byCodec('lz4'));
  expect(byCodec('lz4').toJSON()).toHaveLength(0);
});

test('a progress observer that throws changes nothing', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  let calls = 0;
  const report = await migrate(guest, a, {
    progressIntervalMs: 5,
    onProgress: () => {
      calls++;
      throw new Error('observer bug');
    },
  });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(calls).toBeGreaterThan(3);
  expect(report.outcome).toBe('completed');
  expect(report.verified).toBe(true);
});

test('a refusal whose reason quotes a long field still reaches the source, cut to fit the abort record', async () => {
  const [a, b] = createMemoryTransportPair();
  const incoming = acceptMigration(b, { backends });
  const kind = 'k'.repeat(1000);
  const { encodeRecord } = await import('../dist/protocol/codec.js');
  await a.send(
    encodeRecord({
      type: 'hello',
      versions: [PROTOCOL_VERSION],
      migrationId: 'long-kind',
      domain: { kind, name: 'x', memoryBytes: 32 * MiB, pageSize: 4096, vcpus: 1, config: {} },
      codec: 'none',
    }),
  );
  // Before, building the abort threw and the receiver rejected instead of discarding.
  const result = await incoming;
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_UNKNOWN_BACKEND');
  const frame = await a.receive();
  const abort = decodeFrame(frame!);
  expect(abort.type).toBe('abort');
  if (abort.type === 'abort') {
    expect(abort.code).toBe('ERR_UNKNOWN_BACKEND');
    expect(abort.message.length).toBe(1024);
    expect(abort.message).toContain('kkkk');
  }
});

test('engine options out of range are refused with ERR_INVALID_ARGUMENT before anything happens to the guest', async () => {
  const guest = await bootGuest();
  const outOfRange: MigrateOptions[] = [
    { dataPagesPerBatch: Number.NaN },
    { dataPagesPerBatch: 0 },
    { maxInFlight: Number.NaN },
    { maxBandwidthBytesPerSec: Number.NaN },
    { maxBandwidthBytesPerSec: -1 },
    { stallTimeoutMs: 0 },
    { completionTimeoutMsPerGiB: -5 },
    { handshakeTimeoutMs: Number.NaN },
    { switchoverTimeoutMs: 0 },
    { resolveTimeoutMs: -1 },
    { downtimeBudgetMs: Number.NaN },
    { downtimeBudgetMs: Number.POSITIVE_INFINITY },
    { downtimeRamp: { initialMs: 10, steps: 1.5, stepIntervalMs: 100 } },
    { downtimeRamp: { initialMs: 10, steps: 2, stepIntervalMs: 0 } },
    { maxRounds: 0 },
    { progressIntervalMs: 2 ** 31 },
    { codec: 'zstd' as PageCodec },
    { autoConverge: 'sometimes' as AutoConvergeMode },
    { timeoutAction: 'retry' as TimeoutAction },
    { migrationId: '' },
    { migrationId: 'x'.repeat(2000) },
    { calibration: { overheadMs: 1, factor: 1 } as unknown as SwitchoverCalibration },
  ];
  for (const options of outOfRange) {
    const [a] = createMemoryTransportPair();
    await expect(migrate(guest, a, options)).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  }
  await expectIntactOnSource(guest);
});

test('waits without a deadline (Infinity) work: no timer overflows to a 1 ms spin', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  try {
    const guest = await bootGuest();
    const [a, b] = createMemoryTransportPair();
    const incoming = acceptMigration(b, { backends });
    const report = await migrate(guest, a, {
      destroySource: false,
      handshakeTimeoutMs: Number.POSITIVE_INFINITY,
      switchoverTimeoutMs: Number.POSITIVE_INFINITY,
      stallTimeoutMs: Number.POSITIVE_INFINITY,
      completionTimeoutMsPerGiB: Number.POSITIVE_INFINITY,
    });
    const result = await incoming;
    cleanups.push(async () => result.domain?.destroy());
    expect(report.outcome).toBe('completed');
    const atPause = await expectGuestMatchesOracle(guest, config);
    await expectGuestMatchesOracle(result.domain, config, atPause);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  } finally {
    process.off('warning', onWarning);
  }
});

test('a cancel is honoured while the source waits on a silent target, and the guest runs on the source', async () => {
  const guest = await bootGuest();
  const [a, b] = createMemoryTransportPair();
  const { encodeRecord } = await import('../dist/protocol/codec.js');
  // A target that says ready and then reads everything without ever acknowledging a round.
  const silent = (async () => {
    const hello = decodeFrame((await b.receive())!);
    if (hello.type !== 'hello') throw new Error('expected hello');
    await b.send(encodeRecord({ type: 'ready', version: PROTOCOL_VERSION, migrationId: hello.migrationId }));
    while ((await b.receive().catch(() => undefined)) !== undefined);
  })();
  const cancel = new AbortController();
  const roundSent = new Promise<void>((resolve) => {
    const watch = tamperingTransport(a, (frame) => {
      if (decodeFrame(frame).type === 'round-end') resolve();
      return frame;
    });
    // Waiting for the acknowledgement would last a minute; the cancel must end it now.
    void migrate(guest, watch, { signal: cancel.signal, handshakeTimeoutMs: 60_000 }).then((report) => reports.push(report));
  });
  const reports: Array<{ outcome: string; guestRunningOn: string; error?: { code: string } }> = [];
  await roundSent;
  cancel.abort();
  await expect.poll(() => reports.length, { timeout: 5000 }).toBe(1);
  expect(reports[0]).toMatchObject({ outcome: 'cancelled', guestRunningOn: 'source', error: { code: 'ERR_CANCELLED' } });
  await silent;
  await expectIntactOnSource(guest);
});
