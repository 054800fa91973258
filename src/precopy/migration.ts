/**
 * The source side of a live migration: pre-copy rounds while the guest runs, then stop-and-copy
 * and the switchover handshake. The sequence and its failure rules are in docs/protocol.md.
 *
 * The one rule everything here serves: the guest runs on exactly one host. Until "go" is handed
 * to the transport, any failure resumes the guest here and the target discards its copy. Once
 * "go" may have left, the source never resumes on its own: it destroys its copy when the target
 * confirms, and otherwise keeps it paused and says the outcome is indeterminate.
 */

import { randomUUID } from 'node:crypto';
import type { SourceDomain } from '../domain/backend.js';
import { CancelledError, DigestMismatchError, MigrationError, PolicyAbortError, UnexpectedRecordError, asMigrationError } from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import { sourceTransition, type SourceState } from '../protocol/receiver-state.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import { digestMemory, PageDigest } from '../protocol/page-digest.js';
import { PROTOCOL_VERSION, type MigrationRecord, type PageCodec } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { PageSender } from './page-sender.js';
import {
  DEFAULT_SWITCHOVER_OVERHEAD_MS,
  defaultPolicy,
  expectedDowntimeMs,
  type PrecopyPolicy,
  type PrecopyStats,
} from './policy.js';
import { RecordInbox } from './record-inbox.js';
import type { MigrationPhase, MigrationProgress, MigrationReport, RoundReport } from './report.js';

/** How long the source waits for "ready" and "prepared", in milliseconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;

/** How long the source waits for "resumed" after "go", in milliseconds. */
export const DEFAULT_SWITCHOVER_TIMEOUT_MS = 10_000;

/** How often `onProgress` is called during a round, in milliseconds. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 250;

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** Payload codec for page batches. @default 'lz4' */
  codec?: PageCodec;
  /** Downtime the default policy aims for, in milliseconds. @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** Rounds after which the default policy stops iterating. @default DEFAULT_MAX_ROUNDS */
  maxRounds?: number;
  /** Replaces the default policy. */
  policy?: PrecopyPolicy;
  /** Id of this migration. @default a random UUID */
  migrationId?: string;
  /** Where the transport leads, for the report. @default 'peer' */
  targetName?: string;
  /** @default DEFAULT_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** @default DEFAULT_SWITCHOVER_TIMEOUT_MS */
  switchoverTimeoutMs?: number;
  /** Cancels the migration; honoured until "go" is sent. */
  signal?: AbortSignal;
  /** Called at each phase and round change, and every `progressIntervalMs` while sending. */
  onProgress?: (progress: MigrationProgress) => void;
  /** @default DEFAULT_PROGRESS_INTERVAL_MS */
  progressIntervalMs?: number;
  /**
   * After the target confirms, read the whole paused source memory once more and compare its
   * digest with the target's (`verified` in the report). Costs about 150 ms per GiB after the
   * guest already runs on the target. @default true
   */
  verify?: boolean;
  /** Destroy the source domain once the guest runs on the target. @default true */
  destroySource?: boolean;
  /** Data pages per batch. @default DEFAULT_DATA_PAGES_PER_BATCH */
  dataPagesPerBatch?: number;
  /** Batches in flight. @default DEFAULT_MAX_IN_FLIGHT_BATCHES */
  maxInFlight?: number;
  /** Limits applied to records received from the target. */
  limits?: Partial<ProtocolLimits>;
}

/**
 * Live-migrates `domain` over `transport`, whose other end is a target agent. Always resolves
 * with a report (a failure is an outcome, not an exception) and closes the transport; rejects
 * only on a programming error.
 */
export async function migrate(domain: SourceDomain, transport: Transport, options: MigrateOptions = {}): Promise<MigrationReport> {
  const run = new SourceMigration(domain, transport, options);
  return run.run();
}

class SourceMigration {
  private readonly id: string;
  private readonly codec: PageCodec;
  private readonly policy: PrecopyPolicy;
  private readonly start = performance.now();
  private readonly rounds: RoundReport[] = [];
  private readonly sentDigest: PageDigest;
  private readonly sender: PageSender;
  private inbox: RecordInbox | undefined;
  private phase: MigrationPhase = 'handshake';
  /** Where the source stands in the protocol (src/protocol/receiver-state.ts). */
  private protocolState: SourceState = 'hello-sent';
  private round = 0;
  private roundPages = 0;
  private roundStartPages = 0;
  private paused = false;
  private goSent = false;
  private cancelReason: MigrationError | undefined;
  private readonly report: MigrationReport;

  constructor(
    private readonly domain: SourceDomain,
    private readonly transport: Transport,
    private readonly options: MigrateOptions,
  ) {
    this.id = options.migrationId ?? randomUUID();
    this.codec = options.codec ?? 'lz4';
    this.policy = options.policy ?? defaultPolicy({ downtimeBudgetMs: options.downtimeBudgetMs, maxRounds: options.maxRounds });
    const d = domain.descriptor;
    this.sentDigest = new PageDigest(domain.pageCount, d.pageSize);
    this.sender = new PageSender(domain, transport, this.sentDigest, {
      codec: this.codec,
      dataPagesPerBatch: options.dataPagesPerBatch,
      maxInFlight: options.maxInFlight,
    });
    this.report = {
      migrationId: this.id,
      outcome: 'failed',
      guestRunningOn: 'source',
      startedAt: new Date().toISOString(),
      domain: { name: d.name, kind: d.kind, memoryBytes: d.memoryBytes, vcpus: d.vcpus },
      target: options.targetName ?? 'peer',
      codec: this.codec,
      memoryBytes: d.memoryBytes,
      totalMs: 0,
      bytesRaw: 0,
      bytesWire: 0,
      rounds: this.rounds,
      verified: false,
    };
  }

  async run(): Promise<MigrationReport> {
    const onAbort = (): void => {
      this.cancelReason ??= new CancelledError(
        this.options.signal?.reason instanceof Error ? `migration cancelled: ${this.options.signal.reason.message}` : undefined,
      );
    };
    if (this.options.signal?.aborted) onAbort();
    this.options.signal?.addEventListener('abort', onAbort, { once: true });
    const ticker = setInterval(() => this.emitProgress(), this.options.progressIntervalMs ?? 250);
    ticker.unref();
    try {
      await this.precopyAndPrepare();
    } catch (err) {
      await this.undo(await this.explain(asMigrationError(err)));
      return this.finish(ticker, onAbort);
    }
    await this.switchover();
    return this.finish(ticker, onAbort);
  }

  private finish(ticker: NodeJS.Timeout, onAbort: () => void): MigrationReport {
    clearInterval(ticker);
    this.options.signal?.removeEventListener('abort', onAbort);
    this.report.totalMs = round3(performance.now() - this.start);
    this.report.bytesRaw = this.sender.counters.bytesRaw;
    this.report.bytesWire = this.transport.bytesSent;
    this.setPhase('done');
    return this.report;
  }

  /** Everything up to and including "prepared": any failure here is undone by resuming here. */
  private async precopyAndPrepare(): Promise<void> {
    const timeoutMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.setPhase('handshake');
    await this.transport.send(
      encodeRecord({ type: 'hello', versions: [PROTOCOL_VERSION], migrationId: this.id, domain: this.domain.descriptor, codec: this.codec }),
    );
    this.inbox = new RecordInbox(this.transport, this.options.limits);
    const ready = await this.expect('ready', timeoutMs);
    if (ready.version !== PROTOCOL_VERSION || ready.migrationId !== this.id) {
      throw new UnexpectedRecordError(
        `the target answered "ready" for version ${ready.version} and migration ${ready.migrationId}; expected version ${PROTOCOL_VERSION} and ${this.id}`,
      );
    }

    // Round 0 sends all memory; the dirty log, enabled first, catches what changes meanwhile.
    this.setPhase('precopy');
    this.domain.enableDirtyLog();
    const pageCount = this.domain.pageCount;
    const pageSize = this.domain.descriptor.pageSize;
    let pending: Uint32Array = new Uint32Array(pageCount);
    for (let pfn = 0; pfn < pageCount; pfn++) pending[pfn] = pfn;
    let predictedMs = Number.POSITIVE_INFINITY;
    for (;;) {
      await this.sendRound(pending, false);
      pending = this.domain.readDirtyLog();
      this.round++;
      const last = this.rounds[this.rounds.length - 1]!;
      const bandwidth = this.bandwidth();
      const stats: PrecopyStats = {
        round: this.round,
        elapsedMs: performance.now() - this.start,
        dirtyPages: pending.length,
        dirtyBytes: pending.length * pageSize,
        bandwidthBytesPerSec: bandwidth,
        dirtyRateBytesPerSec: last.durationMs > 0 ? (pending.length * pageSize * 1000) / last.durationMs : 0,
        expectedDowntimeMs: expectedDowntimeMs(pending.length * pageSize, bandwidth, DEFAULT_SWITCHOVER_OVERHEAD_MS),
        bytesSent: this.sender.counters.bytesRaw,
        memoryBytes: this.domain.descriptor.memoryBytes,
      };
      last.dirtyRateBytesPerSec = round3(stats.dirtyRateBytesPerSec);
      const decision = this.policy(stats);
      if (decision === 'abort') {
        throw new PolicyAbortError(`the pre-copy policy gave up in round ${this.round} with ${pending.length} dirty pages`);
      }
      if (decision === 'stop-and-copy') {
        predictedMs = stats.expectedDowntimeMs;
        break;
      }
    }

    // Stop-and-copy: the pages read from the log just now, plus any dirtied before the pause.
    this.setPhase('stop-and-copy');
    this.throwIfCancelled();
    const pauseStart = performance.now();
    this.paused = true;
    await this.domain.pause();
    const pausedAt = performance.now();
    const final = mergeSorted(pending, this.domain.readDirtyLog());
    await this.sendRound(final, true);
    const state = this.domain.saveState();
    await this.transport.send(encodeRecord({ type: 'device-state', state }));
    const digest = this.sentDigest.digest();
    await this.transport.send(encodeRecord({ type: 'complete', batches: this.sender.seq, digest }));
    this.protocolState = sourceTransition(this.protocolState, 'sent-complete');
    const completeSentAt = performance.now();
    this.setPhase('switchover');
    // The stop-and-copy round is acknowledged like any other; the source reads that
    // acknowledgement only now, so as not to wait a round trip before sending the state.
    await this.expectRoundAck(timeoutMs);
    const prepared = await this.expect('prepared', timeoutMs);
    if (prepared.digest !== digest) {
      throw new DigestMismatchError(`the target holds memory with digest ${prepared.digest}, but the source sent ${digest}`);
    }
    this.throwIfCancelled();
    this.report.predictedDowntimeMs = Number.isFinite(predictedMs) ? round3(predictedMs) : undefined;
    this.switchoverStart = { pauseStart, pausedAt, completeSentAt, finalPages: final.length, stateBytes: state.length };
  }

  private switchoverStart: { pauseStart: number; pausedAt: number; completeSentAt: number; finalPages: number; stateBytes: number } | undefined;

  /** "go", then wait for "resumed": from here the source never resumes its copy by itself. */
  private async switchover(): Promise<void> {
    const s = this.switchoverStart!;
    const goAt = performance.now();
    try {
      this.goSent = true;
      this.protocolState = sourceTransition(this.protocolState, 'sent-go');
      await this.transport.send(encodeRecord({ type: 'go' }));
      const resumed = await this.expect('resumed', this.options.switchoverTimeoutMs ?? DEFAULT_SWITCHOVER_TIMEOUT_MS);
      const resumedAt = performance.now();
      const roundTrip = Math.max(0, resumedAt - goAt - resumed.resumeMs);
      this.report.downtimeMs = round3(goAt - s.pauseStart + roundTrip / 2 + resumed.resumeMs);
      this.report.downtimeUpperBoundMs = round3(resumedAt - s.pauseStart);
      this.report.switchover = {
        pauseMs: round3(s.pausedAt - s.pauseStart),
        finalPages: s.finalPages,
        deviceStateBytes: s.stateBytes,
        prepareMs: round3(goAt - s.completeSentAt),
        targetResumeMs: round3(resumed.resumeMs),
        goRoundTripMs: round3(roundTrip),
      };
      this.report.targetDigest = resumed.digest;
      this.report.outcome = 'completed';
      this.report.guestRunningOn = 'target';
    } catch (err) {
      const error = asMigrationError(err);
      if (error.code === 'ERR_PEER_ABORTED') {
        // An explicit abort after "go" means the target could not resume and destroyed its
        // copy: the paused copy here is the only one, so it runs again here.
        await this.undo(error);
        return;
      }
      this.report.outcome = 'indeterminate';
      this.report.guestRunningOn = 'unknown';
      this.report.error = {
        code: 'ERR_INDETERMINATE',
        message:
          `the link failed after "go" (${error.code}: ${error.message}); the guest is kept paused here and may be ` +
          `running on the target. Ask the target agent about migration ${this.id}: if it resumed the guest, ` +
          `destroy this paused copy; if it discarded it, resume this one.`,
      };
      this.transport.destroy();
      return;
    }
    await this.transport.close().catch(() => undefined);
    this.domain.disableDirtyLog();
    if (this.options.verify ?? true) {
      this.setPhase('verify');
      const d = this.domain.descriptor;
      this.report.sourceDigest = digestMemory(this.domain.pageCount, d.pageSize, (pfn, dst, off) => this.domain.copyPage(pfn, dst, off));
      this.report.verified = this.report.sourceDigest === this.report.targetDigest;
    }
    if (this.options.destroySource ?? true) await this.domain.destroy();
  }

  /**
   * A send that failed because the target hung up usually has a better explanation in flight:
   * the abort record the target sent before closing. Prefer it when it arrives promptly.
   */
  private async explain(error: MigrationError): Promise<MigrationError> {
    if (error.code !== 'ERR_CONNECTION_CLOSED' || !this.inbox) return error;
    const deadline = performance.now() + 500;
    while (!this.inbox.failure && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.inbox.failure?.code === 'ERR_PEER_ABORTED' ? this.inbox.failure : error;
  }

  /** Undo: tell the target, resume the guest here, and say why in the report. */
  private async undo(error: MigrationError): Promise<void> {
    const cancelled = error instanceof CancelledError;
    this.report.outcome = cancelled ? 'cancelled' : 'failed';
    this.report.error = error.toJSON();
    if (!this.transport.closed && !(error.code === 'ERR_PEER_ABORTED')) {
      // Best effort: the target discards its copy whether or not this arrives.
      await Promise.race([
        this.transport.send(encodeRecord({ type: 'abort', code: error.code, message: error.message })).catch(() => undefined),
        new Promise((resolve) => setTimeout(resolve, 1000).unref()),
      ]);
    }
    // Close rather than cut, so the abort is delivered before the end of the stream.
    await Promise.race([this.transport.close().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    this.transport.destroy();
    try {
      this.domain.disableDirtyLog();
      this.domain.setThrottle(0);
      if (this.paused) await this.domain.resume();
      this.report.guestRunningOn = 'source';
    } catch (err) {
      const resumeError = asMigrationError(err);
      this.report.guestRunningOn = 'none';
      this.report.error = {
        code: error.code,
        message: `${error.message}; resuming the guest on the source then failed too: ${resumeError.message}`,
      };
    }
  }

  private async sendRound(pfns: Uint32Array, stopAndCopy: boolean): Promise<void> {
    this.throwIfCancelled();
    const before = { ...this.sender.counters };
    const started = performance.now();
    this.roundPages = pfns.length;
    this.roundStartPages = before.pages;
    this.emitProgress();
    // Sent in slices so that a peer abort or a cancel is noticed within one slice.
    const slice = 4096;
    for (let first = 0; first < pfns.length; first += slice) {
      this.inbox?.throwIfFailed();
      this.throwIfCancelled();
      await this.sender.sendPages(this.round, pfns.subarray(first, Math.min(pfns.length, first + slice)));
    }
    await this.sender.flush();
    await this.transport.send(encodeRecord({ type: 'round-end', round: this.round, pages: pfns.length }));
    if (!stopAndCopy) {
      // Wait until the target has written the whole round: the round's duration then measures
      // what the target absorbs, and nothing queued in buffers will stretch the pause.
      await this.expectRoundAck(this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
    }
    const durationMs = performance.now() - started;
    const bytesRaw = this.sender.counters.bytesRaw - before.bytesRaw;
    this.rounds.push({
      round: this.round,
      stopAndCopy,
      pages: pfns.length,
      zeroPages: this.sender.counters.zeroPages - before.zeroPages,
      bytesRaw,
      bytesWire: this.sender.counters.bytesWire - before.bytesWire,
      durationMs: round3(durationMs),
      dirtyRateBytesPerSec: 0,
      bandwidthBytesPerSec: durationMs > 0 ? round3((bytesRaw * 1000) / durationMs) : 0,
    });
  }

  /** Raw bytes per second over the rounds so far, weighted by bytes (small rounds are noisy). */
  private bandwidth(): number {
    let bytes = 0;
    let ms = 0;
    for (const r of this.rounds) {
      if (r.stopAndCopy) continue;
      bytes += r.bytesRaw;
      ms += r.durationMs;
    }
    return ms > 0 ? (bytes * 1000) / ms : 0;
  }

  private async expect<T extends MigrationRecord['type']>(type: T, timeoutMs: number): Promise<Extract<MigrationRecord, { type: T }>> {
    const record = await this.inbox!.next(timeoutMs, `"${type}"`);
    this.protocolState = sourceTransition(this.protocolState, record.type);
    if (record.type !== type) {
      throw new UnexpectedRecordError(`the target sent "${record.type}" while the source waited for "${type}"`);
    }
    return record as Extract<MigrationRecord, { type: T }>;
  }

  /** Waits for the target to acknowledge the round just sent, every batch of it written. */
  private async expectRoundAck(timeoutMs: number): Promise<void> {
    const ack = await this.expect('round-ack', timeoutMs);
    if (ack.round !== this.round || ack.batches !== this.sender.seq) {
      throw new UnexpectedRecordError(
        `the target acknowledged round ${ack.round} at batch ${ack.batches}; expected round ${this.round} at batch ${this.sender.seq}`,
      );
    }
  }

  private throwIfCancelled(): void {
    if (this.cancelReason && !this.goSent) throw this.cancelReason;
  }

  private setPhase(phase: MigrationPhase): void {
    this.phase = phase;
    this.emitProgress();
  }

  private emitProgress(): void {
    const onProgress = this.options.onProgress;
    if (!onProgress) return;
    const elapsedMs = performance.now() - this.start;
    const c = this.sender.counters;
    onProgress({
      migrationId: this.id,
      phase: this.phase,
      round: this.round,
      roundPagesSent: Math.min(this.roundPages, c.pages - this.roundStartPages),
      roundPages: this.roundPages,
      bytesRaw: c.bytesRaw,
      bytesWire: this.transport.bytesSent,
      bandwidthBytesPerSec: elapsedMs > 0 ? (c.bytesRaw * 1000) / elapsedMs : 0,
      elapsedMs: round3(elapsedMs),
    });
  }
}

/** Union of two ascending page lists, ascending, without duplicates. */
export function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) {
      out[n++] = x;
      i++;
    } else if (y < x) {
      out[n++] = y;
      j++;
    } else {
      out[n++] = x;
      i++;
      j++;
    }
  }
  while (i < a.length) out[n++] = a[i++]!;
  while (j < b.length) out[n++] = b[j++]!;
  return out.subarray(0, n);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
