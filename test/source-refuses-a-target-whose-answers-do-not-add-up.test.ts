// The source checks what the target answers, not only the target what the source sends: a
// "ready" for another version or migration, a round acknowledged at the wrong round or batch
// count (the last one included, which must agree with `complete.batches`), a `prepared` digest
// that is not the source's. Each ends the migration before "go" with its code, and the guest runs
// on at the source with the memory its replay oracle says.
import { afterEach, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import { oracleDigest } from '../dist/domain/sim/oracle.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { acceptMigration } from '../dist/precopy/incoming.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { digestBuffer } from '../dist/protocol/page-digest.js';
import { PROTOCOL_VERSION, type MigrationRecord } from '../dist/protocol/records.js';
import { tamperingTransport } from './helpers/faulty-transport.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 16 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 20e6, hotSetBytes: 2 * MiB, seed: 9 };
const backends = new Map([['sim', new SimTargetBackend()]]);
/** Rounds 0 and 1 while the guest runs, round 2 paused: the same records every time. */
const LAST_ROUND = 2;
const policy = (s: { round: number }) => (s.round >= LAST_ROUND ? 'stop-and-copy' : 'continue') as const;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Changes one record on its way; returns it unchanged when it is not the one. */
type Rewrite = (record: MigrationRecord) => MigrationRecord;

/** Migrates a fresh guest to a real target whose records to the source pass through `rewrite`. */
async function migrateThrough(rewrite: Rewrite, rewriteSource: Rewrite = (r) => r) {
  const guest = await SimulatedGuest.boot(config, 'answers-checked');
  cleanups.push(() => guest.destroy());
  const source = watched(guest);
  const [a, b] = createMemoryTransportPair();
  let rewritten = 0;
  const swap = (rw: Rewrite) => (frame: Uint8Array) => {
    const record = decodeFrame(frame);
    const out = rw(record);
    if (out === record) return frame;
    rewritten++;
    return encodeRecord(out);
  };
  const incoming = acceptMigration(tamperingTransport(b, swap(rewrite)), { backends, collectGarbage: null });
  const report = await migrate(source.domain, tamperingTransport(a, swap(rewriteSource)), { policy, collectGarbage: null });
  const result = await incoming;
  cleanups.push(async () => result.domain?.destroy());
  expect(rewritten).toBe(1);
  return { guest, calls: source.calls, report, result };
}

async function expectRunningOnSource(guest: InstanceType<typeof SimulatedGuest>): Promise<void> {
  expect(guest.paused).toBe(false);
  await guest.pause();
  expect(digestBuffer(guest.bytes, 4096)).toBe(oracleDigest(config, guest.vcpuStates().map((s) => s.steps)).digest);
  await guest.resume();
}

const cases: Array<[string, string, Rewrite]> = [
  ['"ready" for another protocol version', 'ERR_UNEXPECTED_RECORD', (r) => (r.type === 'ready' ? { ...r, version: PROTOCOL_VERSION + 1 } : r)],
  ['"ready" for another migration', 'ERR_UNEXPECTED_RECORD', (r) => (r.type === 'ready' ? { ...r, migrationId: 'someone-else' } : r)],
  ['a pre-copy "round-ack" with one batch too many', 'ERR_UNEXPECTED_RECORD', (r) => (r.type === 'round-ack' && r.round === 0 ? { ...r, batches: r.batches + 1 } : r)],
  ['a pre-copy "round-ack" for another round', 'ERR_UNEXPECTED_RECORD', (r) => (r.type === 'round-ack' && r.round === 1 ? { ...r, round: 0 } : r)],
  [
    'the last round\'s "round-ack" one batch short of "complete"',
    'ERR_UNEXPECTED_RECORD',
    (r) => (r.type === 'round-ack' && r.round === LAST_ROUND ? { ...r, batches: r.batches - 1 } : r),
  ],
  ['a "prepared" digest that is not the source\'s', 'ERR_DIGEST_MISMATCH', (r) => (r.type === 'prepared' ? { ...r, digest: '0123456789abcdef' } : r)],
  ['"resumed" in place of "prepared"', 'ERR_UNEXPECTED_RECORD', (r) => (r.type === 'prepared' ? { type: 'resumed', resumeMs: 1, digest: r.digest } : r)],
];

test.each(cases)('%s: %s, before "go", and the guest runs on at the source', async (_name, code, rewrite) => {
  const { guest, calls, report, result } = await migrateThrough(rewrite);
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.code).toBe(code);
  expect(report.downtimeMs).toBeUndefined();
  expect(calls.destroy).toBeUndefined();
  // The target was told why, and discarded its copy.
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_PEER_ABORTED');
  expect(result.error?.message).toContain(code);
  await expectRunningOnSource(guest);
});

test('a "complete" whose batch count the target did not receive is refused by the target; the guest runs on at the source', async () => {
  const { guest, report, result } = await migrateThrough(
    (r) => r,
    (r) => (r.type === 'complete' ? { ...r, batches: r.batches + 1 } : r),
  );
  expect(result.outcome).toBe('discarded');
  expect(result.error?.code).toBe('ERR_UNEXPECTED_RECORD');
  expect(report.outcome).toBe('failed');
  expect(report.guestRunningOn).toBe('source');
  expect(report.error?.code).toBe('ERR_PEER_ABORTED');
  expect(report.error?.message).toContain('ERR_UNEXPECTED_RECORD');
  await expectRunningOnSource(guest);
});
