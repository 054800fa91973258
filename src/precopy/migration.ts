/**
 * The source side of a live migration: the handshake, pre-copy rounds while the guest runs (sent
 * by `precopy-rounds.ts`), then stop-and-copy and the switchover. The sequence and its failure
 * rules are in docs/protocol.md.
 *
 * The one rule everything here serves: the guest runs on exactly one host. Until "go" is handed
 * to the transport, any failure resumes the guest here and the target discards its copy. Once
 * "go" may have left, the source never resumes on its own: it destroys its copy when the target
 * confirms, asks the target what it did if the link broke, and only if no answer comes keeps its
 * copy paused and reports the outcome as indeterminate.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { mergeSorted } from '../dirtylog/page-lists.js';
import type { SourceDomain } from '../domain/backend.js';
import {
  asMigrationError,
  CancelledError,
  DigestMismatchError,
  MigrationError,
  UnexpectedRecordError,
  UnsettledError,
} from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import { switchoverDigest } from '../protocol/page-digest.js';
import { sourceTransition } from '../protocol/receiver-state.js';
import { versionHasChannels, versionHasDelta } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { armLoopGuard } from '../util/loop-guard.js';
import { roundTo } from '../util/stats.js';
import { openChannels } from './channels.js';
import { checkMigrateOptions } from './check-options.js';
import { mergeIntoRuns } from './dirty-tracker.js';
import { PageSender } from './page-sender.js';
import { roundTimeAt } from './policy.js';
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  DEFAULT_SWITCHOVER_TIMEOUT_MS,
  type MigrateOptions,
} from './migrate-options.js';
import { PrecopyRounds } from './precopy-rounds.js';
import { RecordInbox } from './record-inbox.js';
import type { MigrationReport } from './report.js';

/**
 * Live-migrates `domain` over `transport`, whose other end is a target agent. Options it cannot
 * use reject at once with `ERR_INVALID_ARGUMENT`, before the guest or the transport is touched.
 * Once they are accepted it always resolves with a report (a failure is an outcome, not an
 * exception) and closes the transport; it rejects then only on a programming error. Every wait
 * settles when the link closes or `signal` aborts; as a backstop, should the process run out of
 * work while the migration is unsettled, the migration ends by the usual rules with
 * `ERR_UNSETTLED` instead of the process exiting under it.
 */
export async function migrate(domain: SourceDomain, transport: Transport, options: MigrateOptions = {}): Promise<MigrationReport> {
  checkMigrateOptions(options);
  return new SourceMigration(domain, transport, options).run();
}

/** The source's sequence: pre-copy rounds, stop-and-copy, the switchover, and every way out. */
class SourceMigration extends PrecopyRounds {
  /** The device-state save, once started in the pause. */
  private stateSaving: Promise<Uint8Array> | undefined;

  async run(): Promise<MigrationReport> {
    const onAbort = (): void => {
      const reason = this.options.signal?.reason;
      this.cancelReason ??= new CancelledError(reason instanceof Error ? `migration cancelled: ${reason.message}` : undefined);
      this.inbox?.interrupt();
      this.seat?.interrupt();
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
        // A save still under way ends first: a hypervisor may not resume in the middle of one.
        await this.stateSaving?.catch(() => undefined);
        // Resume before anything else: finding the best explanation may wait on the link.
        const resumeError = await this.custody.resumeHere();
        this.seat?.release();
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
      // Whatever path ended it, the host's other migrations must not wait on this one any more.
      this.seat?.release();
      this.options.signal?.removeEventListener('abort', onAbort);
      // A completed migration ends when the guest was released here, before its copy is checked.
      this.report.totalMs = roundTo((this.custody.releasedAt ?? performance.now()) - this.start, 3);
      // Not earlier: closing connections and stopping workers costs this thread time in the pause.
      this.channelSender?.release(this.report.outcome === 'completed');
      this.report.bytesRaw = this.sender.counters.bytesRaw;
      this.report.bytesWire = this.wireBytesSent();
      this.report.maxThrottlePercent = this.throttle.maxPercent;
      const unapplied = this.unappliedThrottle(this.throttle.maxPercent);
      if (unapplied !== undefined) this.report.throttleUnavailable = unapplied;
      this.noteBuffers();
      this.report.memory = this.memory.report();
      this.report.delta = this.deltaReport();
      this.setPhase('done');
    }
  }

  /** Everything up to and including "prepared": any failure here is undone by resuming here. */
  private async precopyAndPrepare(): Promise<void> {
    const timeoutMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    await this.handshake(timeoutMs);
    const { pending, predictedMs } = await this.precopy();
    await this.stopAndCopy(pending, predictedMs, timeoutMs);
  }

  /** hello and ready, the guest's identity, the round trip, and the page channels if asked for. */
  private async handshake(timeoutMs: number): Promise<void> {
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
    // The cache waits for round 0's end, when deltas are decided on (startDeltas).
    this.deltaAgreed = this.deltaPlan.on && versionHasDelta(ready.version);
    if (versionHasChannels(ready.version)) await this.openPageChannels(timeoutMs);
  }

  /**
   * Stop-and-copy: pauses the guest, sends the pages read from the log just now plus any dirtied
   * before the pause, the device state and "complete", and waits for "prepared".
   */
  private async stopAndCopy(pending: Uint32Array, predictedMs: number, timeoutMs: number): Promise<void> {
    this.setPhase('stop-and-copy');
    this.throwIfCancelled();
    this.report.predictedDowntimeMs = Number.isFinite(predictedMs) ? roundTo(predictedMs, 3) : undefined;
    this.report.downtimeBudgetMs = this.budgetMs();
    const pauseStart = performance.now();
    this.custody.paused = true;
    await this.domain.pause();
    const pausedAt = performance.now();
    // The device state is fixed once paused and is not the RAM this engine moves, so the backend
    // saves it while the last pages are found and sent (QEMU's save runs beside the scan).
    const saving = Promise.resolve().then(() => this.domain.saveState());
    saving.catch(() => undefined);
    this.stateSaving = saving;
    // A scan hands out its pages chunk by chunk: they are sent while the next chunks are scanned.
    const runs = this.dirty.takeRuns?.();
    const final = runs ? mergeIntoRuns(pending, runs) : mergeSorted(pending, await this.dirty.take());
    let foundAt = performance.now();
    const sent = await this.sendRound(final, true, () => (foundAt = performance.now()));
    const scanWaitMs = runs ? sent.scanWaitMs : foundAt - pausedAt;
    const finalPages = this.rounds.at(-1)?.pages ?? 0;
    // The last round's end, the state and "complete" are queued together and written in one go.
    const state = await saving;
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
      foundAt,
      scanWaitMs,
      completeSentAt,
      finalPages,
      finalBytes: (finalPages - (this.rounds.at(-1)?.zeroPages ?? 0)) * this.pageSize,
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
      // The guest runs on the target: the pause is over, and the host's other migrations go on.
      this.seat?.release();
      // The target's resume cannot have taken longer than the whole go/resumed exchange (§12).
      const resumeMs = Math.min(resumed.resumeMs, resumedAt - goAt);
      const roundTrip = resumedAt - goAt - resumeMs;
      this.report.downtimeMs = roundTo(goAt - s.pauseStart + roundTrip / 2 + resumeMs, 3);
      // Teach the prediction what this pause really cost, for the migrations after this one.
      const model = this.model.roundTimeModel(s.finalBytes);
      // Not from a last round the link set the pace of: the calibration is for the rest.
      if (model && !this.model.linkBound()) {
        // Finding the dirty pages is a term of its own (DowntimeModel.findDirtyMs), not overhead:
        // what the pause spent waiting for it, before and between the sends of its pages.
        this.model.calibration.observe(roundTimeAt(model, s.finalBytes), this.report.downtimeMs - this.model.rttMs / 2 - s.scanWaitMs);
      }
      this.report.downtimeUpperBoundMs = roundTo(resumedAt - s.pauseStart, 3);
      this.report.switchover = {
        pauseMs: roundTo(s.pausedAt - s.pauseStart, 3),
        finalPages: s.finalPages,
        deviceStateBytes: s.stateBytes,
        sendMs: roundTo(s.completeSentAt - s.pausedAt, 3),
        findDirtyMs: roundTo(s.foundAt - s.pausedAt, 3),
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
        this.seat?.release();
        return;
      }
      this.transport.destroy();
      // The link is gone: asking the target what it did needs none of it, so others may use it.
      this.seat?.release();
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

  /** Opens the page channels; from now on pages travel on them. */
  private async openPageChannels(timeoutMs: number): Promise<void> {
    this.channelSender = await openChannels(this.domain, this.sender as PageSender, this.options.channels!, this.options.openChannel!, this.sentDigest, {
      migrationId: this.id,
      codec: this.channelCodec(),
      dataPagesPerBatch: this.dataPagesPerBatch,
      maxInFlight: this.options.maxInFlight,
      cap: this.pacer,
      timeoutMs,
      limits: this.options.limits,
      onFailure: () => this.inbox?.interrupt(),
      delta: this.deltaAgreed,
    });
    this.sender = this.channelSender;
    this.report.channels = this.options.channels;
  }
}
