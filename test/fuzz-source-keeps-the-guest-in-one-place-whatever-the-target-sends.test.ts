// Fuzzing of the source's side of the protocol: whatever the target sends (records out of turn,
// forged fields, garbage, silence, a cut or closed link), a real migrate() resolves with a report,
// and the guest ends up in exactly one place. Unless the outcome is `completed`, the guest runs
// on the source, not paused, and the target holds no copy; when it is `completed`, the guest
// runs on the target and the source copy is destroyed. Never both (protocol.md §11).
//
// Two kinds of target: a real receiver whose records are mutated on their way to the source
// (which reaches every state up to and after "go"), and a scripted one that plays a generated
// sequence of records.
import fc from 'fast-check';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { SimulatedGuest } from '../dist/domain/sim/guest.js';
import { SimTargetBackend } from '../dist/domain/sim/target-backend.js';
import type { SimGuestConfig } from '../dist/domain/sim/config.js';
import { migrate } from '../dist/precopy/migration.js';
import { type MigrateOptions } from '../dist/precopy/migrate-options.js';
import { acceptMigration, type IncomingResult } from '../dist/precopy/incoming.js';
import type { MigrationReport } from '../dist/precopy/report.js';
import type { StatusRecord } from '../dist/protocol/records.js';
import { createMemoryTransportPair } from '../dist/transport/memory-transport.js';
import { decodeFrame, encodeRecord } from '../dist/protocol/codec.js';
import { PROTOCOL_VERSION, type MigrationRecord } from '../dist/protocol/records.js';
import type { Transport } from '../dist/transport/transport.js';
import { unknownOptionalFrame } from './helpers/scripted-source.js';
import { watched } from './helpers/watched-domain.js';

const MiB = 1024 * 1024;
const config: SimGuestConfig = { memoryBytes: 4 * MiB, vcpus: 1, workload: 'hotset', dirtyRateBytesPerSec: 5e6, hotSetBytes: MiB, seed: 2 };
const MIGRATION_ID = 'fuzzed';
/** Short waits, so that a target that falls silent costs a run little. */
const WAIT_MS = 250;
/** Rounds 0 and 1 while the guest runs, round 2 paused: the real target's records come in a fixed order. */
const policy: MigrateOptions['policy'] = (s) => (s.round >= 2 ? 'stop-and-copy' : 'continue');
const sourceOptions: MigrateOptions = {
  migrationId: MIGRATION_ID,
  policy,
  collectGarbage: null,
  handshakeTimeoutMs: WAIT_MS,
  switchoverTimeoutMs: WAIT_MS,
  resolveTimeoutMs: 20 * WAIT_MS,
};
/** migrate() must resolve well within this, whatever the target does. */
const RESOLVE_WITHIN_MS = 15_000;

type AnyRecord = Exclude<MigrationRecord, { type: 'pages' | 'ignored' }>;

// --- What a target may send --------------------------------------------------------------

const hex16 = fc.stringMatching(/^[0-9a-f]{16}$/);
const id = fc.constantFrom(MIGRATION_ID, 'someone-else');
const small = fc.integer({ min: 0, max: 40 });
const bytes32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

/** Any record of version 2 but `pages`, with fields a target could put there. */
const anyRecord: fc.Arbitrary<AnyRecord> = fc.oneof(
  fc.record({ type: fc.constant('ready' as const), version: fc.integer({ min: 1, max: PROTOCOL_VERSION + 1 }), migrationId: id }),
  fc.record({ type: fc.constant('round-ack' as const), round: fc.integer({ min: 0, max: 3 }), batches: small }),
  fc.record({ type: fc.constant('collected' as const), ms: fc.double({ min: 0, max: 20, noNaN: true }) }),
  fc.record({ type: fc.constant('prepared' as const), digest: hex16 }),
  fc.record({ type: fc.constant('resumed' as const), resumeMs: fc.double({ min: 0, max: 20, noNaN: true }), digest: hex16 }),
  fc.record({
    type: fc.constant('abort' as const),
    code: fc.constantFrom('ERR_DOMAIN_FAILED', 'ERR_OUT_OF_MEMORY', 'ERR_CHECKSUM_MISMATCH', 'ERR_FROM_A_NEWER_PEER'),
    message: fc.string({ maxLength: 40 }),
  }),
  fc.record({
    type: fc.constant('status' as const),
    migrationId: id,
    state: fc.constantFrom<StatusRecord['state']>('unknown', 'receiving', 'prepared', 'running', 'discarded'),
  }),
  fc.constantFrom<AnyRecord>({ type: 'go' }, { type: 'pause-soon' }, { type: 'auth-ok' }),
  fc.record({ type: fc.constant('round-end' as const), round: fc.integer({ min: 0, max: 3 }), pages: small }),
  fc.record({ type: fc.constant('complete' as const), batches: small, digest: hex16 }),
  fc.record({ type: fc.constant('device-state' as const), state: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ type: fc.constant('query' as const), migrationId: id, inspect: fc.boolean() }),
  fc.record({ type: fc.constantFrom('auth-hello' as const, 'auth-challenge' as const), nonce: bytes32 }),
  fc.record({ type: fc.constant('auth-proof' as const), proof: bytes32 }),
  fc.constant<AnyRecord>({
    type: 'hello',
    versions: [PROTOCOL_VERSION],
    migrationId: MIGRATION_ID,
    domain: { kind: 'sim', name: 'echo', memoryBytes: 16 * 4096, pageSize: 4096, vcpus: 1, config: {} },
    codec: 'lz4',
  }),
);

/** A frame a target may send: a record, an unknown optional record, or bytes that are none. */
type Forged = { kind: 'record'; record: AnyRecord } | { kind: 'optional' } | { kind: 'garbage'; bytes: Uint8Array };
const forged: fc.Arbitrary<Forged> = fc.oneof(
  { weight: 4, arbitrary: anyRecord.map((record) => ({ kind: 'record' as const, record })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'optional' as const }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 48 }).map((bytes) => ({ kind: 'garbage' as const, bytes })) },
);

function frameOf(f: Forged): Uint8Array {
  if (f.kind === 'record') return encodeRecord(f.record);
  if (f.kind === 'optional') return unknownOptionalFrame();
  return f.bytes;
}

function isAbort(f: Forged): boolean {
  return f.kind === 'record' && f.record.type === 'abort';
}

// --- The checks ------------------------------------------------------------------------------

async function resolvesInTime(report: Promise<MigrationReport>): Promise<MigrationReport> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`migrate() did not resolve within ${RESOLVE_WITHIN_MS} ms`)), RESOLVE_WITHIN_MS);
  });
  try {
    return await Promise.race([report, late]);
  } finally {
    clearTimeout(timer);
  }
}

const codes = /^ERR_[A-Z_]+$/;

/** The guest is in exactly one place, and the report says which. */
function expectOnePlace(
  report: MigrationReport,
  guest: InstanceType<typeof SimulatedGuest>,
  calls: { [hook: string]: number },
  target: { resumed: boolean; outcome?: IncomingResult['outcome'] },
): void {
  expect(report.outcome).not.toBe('indeterminate');
  if (report.outcome === 'completed') {
    expect(report.guestRunningOn).toBe('target');
    expect(report.error).toBeUndefined();
    expect(target.resumed).toBe(true);
    expect(calls.destroy).toBe(1);
  } else {
    expect(report.outcome).toBe('failed');
    expect(report.guestRunningOn).toBe('source');
    expect(report.error?.code).toMatch(codes);
    expect(guest.paused).toBe(false);
    expect(calls.destroy).toBeUndefined();
    expect(target.resumed).toBe(false);
    if (target.outcome !== undefined) expect(target.outcome).toBe('discarded');
  }
}

// --- A real target, its records mutated -------------------------------------------------------

/** What happens to the target's `at`-th frame (0 = "ready", then one acknowledgement per round, "prepared", "resumed"). */
type Mutation =
  | { at: number; op: 'drop' | 'duplicate' | 'truncate' | 'cut' | 'close' }
  | { at: number; op: 'replace' | 'before' | 'after'; with: Forged };

/** Half the mutations hit the switchover ("prepared", "resumed", what follows), where the stakes are. */
const frameIndex = fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.constantFrom(4, 5, 6));
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ at: frameIndex, op: fc.constantFrom('drop' as const, 'duplicate' as const, 'truncate' as const, 'cut' as const, 'close' as const) }),
  fc.record({ at: frameIndex, op: fc.constantFrom('replace' as const, 'before' as const, 'after' as const), with: forged }),
);

/**
 * The target's transport, with `mutations` applied to its outgoing frames. An abort is forged
 * only where the source must still hear "prepared" from the target: an abort that reaches the
 * source after "prepared" says the target discarded its copy and will not run the guest, which
 * the protocol takes at its word (§11); forged there, it is a lie no source can see through.
 */
function mutated(inner: Transport, mutations: readonly Mutation[]): Transport {
  let index = 0;
  let preparedSent = false;
  const send = async (frame: Uint8Array): Promise<void> => {
    const position = index++;
    const isPrepared = decodeFrame(frame).type === 'prepared';
    let out: Uint8Array[] = [frame];
    for (const m of mutations.filter((x) => x.at === position)) {
      if (m.op === 'drop') out = [];
      else if (m.op === 'duplicate') out = [...out, ...out];
      else if (m.op === 'truncate') out = out.map((f) => f.subarray(0, Math.max(1, f.length >> 1)));
      else if (m.op === 'cut') {
        inner.destroy();
        return;
      } else if (m.op === 'close') {
        void inner.close();
        return;
      } else if (isAbort(m.with) && (preparedSent || (isPrepared && m.op === 'after'))) continue;
      else if (m.op === 'replace') out = [frameOf(m.with)];
      else if (m.op === 'before') out = [frameOf(m.with), ...out];
      else out = [...out, frameOf(m.with)];
    }
    preparedSent ||= isPrepared;
    for (const f of out) await inner.send(f);
  };
  return new Proxy(inner, {
    get(target, key) {
      if (key === 'send') return send;
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const backends = new Map([['sim', new SimTargetBackend()]]);

async function runAgainstMutatedTarget(mutations: readonly Mutation[]): Promise<void> {
  const guest = await SimulatedGuest.boot(config, 'fuzzed');
  const running: Array<Promise<unknown>> = [];
  try {
    const source = watched(guest);
    const [a, b] = createMemoryTransportPair();
    const target: { resumed: boolean; outcome?: IncomingResult['outcome'] } = { resumed: false };
    const incoming = acceptMigration(mutated(b, mutations), {
      backends,
      collectGarbage: null,
      goTimeoutMs: WAIT_MS,
      onResumed: () => (target.resumed = true),
    }).then((result) => {
      target.outcome = result.outcome;
      return result;
    });
    running.push(incoming.then((r) => r.domain?.destroy()));
    // Asked only if the link fails after "go": what the target did with its copy.
    const resolveOutcome = async (): Promise<StatusRecord['state']> => {
      if (target.resumed) return 'running';
      return target.outcome === 'discarded' ? 'discarded' : 'prepared';
    };
    const report = await resolvesInTime(migrate(source.domain, a, { ...sourceOptions, resolveOutcome }));
    await incoming;
    expectOnePlace(report, guest, source.calls, target);
  } finally {
    await Promise.allSettled(running);
    await guest.destroy();
  }
}

test('a real target whose records are dropped, forged, garbled, doubled or cut off: one place for the guest, always', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 2 }), (mutations) => runAgainstMutatedTarget(mutations)),
    { numRuns: 40 },
  );
});

// --- A scripted target -----------------------------------------------------------------------

/** One step of a scripted target. `ready` and `ack` are right; the rest is whatever was generated. */
type Step = { kind: 'ready' } | { kind: 'ack' } | { kind: 'send'; frame: Forged };
type Ending = 'hang' | 'close' | 'cut';

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ kind: 'ready' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'ack' as const }) },
  { weight: 3, arbitrary: forged.map((frame) => ({ kind: 'send' as const, frame })) },
);

/** Reads the source's frames in the background, counting page batches and handing out round-ends. */
class SourceReader {
  batches = 0;
  private readonly roundEnds: number[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;

  constructor(private readonly transport: Transport) {
    void this.pump();
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        const frame = await this.transport.receive();
        if (frame === undefined) break;
        const record = decodeFrame(frame);
        if (record.type === 'pages') this.batches++;
        if (record.type === 'round-end') this.roundEnds.push(record.round);
        this.waiter?.();
      }
    } catch {
      // The source or a step ended the link: nothing more to read.
    }
    this.ended = true;
    this.waiter?.();
  }

  /** The round of the next "round-end" from the source, or undefined once none can come. */
  async nextRoundEnd(): Promise<number | undefined> {
    while (this.roundEnds.length === 0 && !this.ended) await new Promise<void>((resolve) => (this.waiter = resolve));
    return this.roundEnds.shift();
  }

  async untilEnded(): Promise<void> {
    while (!this.ended) await new Promise<void>((resolve) => (this.waiter = resolve));
  }
}

async function playScript(t: Transport, steps: readonly Step[], ending: Ending): Promise<void> {
  const hello = await t.receive();
  if (hello === undefined || decodeFrame(hello).type !== 'hello') throw new Error('the source did not start with hello');
  const reader = new SourceReader(t);
  try {
    for (const s of steps) {
      if (s.kind === 'ready') await t.send(encodeRecord({ type: 'ready', version: PROTOCOL_VERSION, migrationId: MIGRATION_ID }));
      else if (s.kind === 'send') await t.send(frameOf(s.frame));
      else {
        const round = await reader.nextRoundEnd();
        if (round === undefined) break;
        await t.send(encodeRecord({ type: 'round-ack', round, batches: reader.batches }));
      }
    }
  } catch {
    // The source gave up and closed: the rest of the script has no one to hear it.
  }
  if (ending === 'cut') t.destroy();
  else if (ending === 'close') await t.close();
  else await reader.untilEnded();
}

async function runAgainstScript(steps: readonly Step[], ending: Ending): Promise<void> {
  const guest = await SimulatedGuest.boot(config, 'fuzzed');
  try {
    const source = watched(guest);
    const [a, b] = createMemoryTransportPair();
    const script = playScript(b, steps, ending);
    const report = await resolvesInTime(migrate(source.domain, a, sourceOptions));
    await script;
    // A scripted target holds no copy: it cannot prove it has the memory, so this never completes.
    expectOnePlace(report, guest, source.calls, { resumed: false });
  } finally {
    await guest.destroy();
  }
}

/** A right opening of 0 to 3 steps ("ready", then the first two rounds acknowledged, after which the guest is paused), and anything after it. */
const script: fc.Arbitrary<Step[]> = fc
  .tuple(fc.nat(3), fc.array(step, { maxLength: 6 }))
  .map(([right, rest]) => [...(['ready', 'ack', 'ack'] as const).slice(0, right).map((kind) => ({ kind })), ...rest]);

test('a scripted target playing any sequence of records: the source never completes without a target, and resumes its guest', async () => {
  await fc.assert(
    fc.asyncProperty(script, fc.constantFrom<Ending>('hang', 'close', 'cut'), (steps, ending) => runAgainstScript(steps, ending)),
    { numRuns: 30 },
  );
});
