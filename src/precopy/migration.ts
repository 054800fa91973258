/**
 * The source side of a live migration: pre-copy rounds while the guest runs, then stop-and-copy
 * and the switchover handshake. The sequence and its failure rules are in docs/protocol.md.
 *
 * The one rule everything here serves: the guest runs on exactly one host. Until "go" is handed
 * to the transport, any failure resumes the guest here and the target discards its copy. Once
 * "go" may have left, the source never resumes on its own: it destroys its copy when the target
 * confirms, asks the target what it did if the link broke, and only if no answer comes keeps its
 * copy paused and reports the outcome as indeterminate.
 */

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirtyRateMeter } from '../dirtylog/dirty-rate.js';
import { mergeSorted } from '../dirtylog/page-lists.js';
import type { SourceDomain } from '../domain/backend.js';
import {
  asMigrationError,
  CancelledError,
  DigestMismatchError,
  MigrationError,
  PolicyAbortError,
  UnexpectedRecordError,
  UnsettledError,
} from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import { PageDigest, switchoverDigest } from '../protocol/page-digest.js';
import { sourceTransition, type SourceState } from '../protocol/receiver-state.js';
import { CHANNELS_PROTOCOL_VERSION, PROTOCOL_VERSION, type MigrationRecord, type PageCodec } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { armLoopGuard } from '../util/loop-guard.js';
import { collectorFrom } from '../util/gc.js';
import { roundTo } from '../util/stats.js';
import { DEFAULT_AUTO_CONVERGE, ThrottleController } from './auto-converge.js';
import { BandwidthCap } from './bandwidth-cap.js';
import { openChannels, type ChannelSender, type PageSink } from './channels.js';
import { checkMigrateOptions } from './check-options.js';
import { DowntimeModel } from './downtime-model.js';
import { GuestCustody } from './guest-custody.js';
import { dirtyTrackerFor, type DirtyTracker } from './dirty-tracker.js';
import { PageSender } from './page-sender.js';
import {
  decisionOf,
  DEFAULT_DOWNTIME_BUDGET_MS,
  defaultPolicy,
  downtimeBudgetAt,
  roundTimeAt,
  type PrecopyPolicy,
  type PrecopyStats,
  type RoundSample,
} from './policy.js';
import {
  DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_TIMEOUT_ACTION,
  ProgressWatchdog,
} from './progress-watchdog.js';
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  DEFAULT_SWITCHOVER_TIMEOUT_MS,
  type MigrateOptions,
} from './migrate-options.js';
import { RecordInbox } from './record-inbox.js';
import { SwitchoverCalibration } from './switchover-calibration.js';
import type { MigrationPhase, MigrationProgress, MigrationReport, RoundReport } from './report.js';

/** Pages sent between two looks at cancellation, peer aborts and deadlines. */
const SLICE_PAGES = 4096;

/**
 * Live-migrates `domain` over `transport`, whose other end is a target agent. Always resolves
 * with a report (a failure is an outcome, not an exception) and closes the transport; rejects
 * only on a programming error. Every wait settles when the link closes or `signal` aborts; as a
 * backstop, should the process run out of work while the migration is unsettled, the migration
 * ends by the usual rules with `ERR_UNSETTLED` instead of the process exiting under it.
 */
export async function migrate(domain: SourceDomain, transport: Transport, options: MigrateOptions = {}): Promise<MigrationReport> {
  checkMigrateOptions(options);
  return new SourceMigration(domain, transport, options).run();
}

/** Why pre-copy stopped early because a deadline passed with the `force-switchover` action. */
class ForcedSwitchover {
  constructor(readonly error: MigrationError) {}
}

interface PauseTimes {
  pauseStart: number;
  finalBytes: number;
  pausedAt: number;
  completeSentAt: number;
  finalPages: number;
  stateBytes: number;
}

class SourceMigration {
  private readonly id: string;
  private readonly codec: PageCodec;
  private readonly policy: PrecopyPolicy;
  private readonly start = performance.now();
  private readonly rounds: RoundReport[] = [];
  private readonly sentDigest: PageDigest;
  /** The pause model: rounds, round trips and the calibration it learns from. */
  private readonly model: DowntimeModel;
  private sender: PageSink;
  /** The cap on the sending rate, shared by every connection that carries pages. */
  private readonly cap: BandwidthCap | undefined;
  /** The page channels, once open (version 3 only). */
  private channelSender: ChannelSender | undefined;
  /** The domain's dirty log, or a scan against `sentDigest`, as the domain declares. */
  private readonly dirty: DirtyTracker;
  private readonly throttle: ThrottleController;
  private readonly watchdog: ProgressWatchdog;
  private readonly pageSize: number;
  private readonly report: MigrationReport;
  private inbox: RecordInbox | undefined;
  private phase: MigrationPhase = 'handshake';
  /** Where the source stands in the protocol (src/protocol/receiver-state.ts). */
  private protocolState: SourceState = 'hello-sent';
  private round = 0;
  private roundPages = 0;
  private roundStartPages = 0;
  private goSent = false;
  private cancelReason: MigrationError | undefined;
  private forced: ForcedSwitchover | undefined;
  /** Latest estimate of the pause, refreshed by the ticker. */
  private expectedDowntimeMs = Number.POSITIVE_INFINITY;
  /** The guest's dirty rate, fed at every tick and every read of the dirty log (for progress). */
  private dirtyMeter = new DirtyRateMeter();
  /** Of the pages in the dirty log now, those already counted by `dirtyMeter`. */
  private dirtyCounted = 0;
  private pauseTimes: PauseTimes | undefined;
  /** Where the guest runs, and the rules that move it when the migration ends. */
  private readonly custody: GuestCustody;
  /** The stop-and-copy round's "round-end", queued behind its batches but not awaited yet. */
  private finalRoundEnd: Promise<void> = Promise.resolve();
  private readonly collectGarbage: (() => void) | undefined;
  /** What the target reported collecting garbage before acknowledging the round being sent, in ms. */
  private targetGcMs = 0;

  constructor(
    private readonly domain: SourceDomain,
    private readonly transport: Transport,
    private readonly options: MigrateOptions,
  ) {
    this.id = options.migrationId ?? randomUUID();
    this.codec = options.codec ?? 'lz4';
    this.collectGarbage = collectorFrom(options.collectGarbage);
    this.policy = options.policy ?? defaultPolicy({ maxRounds: options.maxRounds, switchover: options.switchover });
    const d = domain.descriptor;
    this.pageSize = d.pageSize;
    this.sentDigest = new PageDigest(domain.pageCount, d.pageSize);
    this.dirty = dirtyTrackerFor(domain, this.sentDigest.hashes);
    this.model = new DowntimeModel(this.rounds, this.pageSize, options.calibration ?? new SwitchoverCalibration(), options.maxBandwidthBytesPerSec);
    this.cap = options.maxBandwidthBytesPerSec !== undefined ? new BandwidthCap(options.maxBandwidthBytesPerSec) : undefined;
    this.sender = new PageSender(domain, transport, this.sentDigest, {
      codec: this.codec,
      dataPagesPerBatch: options.dataPagesPerBatch,
      maxInFlight: options.maxInFlight,
      cap: this.cap,
    });
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
      codec: this.codec,
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
      setPhase: (phase) => this.setPhase(phase),
    });
  }

  async run(): Promise<MigrationReport> {
    const onAbort = (): void => {
      const reason = this.options.signal?.reason;
      this.cancelReason ??= new CancelledError(reason instanceof Error ? `migration cancelled: ${reason.message}` : undefined);
      this.inbox?.interrupt();
    };
    if (this.options.signal?.aborted) onAbort();
    this.options.signal?.addEventListener('abort', onAbort, { once: true });
    const ticker = setInterval(() => this.tick(), this.options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS);
    ticker.unref();
    // Every wait below settles when the link closes or the signal aborts; should one ever not,
    // the process would run out of work and exit in silence. The guard ends the migration instead.
    const guard = armLoopGuard(
      () =>
        new UnsettledError(
          `the migration was left waiting in phase "${this.phase}" on something nothing could settle any more ` +
            '(the process ran out of work); this is a bug in livemig, please report it',
        ),
    );
    const guarded = <T>(work: Promise<T>): Promise<T> => {
      work.catch(() => undefined);
      return Promise.race([work, guard.emptied]);
    };
    try {
      try {
        await guarded(this.precopyAndPrepare());
      } catch (err) {
        const error = asMigrationError(err);
        // Resume before anything else: finding the best explanation may wait on the link.
        const resumeError = await this.custody.resumeHere();
        await this.custody.undo(await this.explain(error), resumeError);
        return this.report;
      }
      try {
        await guarded(this.switchover());
      } catch (err) {
        await this.recoverFromUnsettled(asMigrationError(err));
      }
      return this.report;
    } finally {
      guard.disarm();
      clearInterval(ticker);
      this.options.signal?.removeEventListener('abort', onAbort);
      this.report.totalMs = roundTo(performance.now() - this.start, 3);
      // Not earlier: closing connections and stopping workers costs this thread time in the pause.
      this.channelSender?.release(this.report.outcome === 'completed');
      this.report.bytesRaw = this.sender.counters.bytesRaw;
      this.report.bytesWire = this.wireBytesSent();
      this.report.maxThrottlePercent = this.throttle.maxPercent;
      this.setPhase('done');
    }
  }

  /** Everything up to and including "prepared": any failure here is undone by resuming here. */
  private async precopyAndPrepare(): Promise<void> {
    const timeoutMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.setPhase('handshake');
    const helloAt = performance.now();
    await this.transport.send(
      encodeRecord({ type: 'hello', versions: this.offeredVersions(), migrationId: this.id, domain: this.domain.descriptor, codec: this.codec }),
    );
    this.inbox = new RecordInbox(this.transport, this.options.limits);
    const ready = await this.expect('ready', timeoutMs);
    if (!this.offeredVersions().includes(ready.version) || ready.migrationId !== this.id) {
      throw new UnexpectedRecordError(
        `the target answered "ready" for version ${ready.version} and migration ${ready.migrationId}; expected version ${this.offeredVersions().join(' or ')} and ${this.id}`,
      );
    }
    // An upper bound (ready includes the target's allocation) until measured.
    this.model.observeRoundTrip(performance.now() - helloAt);
    const guest = this.options.guest;
    if (guest) await this.transport.send(encodeRecord({ type: 'guest', id: guest.id, priority: guest.priority }));
    await this.measureRoundTrip();
    if (ready.version === CHANNELS_PROTOCOL_VERSION) await this.openPageChannels(timeoutMs);

    // Round 0 sends all memory; the dirty log, enabled first, catches what changes meanwhile.
    this.setPhase('precopy');
    this.custody.holdingGuest = true;
    this.dirty.start();
    this.dirtyMeter = new DirtyRateMeter({ startMs: performance.now() });
    const pageCount = this.domain.pageCount;
    let pending: Uint32Array = new Uint32Array(pageCount);
    for (let pfn = 0; pfn < pageCount; pfn++) pending[pfn] = pfn;
    let predictedMs = Number.POSITIVE_INFINITY;
    for (;;) {
      const unsent = await this.sendRound(pending, false);
      pending = mergeSorted(unsent, await this.readDirtyLog());
      if (this.options.maxBandwidthBytesPerSec !== undefined) this.model.wireShare = (await this.sender.wireShare(pending)) ?? this.model.wireShare;
      this.round++;
      const stats = this.statsFor(pending.length);
      if (this.forced) {
        predictedMs = stats.expectedDowntimeMs;
        this.report.forcedSwitchover = this.forced.error.toJSON();
        this.report.switchoverReason = 'forced-by-deadline';
        break;
      }
      const last = this.rounds[this.rounds.length - 1]!;
      last.dirtyRateBytesPerSec = roundTo(stats.dirtyRateBytesPerSec, 3);
      const percent = this.throttle.afterRound({
        sentBytes: last.bytesRaw,
        dirtyBytes: stats.dirtyBytes,
        expectedDowntimeMs: stats.expectedDowntimeMs,
        budgetMs: stats.downtimeBudgetMs,
      });
      this.domain.setThrottle(percent / 100);
      const { decision, reason } = decisionOf(this.policy(stats));
      if (decision === 'abort') {
        throw new PolicyAbortError(`the pre-copy policy gave up in round ${this.round} with ${pending.length} dirty pages`);
      }
      if (decision === 'stop-and-copy') {
        predictedMs = stats.expectedDowntimeMs;
        this.report.switchoverReason = reason ?? 'policy';
        break;
      }
    }

    // Stop-and-copy: the pages read from the log just now, plus any dirtied before the pause.
    this.setPhase('stop-and-copy');
    this.throwIfCancelled();
    this.report.predictedDowntimeMs = Number.isFinite(predictedMs) ? roundTo(predictedMs, 3) : undefined;
    this.report.downtimeBudgetMs = this.budgetMs();
    const pauseStart = performance.now();
    this.custody.paused = true;
    await this.domain.pause();
    const pausedAt = performance.now();
    const final = mergeSorted(pending, await this.dirty.take());
    await this.sendRound(final, true);
    // The last round's end, the state and "complete" are queued together and written in one go.
    const state = await this.domain.saveState();
    const digest = switchoverDigest(this.sentDigest.digest(), state);
    await Promise.all([
      this.finalRoundEnd,
      this.transport.send(encodeRecord({ type: 'device-state', state })),
      this.transport.send(encodeRecord({ type: 'complete', batches: this.sender.seq, digest })),
    ]);
    this.protocolState = sourceTransition(this.protocolState, 'sent-complete');
    const completeSentAt = performance.now();
    this.setPhase('switchover');
    // The stop-and-copy round is acknowledged like any other; the source reads that
    // acknowledgement only now, so as not to wait a round trip before sending the state.
    await this.expectRoundAck(timeoutMs);
    const prepared = await this.expect('prepared', timeoutMs);
    if (prepared.digest !== digest) {
      throw new DigestMismatchError(`the target holds memory and device state with digest ${prepared.digest}, but the source sent ${digest}`);
    }
    this.throwIfCancelled();
    this.pauseTimes = {
      pauseStart,
      pausedAt,
      completeSentAt,
      finalPages: final.length,
      finalBytes: (final.length - (this.rounds.at(-1)?.zeroPages ?? 0)) * this.pageSize,
      stateBytes: state.length,
    };
  }

  /** "go", then wait for "resumed": from here the source never resumes its copy by itself. */
  private async switchover(): Promise<void> {
    const s = this.pauseTimes!;
    const goAt = performance.now();
    try {
      this.goSent = true;
      this.protocolState = sourceTransition(this.protocolState, 'sent-go');
      await this.transport.send(encodeRecord({ type: 'go' }));
      const resumed = await this.expect('resumed', this.options.switchoverTimeoutMs ?? DEFAULT_SWITCHOVER_TIMEOUT_MS);
      const resumedAt = performance.now();
      // The target's resume cannot have taken longer than the whole go/resumed exchange (§12).
      const resumeMs = Math.min(resumed.resumeMs, resumedAt - goAt);
      const roundTrip = resumedAt - goAt - resumeMs;
      this.report.downtimeMs = roundTo(goAt - s.pauseStart + roundTrip / 2 + resumeMs, 3);
      // Teach the prediction what this pause really cost, for the migrations after this one.
      const model = this.model.roundTimeModel(s.finalBytes);
      // Not from a last round the link set the pace of: the calibration is for the rest.
      if (model && !this.model.linkBound()) {
        this.model.calibration.observe(roundTimeAt(model, s.finalBytes), this.report.downtimeMs - this.model.rttMs / 2);
      }
      this.report.downtimeUpperBoundMs = roundTo(resumedAt - s.pauseStart, 3);
      this.report.switchover = {
        pauseMs: roundTo(s.pausedAt - s.pauseStart, 3),
        finalPages: s.finalPages,
        deviceStateBytes: s.stateBytes,
        sendMs: roundTo(s.completeSentAt - s.pausedAt, 3),
        prepareMs: roundTo(goAt - s.completeSentAt, 3),
        targetResumeMs: roundTo(resumeMs, 3),
        goRoundTripMs: roundTo(roundTrip, 3),
        roundTripMs: roundTo(this.model.rttMs, 3),
      };
      this.report.targetDigest = resumed.digest;
    } catch (err) {
      const error = asMigrationError(err);
      if (error.code === 'ERR_PEER_ABORTED') {
        // An explicit abort after "go" means the target could not resume and destroyed its
        // copy: the paused copy here is the only one, so it runs again here.
        await this.custody.undo(error);
        return;
      }
      this.transport.destroy();
      await this.custody.resolveAfterGo(error, this.pauseTimes!.pauseStart);
      return;
    }
    await this.transport.close().catch(() => undefined);
    await this.custody.finishOnTarget();
  }

  /**
   * The switchover was left waiting on something that could never settle: finish by the usual
   * rules from where it stood (before "go", resume here; after, ask the target).
   */
  private async recoverFromUnsettled(error: MigrationError): Promise<void> {
    if (this.report.outcome === 'completed') {
      this.report.sourceCleanupError ??= { code: error.code, message: `the guest runs on the target, but retiring the copy here did not finish: ${error.message}` };
      return;
    }
    if (!this.goSent) {
      await this.custody.undo(error, await this.custody.resumeHere());
      return;
    }
    this.transport.destroy();
    await this.custody.resolveAfterGo(error, this.pauseTimes!.pauseStart);
  }

  /**
   * A send that failed because the target hung up usually has a better explanation in flight:
   * the abort record the target sent before closing. Prefer it when it arrives promptly.
   */
  private async explain(error: MigrationError): Promise<MigrationError> {
    if (error.code !== 'ERR_CONNECTION_CLOSED' || !this.inbox) return error;
    const deadline = performance.now() + 500;
    while (!this.inbox.failure && performance.now() < deadline) await sleep(10);
    return this.inbox.failure?.code === 'ERR_PEER_ABORTED' ? this.inbox.failure : error;
  }

  /**
   * Sends one round and waits for its acknowledgement. Returns the pages it did not send
   * because a deadline forced the switchover (empty otherwise).
   */
  private async sendRound(pfns: Uint32Array, stopAndCopy: boolean): Promise<Uint32Array> {
    this.throwIfCancelled();
    const before = { ...this.sender.counters };
    const vcpuMsBefore = this.domain.vcpuTimeMs?.();
    const started = performance.now();
    this.roundPages = pfns.length;
    this.roundStartPages = before.pages;
    this.sender.startRound?.(pfns.length);
    this.emitProgress();
    let unsent: Uint32Array = pfns.subarray(pfns.length);
    let pauseSoon = false;
    // A round with nothing to send still answers to the deadlines: a policy that keeps asking for
    // empty rounds must not outlive them.
    if (!stopAndCopy && pfns.length === 0) this.checkDeadlines();
    for (let first = 0; first < pfns.length; first += SLICE_PAGES) {
      this.inbox?.throwIfFailed();
      this.throwIfCancelled();
      if (!stopAndCopy && this.checkDeadlines()) {
        unsent = pfns.subarray(first);
        break;
      }
      await this.sender.sendPages(this.round, pfns.subarray(first, Math.min(pfns.length, first + SLICE_PAGES)));
    }
    const sentPages = () => this.sender.counters.pages - before.pages;
    if (stopAndCopy) {
      // Paused: queue the round's end behind the batches at once; the caller waits for the writes.
      await this.sender.handedOver();
      this.finalRoundEnd = this.transport.send(encodeRecord({ type: 'round-end', round: this.round, pages: sentPages(), ...this.channelCounts() }));
      this.finalRoundEnd.catch(() => undefined);
    } else {
      await this.sender.flush();
      // If the pause is likely to follow this round, say so: the target then gets ready (collects
      // its garbage) before it acknowledges, and this side does the same once it has the ack.
      pauseSoon = this.pauseLikely({ bytes: this.model.workOf(this.sender.counters.bytesRaw - before.bytesRaw, this.sender.counters.zeroPages - before.zeroPages), ms: performance.now() - started });
      if (pauseSoon) await this.transport.send(encodeRecord({ type: 'pause-soon' }));
      await this.transport.send(encodeRecord({ type: 'round-end', round: this.round, pages: sentPages(), ...this.channelCounts() }));
    }
    // Before the pause, wait until the target has written the whole round: the round's duration
    // then measures what the target absorbs, and nothing queued in buffers stretches the pause.
    const handedOverAt = performance.now();
    let ackMs = 0;
    this.targetGcMs = 0;
    if (!stopAndCopy) {
      await this.expectRoundAck(this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
      ackMs = performance.now() - handedOverAt;
      this.model.observeRoundTrip(ackMs);
    }
    const durationMs = performance.now() - started;
    const vcpuMs = vcpuMsBefore === undefined ? undefined : (this.domain.vcpuTimeMs?.() ?? vcpuMsBefore) - vcpuMsBefore;
    // The target collected before it acknowledged; this side collects now, while the guest still
    // runs, and outside the round's duration: the dirty log is read after it.
    let gcMs = 0;
    if (pauseSoon && this.collectGarbage) {
      const gcStarted = performance.now();
      this.collectGarbage();
      gcMs = performance.now() - gcStarted;
    }
    const bytesRaw = this.sender.counters.bytesRaw - before.bytesRaw;
    this.rounds.push({
      round: this.round,
      stopAndCopy,
      pages: sentPages(),
      zeroPages: this.sender.counters.zeroPages - before.zeroPages,
      bytesRaw,
      bytesWire: this.sender.counters.bytesWire - before.bytesWire,
      durationMs: roundTo(durationMs, 3),
      dirtyRateBytesPerSec: 0,
      guestCpuCores: vcpuMs !== undefined && durationMs > 0 ? roundTo(vcpuMs / durationMs, 3) : undefined,
      bandwidthBytesPerSec: durationMs > 0 ? roundTo((bytesRaw * 1000) / durationMs, 3) : 0,
      sendMs: roundTo(handedOverAt - started, 3),
      ackMs: roundTo(ackMs, 3),
      gcMs: roundTo(gcMs, 3),
      targetGcMs: roundTo(this.targetGcMs, 3),
      throttlePercent: this.throttle.percent,
    });
    return unsent;
  }

  /**
   * Whether the decision after the round being sent will likely be the switchover: a deadline
   * forces it, or the policy would stop on the figures expected once the round is acknowledged
   * (for a policy without `wouldStop`: the round limit is reached, or the pause for what is dirty
   * now fits the budget). Only for the "pause-soon" hint; a wrong guess costs a garbage
   * collection on each side, during which a busy guest dirties more for the next round (5 MB at
   * 450 MB/s: a floor under the pause, were it every round).
   */
  private pauseLikely(current: RoundSample): boolean {
    if (this.forced) return true;
    const wouldStop = this.policy.wouldStop;
    if (!wouldStop) {
      const maxRounds = this.options.maxRounds;
      if (maxRounds !== undefined && this.round + 1 >= maxRounds) return true;
      return this.model.predict(this.dirty.peek() * this.pageSize, current) <= this.budgetMs();
    }
    // The guest goes on writing until the acknowledgement, which may take as long as the last one.
    const ackMs = this.rounds.at(-1)?.ackMs ?? 0;
    const roundMs = current.ms + ackMs;
    const dirtyPages = Math.round(this.dirty.peek() * (current.ms > 0 ? roundMs / current.ms : 1));
    const dirtyBytes = dirtyPages * this.pageSize;
    const ackedAt = performance.now() + ackMs;
    return wouldStop({
      round: this.round + 1,
      elapsedMs: ackedAt - this.start,
      dirtyPages,
      dirtyBytes,
      // After the first pass alone, the link's pace is that pass's.
      bandwidthBytesPerSec: this.model.bandwidth() || (roundMs > 0 ? (current.bytes * 1000) / roundMs : 0),
      dirtyRateBytesPerSec: roundMs > 0 ? (dirtyBytes * 1000) / roundMs : 0,
      expectedDowntimeMs: this.model.predict(dirtyBytes, current),
      downtimeBudgetMs: this.budgetMs(),
      deadlineInMs: this.watchdog.msLeft(ackedAt),
      throttlePercent: this.throttle.percent,
      bytesSent: this.sender.counters.bytesRaw,
      memoryBytes: this.domain.descriptor.memoryBytes,
    });
  }

  /**
   * Looks at the deadlines. Throws on `abort`; on `force-switchover` records why and returns
   * true, and the caller stops the round and switches over.
   */
  private checkDeadlines(): boolean {
    if (this.forced) return true;
    const now = performance.now();
    this.watchdog.observe(this.remainingBytes(), now);
    const expired = this.watchdog.check(now);
    if (!expired) return false;
    if ((this.options.timeoutAction ?? DEFAULT_TIMEOUT_ACTION) === 'abort') throw expired;
    this.forced = new ForcedSwitchover(expired);
    return true;
  }

  /** The estimates the policy sees once `dirtyPages` are known to be dirty. */
  private statsFor(dirtyPages: number): PrecopyStats {
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
    };
  }

  private budgetMs(): number {
    return downtimeBudgetAt(performance.now() - this.start, this.options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS, this.options.downtimeRamp);
  }

  /** A WebSocket ping while the link is quiet: the round trip the switchover pays. */
  private async measureRoundTrip(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const ms = await this.transport.ping();
      if (ms !== undefined) this.model.observeRoundTrip(ms);
    }
  }

  /** Pages of this round not yet sent, plus pages dirtied since the log was last read. */
  private remainingBytes(): number {
    const roundLeft = Math.max(0, this.roundPages - (this.sender.counters.pages - this.roundStartPages));
    return (roundLeft + this.dirty.peek()) * this.pageSize;
  }

  /** The next record, which must be of `type` (or one of the types listed). */
  private async expect<T extends MigrationRecord['type']>(type: T | readonly T[], timeoutMs: number): Promise<Extract<MigrationRecord, { type: T }>> {
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

  /** The versions `hello` offers: version 3 only when page channels are asked for. */
  private offeredVersions(): number[] {
    return (this.options.channels ?? 1) > 1 ? [CHANNELS_PROTOCOL_VERSION, PROTOCOL_VERSION] : [PROTOCOL_VERSION];
  }

  /** Opens the page channels; from now on pages travel on them. */
  private async openPageChannels(timeoutMs: number): Promise<void> {
    this.channelSender = await openChannels(this.domain, this.sender as PageSender, this.options.channels!, this.options.openChannel!, this.sentDigest, {
      migrationId: this.id,
      codec: this.codec,
      dataPagesPerBatch: this.options.dataPagesPerBatch,
      maxInFlight: this.options.maxInFlight,
      cap: this.cap,
      timeoutMs,
      limits: this.options.limits,
      onFailure: () => this.inbox?.interrupt(),
    });
    this.sender = this.channelSender;
    this.report.channels = this.options.channels;
  }

  /** `round-end.channels`: each page channel's batches so far (nothing without channels). */
  private channelCounts(): { channels?: number[] } {
    return this.channelSender ? { channels: this.channelSender.channelBatches() } : {};
  }

  /** Frame bytes sent on the control connection and every page channel. */
  private wireBytesSent(): number {
    return this.transport.bytesSent + (this.channelSender?.bytesSent ?? 0);
  }

  /** Waits for the target to acknowledge the round just sent, every batch of it written. */
  private async expectRoundAck(timeoutMs: number): Promise<void> {
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

  private throwIfCancelled(): void {
    if (this.cancelReason && !this.goSent) throw this.cancelReason;
  }

  private setPhase(phase: MigrationPhase): void {
    this.phase = phase;
    this.emitProgress();
  }

  /** Takes the dirty log, counting the pages no tick has counted yet toward the dirty rate. */
  private async readDirtyLog(): Promise<Uint32Array> {
    const pages = await this.dirty.take();
    this.dirtyMeter.sample(Math.max(0, pages.length - this.dirtyCounted), performance.now());
    this.dirtyCounted = 0;
    return pages;
  }

  /** Refreshes the estimates between rounds, feeds the watchdog, and reports progress. */
  private tick(): void {
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

  private emitProgress(): void {
    const onProgress = this.options.onProgress;
    if (!onProgress) return;
    const elapsedMs = performance.now() - this.start;
    const c = this.sender.counters;
    const inPrecopy = this.phase === 'precopy';
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
      elapsedMs: roundTo(elapsedMs, 3),
    };
    try {
      onProgress(progress);
    } catch {
      // A progress observer that throws must not change where the guest ends up.
    }
  }
}
