// Playing a hostile peer of a target agent with raw frames, and running a real migration beside
// it to show that the agent keeps serving its pool.
import { randomUUID } from 'node:crypto';
import { SimulatedGuest } from '../../dist/domain/sim/guest.js';
import { simDescriptor, type SimGuestConfig } from '../../dist/domain/sim/config.js';
import { connectToAgent, type ConnectToAgentOptions } from '../../dist/agent/agent-client.js';
import { migrate } from '../../dist/precopy/migration.js';
import type { MigrationReport } from '../../dist/precopy/report.js';
import { decodeFrame } from '../../dist/protocol/codec.js';
import { PROTOCOL_VERSION, type HelloRecord, type MigrationRecord } from '../../dist/protocol/records.js';
import type { Transport } from '../../dist/transport/transport.js';

const MiB = 1024 * 1024;

/** The guest of every real migration: 64 MiB, one vCPU dirtying a hot set, so it takes a few rounds. */
export const REAL_GUEST: SimGuestConfig = {
  memoryBytes: 64 * MiB,
  vcpus: 1,
  workload: 'hotset',
  dirtyRateBytesPerSec: 30e6,
  hotSetBytes: 16 * MiB,
  seed: 11,
};

export interface RealMigration {
  /** The source guest; kept (paused) after the migration, for comparison. */
  guest: InstanceType<typeof SimulatedGuest>;
  migrationId: string;
  /** Settles with the report once the migration ends. */
  report: Promise<MigrationReport>;
  /** True once the report has settled. */
  readonly ended: boolean;
  /** Raw page bytes sent so far, as the latest progress report says. */
  readonly bytesRaw: number;
  /** The round under way, as the latest progress report says (0: the first pass over all memory). */
  readonly round: number;
  /** Lets a held migration switch over at its next round's end. */
  release(): void;
}

/** Options of {@link startRealMigration}. */
export interface RealMigrationOptions {
  /**
   * Keep pre-copying round after round until `release()` is called, then switch over: the
   * migration lasts as long as what runs beside it, however long that takes. @default false
   */
  hold?: boolean;
  /** Passed to `migrate`. @default no cap */
  maxBandwidthBytesPerSec?: number;
}

/**
 * Boots {@link REAL_GUEST}, connects to the agent at `url` as a member of the pool and starts
 * migrating; resolves once pages are flowing, so that whatever follows runs beside it. The source
 * copy is kept, paused, once the guest runs on the agent; the caller destroys it.
 */
export async function startRealMigration(url: string, connect: ConnectToAgentOptions, options: RealMigrationOptions = {}): Promise<RealMigration> {
  const guest = await SimulatedGuest.boot(REAL_GUEST, 'pool-member');
  try {
    const transport = await connectToAgent(url, connect);
    let flowing!: () => void;
    const pagesFlowing = new Promise<void>((resolve) => (flowing = resolve));
    let held = options.hold ?? false;
    let bytesRaw = 0;
    let round = 0;
    let ended = false;
    const migrationId = randomUUID();
    const report = migrate(guest, transport, {
      codec: 'lz4',
      targetName: url,
      migrationId,
      destroySource: false,
      maxBandwidthBytesPerSec: options.maxBandwidthBytesPerSec,
      // While held, every round is followed by another; once released, the next decision pauses.
      policy: options.hold ? () => (held ? 'continue' : 'stop-and-copy') : undefined,
      progressIntervalMs: 5,
      onProgress: (p) => {
        bytesRaw = p.bytesRaw;
        round = p.round;
        if (p.bytesRaw > 0) flowing();
      },
    });
    const end = (): void => void (ended = true);
    report.then(end, end);
    await Promise.race([pagesFlowing, report]);
    return {
      guest,
      migrationId,
      report,
      get ended() {
        return ended;
      },
      get bytesRaw() {
        return bytesRaw;
      },
      get round() {
        return round;
      },
      release: () => void (held = false),
    };
  } catch (err) {
    await guest.destroy();
    throw err;
  }
}

/** A hello for a small simulated guest, with a fresh migration id. */
export function helloFor(memoryBytes: number): HelloRecord {
  const config: SimGuestConfig = { ...REAL_GUEST, memoryBytes, hotSetBytes: Math.min(REAL_GUEST.hotSetBytes, memoryBytes) };
  return { type: 'hello', versions: [PROTOCOL_VERSION], migrationId: randomUUID(), domain: simDescriptor(config, 'hostile'), codec: 'lz4' };
}

/** The next record from the agent, `undefined` at a clean end; rejects as the transport does. */
export async function nextRecord(transport: Transport): Promise<MigrationRecord | undefined> {
  const frame = await transport.receive();
  return frame === undefined ? undefined : decodeFrame(frame);
}

/**
 * Reads until the connection ends and returns how: the code of the first abort record, else the
 * code of the error that ended the stream, else 'closed'.
 */
export async function howItEnds(transport: Transport): Promise<string> {
  for (;;) {
    let record: MigrationRecord | undefined;
    try {
      record = await nextRecord(transport);
    } catch (err) {
      return (err as { code?: string }).code ?? String(err);
    }
    if (record === undefined) return 'closed';
    if (record.type === 'abort') return record.code;
  }
}

/** Resolves with the first event that matches, waiting up to `timeoutMs`. */
export function waitForEvent<E>(events: E[], match: (e: E) => boolean, timeoutMs = 10_000): Promise<E> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      const hit = events.find(match);
      if (hit !== undefined) resolve(hit);
      else if (Date.now() > until) reject(new Error(`no matching event within ${timeoutMs} ms; saw ${JSON.stringify(events)}`));
      else setTimeout(poll, 10);
    };
    poll();
  });
}
