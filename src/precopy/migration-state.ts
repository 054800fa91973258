/**
 * What a source migration holds and measures: its parts (page sender, dirty tracker, pause model,
 * throttle, watchdog, custody of the guest), its counters, the records it expects and its
 * progress. `precopy-rounds.ts` sends the rounds over it and `migration.ts` runs the rest of the
 * sequence; keeping the three apart keeps each readable.
 */

import { randomUUID } from 'node:crypto';
import { dirtyBitmapBytes } from '../dirtylog/dirty-bitmap.js';
import { DirtyRateMeter } from '../dirtylog/dirty-rate.js';
import type { SourceDomain } from '../domain/backend.js';
import { MigrationError, UnexpectedRecordError } from '../errors.js';
import { PageDigest } from '../protocol/page-digest.js';
import { sourceTransition, type SourceState } from '../protocol/receiver-state.js';
import {
  CHANNELS_DELTA_PROTOCOL_VERSION,
  CHANNELS_PROTOCOL_VERSION,
  DELTA_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  type MigrationRecord,
  type PageCodec,
} from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { collectorFrom } from '../util/gc.js';
import { roundTo } from '../util/stats.js';
import { DEFAULT_AUTO_CONVERGE, ThrottleController } from './auto-converge.js';
import { BandwidthCap, pacerOf, type SendPacer } from './bandwidth-cap.js';
import { type ChannelSender, type PageSink, workerBufferBytes } from './channels.js';
import { DeltaCache } from './delta-cache.js';
import { DEFAULT_DELTA_MODE, deltaBufferBytes, planDelta, type DeltaOffReason, type DeltaPlan } from './delta-plan.js';
import { DEFAULT_CODEC, type CodecChoice } from './codec-choice.js';
import { DowntimeModel } from './downtime-model.js';
import { GuestCustody } from './guest-custody.js';
import { dirtyTrackerFor, type DirtyTracker } from './dirty-tracker.js';
import { DEFAULT_DATA_PAGES_PER_BATCH, DEFAULT_MAX_IN_FLIGHT_BATCHES, PageSender } from './page-sender.js';
import {
  DEFAULT_DOWNTIME_BUDGET_MS,
  defaultPolicy,
  downtimeBudgetAt,
  type PrecopyPolicy,
  type PrecopyStats,
} from './policy.js';
import { DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB, DEFAULT_STALL_TIMEOUT_MS, DEFAULT_TIMEOUT_ACTION, ProgressWatchdog } from './progress-watchdog.js';
import { type MigrateOptions } from './migrate-options.js';
import { RecordInbox } from './record-inbox.js';
import { batchPagesWithin, SEND_BUFFER_SHARE_OF_BOUND, SourceMemoryLedger } from './source-memory.js';
import { SwitchoverCalibration } from './switchover-calibration.js';
import { GateSeat } from './switchover-gate.js';
import type { MigrationPhase, MigrationProgress, MigrationReport, RoundReport } from './report.js';

/** Why pre-copy stopped early because a deadline passed with the `force-switchover` action. */
export class ForcedSwitchover {
  constructor(readonly error: MigrationError) {}
}

/** When the pause began and what it held, for the switchover's report and the calibration. */
export interface PauseTimes {
  pauseStart: number;
  finalBytes: number;
  pausedAt: number;
  /** When the last dirty pages were known (a scan-tracked guest's final scan ended). */
  foundAt: number;
  /** Of the time from `pausedAt` to `foundAt`, what the last round spent waiting for its pages to be found. */
  scanWaitMs: number;
  completeSentAt: number;
  finalPages: number;
  stateBytes: number;
}

/** The state and instruments of one source migration; {@link SourceMigration} runs it. */
export abstract class MigrationState {
  protected readonly id: string;
  /** What the options asked for: a codec, or `auto`. */
  protected readonly codecChoice: CodecChoice;
  /**
   * The codec `hello` names and page channels use: the one asked for, or under `auto` lz4, the
   * one it may compress with (each batch names its own; docs/protocol.md §4).
   */
  protected readonly codec: PageCodec;
  protected readonly policy: PrecopyPolicy;
  protected readonly start = performance.now();
  protected readonly rounds: RoundReport[] = [];
  protected readonly sentDigest: PageDigest;
  /** The pause model: rounds, round trips and the calibration it learns from. */
  protected readonly model: DowntimeModel;
  protected sender: PageSink;
  /** The control connection's sender (page channels send beside it). */
  protected readonly controlSender: PageSender;
  /** Data pages per batch: as asked, or the default, smaller for a guest too small for its buffers. */
  protected readonly dataPagesPerBatch: number;
  /** The extra memory this migration holds on the source, part by part. */
  protected readonly memory: SourceMemoryLedger;
  /** Whether to offer deltas, and with how many cache slots (before the target's answer). */
  protected readonly deltaPlan: DeltaPlan;
  /** Whether the target took deltas (the version it chose has them): set by the handshake. */
  protected deltaAgreed = false;
  /**
   * The cache of pages as last sent: allocated only once deltas are decided on, after round 0
   * ({@link startDeltas}), so a migration that sends none never holds one.
   */
  private deltaCache: DeltaCache | undefined;
  /** Why deltas stayed off though the target took them, once decided. */
  private deltaDeclined: DeltaOffReason | undefined;
  /** The cap on the sending rate, shared by every connection that carries pages. */
  protected readonly cap: BandwidthCap | undefined;
  /** This migration's place at its host's switchover gate, if it was given one. */
  protected readonly seat: GateSeat | undefined;
  /** The cap and the gate, as the page senders see them. */
  protected readonly pacer: SendPacer | undefined;
  /** The page channels, once open (version 3 only). */
  protected channelSender: ChannelSender | undefined;
  /** The domain's dirty log, or a scan against `sentDigest`, as the domain declares. */
  protected readonly dirty: DirtyTracker;
  protected readonly throttle: ThrottleController;
  protected readonly watchdog: ProgressWatchdog;
  protected readonly pageSize: number;
  protected readonly report: MigrationReport;
  protected inbox: RecordInbox | undefined;
  protected phase: MigrationPhase = 'handshake';
  /** Where the source stands in the protocol (src/protocol/receiver-state.ts). */
  protected protocolState: SourceState = 'hello-sent';
  protected round = 0;
  protected roundPages = 0;
  protected roundStartPages = 0;
  protected goSent = false;
  protected cancelReason: MigrationError | undefined;
  protected forced: ForcedSwitchover | undefined;
  /** Latest estimate of the pause, refreshed by the ticker. */
  protected expectedDowntimeMs = Number.POSITIVE_INFINITY;
  /** The guest's dirty rate, fed at every tick and every read of the dirty log (for progress). */
  protected dirtyMeter = new DirtyRateMeter();
  /** Of the pages in the dirty log now, those already counted by `dirtyMeter`. */
  protected dirtyCounted = 0;
  protected pauseTimes: PauseTimes | undefined;
  /** Where the guest runs, and the rules that move it when the migration ends. */
  protected readonly custody: GuestCustody;
  /** The stop-and-copy round's "round-end", queued behind its batches but not awaited yet. */
  protected finalRoundEnd: Promise<void> = Promise.resolve();
  protected readonly collectGarbage: (() => void) | undefined;
  /** What the target reported collecting garbage before acknowledging the round being sent, in ms. */
  protected targetGcMs = 0;

  constructor(
    protected readonly domain: SourceDomain,
    protected readonly transport: Transport,
    protected readonly options: MigrateOptions,
  ) {
    this.id = options.migrationId ?? randomUUID();
    this.codecChoice = options.codec ?? DEFAULT_CODEC;
    this.codec = this.codecChoice === 'auto' ? 'lz4' : this.codecChoice;
    this.collectGarbage = collectorFrom(options.collectGarbage);
    this.policy = options.policy ?? defaultPolicy({ maxRounds: options.maxRounds, switchover: options.switchover });
    const d = domain.descriptor;
    this.pageSize = d.pageSize;
    this.sentDigest = new PageDigest(domain.pageCount, d.pageSize);
    this.dirty = dirtyTrackerFor(domain, this.sentDigest.hashes);
    this.model = new DowntimeModel(this.rounds, this.pageSize, options.calibration ?? new SwitchoverCalibration(), options.maxBandwidthBytesPerSec);
    this.model.findDirtyMs = () => this.dirty.takeMs();
    this.model.findDirtyLagShare = () => this.dirty.takeLagShare();
    this.cap = options.maxBandwidthBytesPerSec !== undefined ? new BandwidthCap(options.maxBandwidthBytesPerSec) : undefined;
    this.seat = options.switchoverGate ? new GateSeat(options.switchoverGate, this.id, () => this.gateStopReason()) : undefined;
    // The gate last: a frame the cap let go still waits out another migration's pause.
    this.pacer = pacerOf(this.cap, this.seat);
    this.memory = new SourceMemoryLedger(d.memoryBytes);
    this.memory.set('pageHashes', this.sentDigest.hashes.byteLength);
    if (domain.dirtyTracking === 'scan') this.memory.set('scanTable', domain.pageCount * Uint32Array.BYTES_PER_ELEMENT);
    else this.memory.set('dirtyLog', dirtyBitmapBytes(domain.pageCount));
    this.dataPagesPerBatch = options.dataPagesPerBatch ?? this.defaultBatchPages();
    this.controlSender = new PageSender(domain, transport, this.sentDigest, {
      codec: this.codecChoice,
      capBytesPerSec: options.maxBandwidthBytesPerSec,
      dataPagesPerBatch: this.dataPagesPerBatch,
      maxInFlight: options.maxInFlight,
      cap: this.pacer,
    });
    this.sender = this.controlSender;
    this.deltaPlan = this.planDelta();
    this.throttle = new ThrottleController(options.autoConverge ?? DEFAULT_AUTO_CONVERGE);
    this.watchdog = new ProgressWatchdog(
      this.start,
      d.memoryBytes,
      options.completionTimeoutMsPerGiB ?? DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB,
      options.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS,
    );
    this.report = {
      migrationId: this.id,
      outcome: 'failed',
      guestRunningOn: 'source',
      startedAt: new Date().toISOString(),
      domain: { name: d.name, kind: d.kind, memoryBytes: d.memoryBytes, vcpus: d.vcpus },
      target: options.targetName ?? 'peer',
      codec: this.codecChoice,
      memoryBytes: d.memoryBytes,
      downtimeBudgetMs: this.budgetMs(),
      totalMs: 0,
      bytesRaw: 0,
      bytesWire: 0,
      rounds: this.rounds,
      maxThrottlePercent: 0,
      verified: false,
    };
    this.custody = new GuestCustody({
      id: this.id,
      domain,
      transport,
      options,
      report: this.report,
      dirty: this.dirty,
      sent: this.sentDigest,
      start: this.start,
      setPhase: (phase) => this.setPhase(phase),
    });
  }

  /** Page channels beside the control connection: none unless `channels` asks for more than one connection. */
  private get pageChannels(): number {
    const asked = this.options.channels ?? 1;
    return asked > 1 ? asked : 0;
  }

  /**
   * The default batch size, shrunk where the batch buffers of the control connection and of every
   * page channel would take more than their share of the memory bound (a guest of under about
   * 200 MiB with a compressing codec): each buffer holds a batch, twice with a compressing codec.
   */
  private defaultBatchPages(): number {
    const inFlight = this.options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_BATCHES;
    const channels = this.pageChannels;
    // A channel's worker holds its frame buffers and, when it compresses, one to gather into.
    const buffers = inFlight + channels * (inFlight + 1);
    const factor = this.codecChoice === 'none' ? 1 : 2;
    return batchPagesWithin(this.memory.boundBytes * SEND_BUFFER_SHARE_OF_BOUND, buffers, factor, this.pageSize, DEFAULT_DATA_PAGES_PER_BATCH);
  }

  /**
   * Deltas as the options ask, with the cache that fits the memory bound beside the rest at its
   * peak: the hashes and dirty log counted already, round 0's list of every page, and every batch
   * buffer the senders may allocate (with the room deltas add to them).
   */
  private planDelta(): DeltaPlan {
    const o = this.options;
    const inFlight = o.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT_BATCHES;
    const channels = this.pageChannels;
    const control = this.controlSender.mostBufferBytes;
    const workers = channels * workerBufferBytes({ memory: { kind: 'none' }, pageSize: this.pageSize, codec: this.channelCodec(), dataPagesPerBatch: this.dataPagesPerBatch, buffers: inFlight });
    return planDelta({
      mode: o.delta ?? DEFAULT_DELTA_MODE,
      capBytesPerSec: o.maxBandwidthBytesPerSec,
      cacheBytes: o.deltaCacheBytes,
      pageSize: this.pageSize,
      pageCount: this.domain.pageCount,
      boundBytes: this.memory.boundBytes,
      otherBytes: this.memory.bytes + this.domain.pageCount * Uint32Array.BYTES_PER_ELEMENT + control + workers,
      bufferBytes: deltaBufferBytes(inFlight * (1 + channels) + channels, this.dataPagesPerBatch, this.pageSize),
    });
  }

  /**
   * Decides, after round 0, whether the rounds after it send deltas, with `resent` pages to send
   * again, and only then allocates the cache and hands it to the senders. Under `auto` deltas end
   * when more pages are to be sent again than the cache has slots: a working set larger than the
   * cache churns it, and most pages would pay for the encoding and go whole all the same
   * (docs/bench/README.md, "Delta encoding"). Round 0 sends no deltas, so it needs no cache.
   */
  protected startDeltas(resent: number): void {
    if (!this.deltaAgreed || !this.deltaPlan.on || this.deltaCache || this.deltaDeclined) return;
    if ((this.options.delta ?? DEFAULT_DELTA_MODE) === 'auto' && resent > this.deltaPlan.slots) {
      this.deltaDeclined = 'cache-too-small';
      return;
    }
    this.deltaCache = new DeltaCache(this.deltaPlan.slots, this.pageSize, this.domain.pageCount);
    this.memory.set('deltaCache', this.deltaCache.bytes);
    this.sender.useDelta(this.deltaCache);
  }

  /** What `report.delta` says: whether deltas ran (or why not) and what went as deltas. */
  protected deltaReport(): NonNullable<MigrationReport['delta']> {
    const mode = this.options.delta ?? DEFAULT_DELTA_MODE;
    const cache = this.deltaCache;
    const why = cache ? undefined : !this.deltaPlan.on ? this.deltaPlan.why : !this.deltaAgreed ? 'target' : this.deltaDeclined;
    return { mode, on: cache !== undefined, ...(why ? { why } : {}), cacheBytes: cache?.bytes ?? 0, ...this.sender.deltaCounters };
  }

  /** Brings the ledger's buffer parts up to date (they grow as buffers are first used). */
  protected noteBuffers(): void {
    this.memory.set('sendBuffers', this.controlSender.bufferBytes);
    if (this.channelSender) this.memory.set('channelBuffers', this.channelSender.bufferBytes);
  }

  protected budgetMs(): number {
    return downtimeBudgetAt(performance.now() - this.start, this.options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS, this.options.downtimeRamp);
  }

  /** A WebSocket ping while the link is quiet: the round trip the switchover pays. */
  protected async measureRoundTrip(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const ms = await this.transport.ping();
      if (ms !== undefined) this.model.observeRoundTrip(ms);
    }
  }

  /** Pages of this round not yet sent, plus pages dirtied since the log was last read. */
  protected remainingBytes(): number {
    const roundLeft = Math.max(0, this.roundPages - (this.sender.counters.pages - this.roundStartPages));
    return (roundLeft + this.dirty.peek()) * this.pageSize;
  }

  /** The next record, which must be of `type` (or one of the types listed). */
  protected async expect<T extends MigrationRecord['type']>(type: T | readonly T[], timeoutMs: number): Promise<Extract<MigrationRecord, { type: T }>> {
    const types: readonly string[] = typeof type === 'string' ? [type] : type;
    const waitingFor = types.map((t) => `"${t}"`).join(' or ');
    // A cancel is honoured while waiting too (until "go"), not only between rounds.
    const record = await this.inbox!.next(timeoutMs, waitingFor, () => (this.goSent ? undefined : (this.cancelReason ?? this.channelSender?.failure)));
    this.protocolState = sourceTransition(this.protocolState, record.type);
    if (!types.includes(record.type)) {
      throw new UnexpectedRecordError(`the target sent "${record.type}" while the source waited for ${waitingFor}`);
    }
    return record as Extract<MigrationRecord, { type: T }>;
  }

  /** Waits for the target to acknowledge the round just sent, every batch of it written. */
  protected async expectRoundAck(timeoutMs: number): Promise<void> {
    let next = await this.expect(['collected', 'round-ack'], timeoutMs);
    if (next.type === 'collected') {
      // The target collected garbage after "pause-soon", before it acknowledged: not the round's cost.
      this.targetGcMs = next.ms;
      next = await this.expect('round-ack', timeoutMs);
    }
    const ack = next;
    if (ack.round !== this.round || ack.batches !== this.sender.seq) {
      throw new UnexpectedRecordError(
        `the target acknowledged round ${ack.round} at batch ${ack.batches}; expected round ${this.round} at batch ${this.sender.seq}`,
      );
    }
  }

  /**
   * Why a wait at the switchover gate must end now, if it must: the migration was cancelled, a
   * link failed, or (with the `abort` action) a deadline passed. A deadline with
   * `force-switchover` keeps the wait: that switchover needs the gate too.
   */
  protected gateStopReason(): MigrationError | undefined {
    const reason = (this.goSent ? undefined : this.cancelReason) ?? this.inbox?.failure ?? this.channelSender?.failure;
    if (reason || (this.options.timeoutAction ?? DEFAULT_TIMEOUT_ACTION) !== 'abort') return reason;
    return this.watchdog.check(performance.now());
  }

  protected throwIfCancelled(): void {
    if (this.cancelReason && !this.goSent) throw this.cancelReason;
  }

  protected setPhase(phase: MigrationPhase): void {
    this.phase = phase;
    // The check of the paused copy hashes a log-tracked guest's memory again, a hash a page.
    if (phase === 'verify' && this.domain.dirtyTracking !== 'scan') this.memory.set('verification', this.domain.pageCount * Uint32Array.BYTES_PER_ELEMENT);
    this.emitProgress();
  }

  /** Takes the dirty log, counting the pages no tick has counted yet toward the dirty rate. */
  protected async readDirtyLog(): Promise<Uint32Array> {
    const pages = await this.dirty.take();
    this.dirtyMeter.sample(Math.max(0, pages.length - this.dirtyCounted), performance.now());
    this.dirtyCounted = 0;
    return pages;
  }

  /** Refreshes the estimates between rounds, feeds the watchdog, and reports progress. */
  protected tick(): void {
    const now = performance.now();
    if (this.phase === 'precopy') {
      const dirty = this.dirty.peek();
      this.dirtyMeter.sample(Math.max(0, dirty - this.dirtyCounted), now);
      this.dirtyCounted = Math.max(dirty, this.dirtyCounted);
      this.watchdog.observe(this.remainingBytes(), now);
      this.expectedDowntimeMs = this.model.predict(dirty * this.pageSize);
    }
    this.emitProgress();
  }

  /** Why a throttle of `percent` asked of the domain is not applied; undefined if it is (or is 0). */
  protected unappliedThrottle(percent: number): string | undefined {
    return percent > 0 ? this.domain.throttleUnavailable : undefined;
  }

  protected emitProgress(): void {
    const onProgress = this.options.onProgress;
    if (!onProgress) return;
    const elapsedMs = performance.now() - this.start;
    const c = this.sender.counters;
    const inPrecopy = this.phase === 'precopy';
    const unapplied = this.unappliedThrottle(this.throttle.percent);
    const progress: MigrationProgress = {
      migrationId: this.id,
      phase: this.phase,
      round: this.round,
      roundPagesSent: Math.min(this.roundPages, c.pages - this.roundStartPages),
      roundPages: this.roundPages,
      bytesRaw: c.bytesRaw,
      bytesWire: this.wireBytesSent(),
      remainingBytes: inPrecopy ? this.remainingBytes() : 0,
      bandwidthBytesPerSec: this.model.bandwidth() || (elapsedMs > 0 ? (c.bytesRaw * 1000) / elapsedMs : 0),
      dirtyRateBytesPerSec: roundTo(this.dirtyMeter.bytesPerSecond(this.pageSize), 3),
      dirtyPagesPerSec: roundTo(this.dirtyMeter.pagesPerSecond, 3),
      expectedDowntimeMs: Number.isFinite(this.expectedDowntimeMs) ? roundTo(this.expectedDowntimeMs, 3) : undefined,
      downtimeBudgetMs: this.budgetMs(),
      throttlePercent: this.throttle.percent,
      ...(unapplied !== undefined ? { throttleUnavailable: unapplied } : {}),
      elapsedMs: roundTo(elapsedMs, 3),
    };
    try {
      onProgress(progress);
    } catch {
      // A progress observer that throws must not change where the guest ends up.
    }
  }

  /** Frame bytes sent on the control connection and every page channel. */
  protected wireBytesSent(): number {
    return this.transport.bytesSent + (this.channelSender?.bytesSent ?? 0);
  }

  /** `round-end.channels`: each page channel's batches so far (nothing without channels). */
  protected channelCounts(): { channels?: number[] } {
    return this.channelSender ? { channels: this.channelSender.channelBatches() } : {};
  }

  /**
   * The codec of the page channels' workers, which pick none per batch: under `auto`, lz4 behind a
   * bandwidth cap (a worker per channel compresses, so the CPU rarely sets the pace there) and
   * none without one.
   */
  protected channelCodec(): PageCodec {
    if (this.codecChoice !== 'auto') return this.codecChoice;
    return this.options.maxBandwidthBytesPerSec !== undefined ? 'lz4' : 'none';
  }

  /**
   * The versions `hello` offers, highest first: 3 (and 5) only when page channels are asked for,
   * 4 (and 5) only when deltas may be sent.
   */
  protected offeredVersions(): number[] {
    const channels = this.pageChannels > 0;
    const delta = this.deltaPlan.on;
    if (channels) return delta ? [CHANNELS_DELTA_PROTOCOL_VERSION, DELTA_PROTOCOL_VERSION, CHANNELS_PROTOCOL_VERSION, PROTOCOL_VERSION] : [CHANNELS_PROTOCOL_VERSION, PROTOCOL_VERSION];
    return delta ? [DELTA_PROTOCOL_VERSION, PROTOCOL_VERSION] : [PROTOCOL_VERSION];
  }

  /** The estimates the policy sees once `dirtyPages` are known to be dirty. */
  protected statsFor(dirtyPages: number): PrecopyStats {
    const last = this.rounds[this.rounds.length - 1]!;
    const bandwidth = this.model.bandwidth();
    const dirtyBytes = dirtyPages * this.pageSize;
    // The policy judges a round by what it left dirty: its own rate, not the progress's smoothed one.
    const dirtyRateBytesPerSec = last.durationMs > 0 ? (dirtyBytes * 1000) / last.durationMs : 0;
    this.expectedDowntimeMs = this.model.predict(dirtyBytes);
    return {
      round: this.round,
      elapsedMs: performance.now() - this.start,
      dirtyPages,
      dirtyBytes,
      bandwidthBytesPerSec: bandwidth,
      dirtyRateBytesPerSec,
      expectedDowntimeMs: this.expectedDowntimeMs,
      downtimeBudgetMs: this.budgetMs(),
      deadlineInMs: this.watchdog.msLeft(performance.now()),
      throttlePercent: this.throttle.percent,
      bytesSent: this.sender.counters.bytesRaw,
      memoryBytes: this.domain.descriptor.memoryBytes,
      findDirtyFloorMs: this.dirty.takeMs(),
      finalDowntimeBudgetMs: this.options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS,
    };
  }
}
