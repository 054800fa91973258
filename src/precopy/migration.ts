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
import type { SourceDomain } from '../domain/backend.js';
import {
  asMigrationError,
  CancelledError,
  DigestMismatchError,
  InvalidArgumentError,
  MigrationError,
  PeerAbortedError,
  PolicyAbortError,
  TimeoutError,
  UnexpectedRecordError,
  UnsettledError,
} from '../errors.js';
import { encodeRecord } from '../protocol/codec.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import { digestMemory, PageDigest, switchoverDigest } from '../protocol/page-digest.js';
import { sourceTransition, type SourceState } from '../protocol/receiver-state.js';
import { CHANNELS_PROTOCOL_VERSION, PROTOCOL_VERSION, type MigrationRecord, type PageCodec, type StatusRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { withDeadline } from '../util/deadline.js';
import { armLoopGuard } from '../util/loop-guard.js';
import { collectorFrom } from '../util/gc.js';
import { median, roundTo } from '../util/stats.js';
import { abortPeer } from './abort-peer.js';
import { DEFAULT_AUTO_CONVERGE, ThrottleController, type AutoConvergeMode } from './auto-converge.js';
import { BandwidthCap } from './bandwidth-cap.js';
import { openChannels, type ChannelSender, type PageSink } from './channels.js';
import { checkMigrateOptions } from './check-options.js';
import { dirtyTrackerFor, type DirtyTracker } from './dirty-tracker.js';
import { PageSender } from './page-sender.js';
import {
  DEFAULT_DOWNTIME_BUDGET_MS,
  defaultPolicy,
  downtimeBudgetAt,
  estimateDowntime,
  LIKE_ROUND_SIZE_RATIO,
  paceOfRoundsLike,
  roundTimeAt,
  type DowntimeRamp,
  type PrecopyPolicy,
  type PrecopyStats,
  type RoundSample,
  type RoundTimeModel,
} from './policy.js';
import {
  DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_TIMEOUT_ACTION,
  ProgressWatchdog,
  type TimeoutAction,
} from './progress-watchdog.js';
import { RecordInbox } from './record-inbox.js';
import type { MigrationPhase, MigrationProgress, MigrationReport, RoundReport } from './report.js';

/** How long the source waits for "ready", "prepared" and each round's acknowledgement, in ms. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 15_000;

/** How long the source waits for "resumed" after "go", in milliseconds. */
export const DEFAULT_SWITCHOVER_TIMEOUT_MS = 10_000;

/** How long the source keeps asking the target after a link failure past "go", in milliseconds. */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 60_000;

/** Time between two questions to the target while resolving, in milliseconds. */
export const RESOLVE_RETRY_MS = 500;

/** How often estimates are refreshed and `onProgress` is called, in milliseconds. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 250;

/** Pages sent between two looks at cancellation, peer aborts and deadlines. */
const SLICE_PAGES = 4096;

/**
 * What a zero page costs the sender compared with a data page: it is copied and compared
 * (about 0.5 µs) but neither hashed, compressed, sent nor written on the target (bench/micro.js
 * puts the rest of a data page's path at several times that).
 */
export const ZERO_PAGE_COST_SHARE = 0.15;

/**
 * The overhead a {@link SwitchoverCalibration} assumes until its first switchover, and counts as
 * one more switchover after it, in milliseconds: about what the calibrations learnt on the 2-core
 * build machine, both ends on it (2-3 ms for idle guests; a process's first switchover, its code
 * not yet compiled, a median of 4.0 ms over 165 benchmark runs). Counting only the vCPU pause
 * and resume (1 ms) left each process's first prediction 2-3 ms short: replayed over 23 saved
 * benchmark runs (1,340 switchovers), 3 ms puts 13 more predictions within 30% or 5 ms and the
 * median error at -0.01 ms instead of -0.46. The pre-flight estimate assumes it too.
 */
export const DEFAULT_SWITCHOVER_OVERHEAD_MS = 3;

/**
 * Share of the bandwidth cap at which a round counts as held back by it: the link then sets the
 * pace of the next round (see `SourceMigration.linkTime`).
 */
export const LINK_BOUND_SHARE = 0.9;

/** Switchovers a {@link SwitchoverCalibration} remembers; older ones are forgotten. */
export const CALIBRATION_WINDOW = 16;

/**
 * Switchovers whose last round was modelled shorter than this, in milliseconds, tell a
 * {@link SwitchoverCalibration} its overhead; those at this or more, the factor of last rounds
 * like theirs. A small switchover's pause is mostly overhead, and a ratio to its round only noise.
 */
export const CALIBRATION_SMALL_ROUND_MS = 5;

/** The bounds of a calibration's factor (see {@link SwitchoverCalibration.factorFor}). */
const MIN_FACTOR = 0.25;
const MAX_FACTOR = 1;

/**
 * Calibration of the pause prediction, learnt from the switchovers this process completes.
 * A pause is modelled as `overheadMs + factor x roundMs + half a round trip`, where `roundMs` is
 * the last round's bytes at the pace of the pre-copy rounds before it that were like it in size
 * (see {@link paceOfRoundsLike}). `overheadMs` is what no term models: stopping and starting
 * vCPUs, the device state, and the event-loop latency of the records around them. The factor
 * (see {@link factorFor}) is how much faster the paused last round goes than the rounds it is
 * modelled on: the guest no longer competes for the CPU, and the rounds before it may have been
 * slower per byte (a first pass writes memory the target never touched). A link that set the pace
 * is no faster with the guest paused; such switchovers are not learnt from.
 *
 * Both come from the last CALIBRATION_WINDOW switchovers, each from the ones that show it: the
 * overhead from the small ones (last round modelled under CALIBRATION_SMALL_ROUND_MS), the factor
 * from the bigger ones of about the size to predict. Medians, not least squares: now and then a
 * pause meets a garbage collection or a descheduled thread and takes several milliseconds longer,
 * and a mean would let each such spike shift the next predictions. Before this, the overhead came
 * from the smaller half of all switchovers and the factor was one slope (Theil-Sen) through all
 * of them. In the all-pairs benchmark, which mixes 19 kinds of migration in one process, that
 * went wrong both ways: one sequential writer whose pause ran 18 ms over its 34 ms model set the
 * overhead at 10.5 ms for the idle guest after it (5 ms measured), and the first single-round
 * 256 MiB guest at 1 GB/s (729 ms modelled, 502 measured) set the slope at 0.68 for the 4 GiB
 * guests modelled at 20-45 ms, which went as modelled. Replayed over 17 saved all-pairs results
 * (515 switchovers), 481 predictions were within 30% or 5 ms against 463; over 23 medium results
 * (1,280), 1,190 either way; over the four latest of each, 138 of 144 against 129 and 250 of 256
 * against 249.
 *
 * Until a small switchover, `overheadMs` is DEFAULT_SWITCHOVER_OVERHEAD_MS, which also counts as
 * one more small switchover after, so that the first one or two, one of which may have met a
 * stall, do not set it alone. So a pool agent that migrates many guests predicts each pause
 * better than the last. Codecs differ too much to share one calibration (see
 * {@link calibrationFor}); a caller may keep its own (`MigrateOptions.calibration`) and save it
 * (`toJSON`, `fromJSON`).
 */
export class SwitchoverCalibration {
  overheadMs = DEFAULT_SWITCHOVER_OVERHEAD_MS;
  /** The remembered switchovers, oldest first: modelled last round and measured residual. */
  private readonly seen: CalibrationSample[] = [];

  /**
   * A calibration that has seen `samples` (as `toJSON` gave them, oldest first), so that a pool
   * agent predicts its first pauses after a restart as well as its last ones before it.
   * @throws InvalidArgumentError if `samples` is not such a list.
   */
  static fromJSON(samples: unknown): SwitchoverCalibration {
    if (!Array.isArray(samples) || samples.length > CALIBRATION_WINDOW) {
      throw new InvalidArgumentError(`a saved calibration is a list of at most ${CALIBRATION_WINDOW} switchovers`);
    }
    const c = new SwitchoverCalibration();
    for (const sample of samples as unknown[]) {
      const { roundMs, residualMs } = (sample ?? {}) as Partial<CalibrationSample>;
      if (typeof roundMs !== 'number' || !Number.isFinite(roundMs) || roundMs < 0 || typeof residualMs !== 'number' || !Number.isFinite(residualMs)) {
        const got = JSON.stringify(sample) ?? String(sample);
        throw new InvalidArgumentError(`a saved switchover needs a finite roundMs of 0 or more and a finite residualMs, got ${got.slice(0, 200)}`);
      }
      c.observe(roundMs, residualMs);
    }
    return c;
  }

  /** The remembered switchovers, oldest first, for `fromJSON`. */
  toJSON(): CalibrationSample[] {
    return this.seen.map((o) => ({ ...o }));
  }

  /** Records one switchover: `roundMs` as modelled, `residualMs` = measured pause - half a round trip. */
  observe(roundMs: number, residualMs: number): void {
    if (!Number.isFinite(roundMs) || !Number.isFinite(residualMs)) return;
    this.seen.push({ roundMs, residualMs });
    if (this.seen.length > CALIBRATION_WINDOW) this.seen.shift();
    const left = this.seen.filter((o) => o.roundMs < CALIBRATION_SMALL_ROUND_MS).map((o) => o.residualMs - o.roundMs);
    this.overheadMs = Math.min(50, Math.max(0, median([...left, DEFAULT_SWITCHOVER_OVERHEAD_MS])!));
  }

  /**
   * The factor for a last round modelled at `roundMs`: the median of what the remembered
   * switchovers like it (modelled at CALIBRATION_SMALL_ROUND_MS or more, and within
   * LIKE_ROUND_SIZE_RATIO of it) cost per modelled millisecond beyond the overhead, between
   * MIN_FACTOR and MAX_FACTOR; 1 with none like it, or for a small round. Never above 1: with the
   * guest paused, the last round is not slower per byte than the rounds it is modelled on, and a
   * pause that says otherwise met a stall. One factor does not fit every size: in the all-pairs
   * benchmark, a 256 MiB guest writing 1 GB/s converges in one round, is modelled on a first pass
   * that wrote fresh memory, and paused at 0.7-0.85 of its model (700-840 ms), while hot sets
   * modelled at 20-250 ms went at 0.9-1.1 of theirs.
   */
  factorFor(roundMs: number): number {
    if (!(roundMs >= CALIBRATION_SMALL_ROUND_MS) || !Number.isFinite(roundMs)) return 1;
    const like = this.seen.filter(
      (o) => o.roundMs >= CALIBRATION_SMALL_ROUND_MS && Math.max(o.roundMs / roundMs, roundMs / o.roundMs) <= LIKE_ROUND_SIZE_RATIO,
    );
    if (like.length === 0) return 1;
    return Math.min(MAX_FACTOR, Math.max(MIN_FACTOR, median(like.map((o) => (o.residualMs - this.overheadMs) / o.roundMs))!));
  }
}

/** One switchover a calibration remembers: the last round as modelled, and what the pause cost beyond half a round trip. */
export interface CalibrationSample {
  roundMs: number;
  residualMs: number;
}

const calibrations = new Map<PageCodec, SwitchoverCalibration>();

/** The calibration this process keeps for switchovers with `codec`. */
export function calibrationFor(codec: PageCodec): SwitchoverCalibration {
  let c = calibrations.get(codec);
  if (!c) calibrations.set(codec, (c = new SwitchoverCalibration()));
  return c;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** Payload codec for page batches. @default 'lz4' */
  codec?: PageCodec;
  /** The longest pause to aim for, in milliseconds. @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** Start with a smaller budget and raise it in steps up to `downtimeBudgetMs`. */
  downtimeRamp?: DowntimeRamp;
  /** Rounds after which the default policy forces the switchover. @default DEFAULT_MAX_ROUNDS (no limit) */
  maxRounds?: number;
  /** Replaces the default policy. */
  policy?: PrecopyPolicy;
  /** Slow the guest down when it dirties memory faster than the link drains it. @default 'auto' */
  autoConverge?: AutoConvergeMode;
  /**
   * Never send faster than this, in bytes per second: paced as a link of this speed carries it,
   * so over any 100 ms at most the cap's worth goes out, give or take a frame. @default no cap
   */
  maxBandwidthBytesPerSec?: number;
  /** Completion deadline per GiB of guest memory, in ms. @default DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB */
  completionTimeoutMsPerGiB?: number;
  /** How long the bytes left may set no new low, in ms. @default DEFAULT_STALL_TIMEOUT_MS */
  stallTimeoutMs?: number;
  /** What a passed deadline does. @default 'abort' */
  timeoutAction?: TimeoutAction;
  /** Id of this migration. @default a random UUID */
  migrationId?: string;
  /** Where the transport leads, for the report. @default 'peer' */
  targetName?: string;
  /** @default DEFAULT_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** @default DEFAULT_SWITCHOVER_TIMEOUT_MS */
  switchoverTimeoutMs?: number;
  /**
   * Asks the target, over a new connection, what it did with this migration. Used only when the
   * link fails after "go": with it the source finds out whether to destroy or resume its paused
   * copy; without it that outcome is `indeterminate`.
   */
  resolveOutcome?: (migrationId: string) => Promise<StatusRecord['state']>;
  /**
   * How long to keep asking, in milliseconds; `Infinity` asks until the target answers or
   * `signal` aborts. @default DEFAULT_RESOLVE_TIMEOUT_MS
   */
  resolveTimeoutMs?: number;
  /**
   * Cancels the migration; honoured until "go" is sent. After that it only stops the asking
   * that follows a link failure past "go" (the outcome is then indeterminate).
   */
  signal?: AbortSignal;
  /** Called at each phase and round change, and every `progressIntervalMs`. What it throws is ignored. */
  onProgress?: (progress: MigrationProgress) => void;
  /** @default DEFAULT_PROGRESS_INTERVAL_MS */
  progressIntervalMs?: number;
  /**
   * A full garbage collection of this process, run when the guest is likely to pause after the
   * round just sent, while it still runs: a collection then costs the guest nothing, one during
   * the pause costs downtime (a few milliseconds: most of the pauses that went over their
   * prediction had one). `null` turns it off. @default the collector of a Node started with
   * `--expose-gc` (the livemig command turns it on), else none
   */
  collectGarbage?: (() => void) | null;
  /**
   * Where this migration reads its pause calibration and records what its switchover cost. A
   * pool agent that keeps one per codec and saves it (`toJSON`, `SwitchoverCalibration.fromJSON`)
   * predicts its first pauses after a restart as well as the last ones before it.
   * @default this process's calibration for the codec ({@link calibrationFor})
   */
  calibration?: SwitchoverCalibration;
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
  /**
   * Page channels (docs/protocol.md §15): with more than one, pages travel on that many extra
   * connections, opened with `openChannel`, each fed by a worker thread that reads guest memory
   * itself. A target that speaks only version 2 gets them on the control connection. 1 is one
   * connection, exactly as version 2. @default 1
   */
  channels?: number;
  /**
   * Opens one more authenticated connection to the same target agent (what `connectToAgent` does),
   * for a page channel; required when `channels` is more than 1.
   */
  openChannel?: () => Promise<Transport>;
}

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
  private readonly calibration: SwitchoverCalibration;
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
  private paused = false;
  /** Whether the dirty log runs and the throttle may be on: until {@link releaseGuest}. */
  private holdingGuest = false;
  private goSent = false;
  private cancelReason: MigrationError | undefined;
  private forced: ForcedSwitchover | undefined;
  /** Shortest time from a round's end to its acknowledgement: a round trip, at most. */
  private rttMs = Number.POSITIVE_INFINITY;
  /** Latest estimate of the pause, refreshed by the ticker. */
  private expectedDowntimeMs = Number.POSITIVE_INFINITY;
  /** The guest's dirty rate, fed at every tick and every read of the dirty log (for progress). */
  private dirtyMeter = new DirtyRateMeter();
  /** Of the pages in the dirty log now, those already counted by `dirtyMeter`. */
  private dirtyCounted = 0;
  private pauseTimes: PauseTimes | undefined;
  /** The stop-and-copy round's "round-end", queued behind its batches but not awaited yet. */
  private finalRoundEnd: Promise<void> = Promise.resolve();
  private readonly collectGarbage: (() => void) | undefined;
  /** What the target reported collecting garbage before acknowledging the round being sent, in ms. */
  private targetGcMs = 0;
  /**
   * Under a bandwidth cap, the share of their size the dirty pages would take on the wire, as
   * sampled when the dirty log was last read (see {@link linkTime}).
   */
  private wireShare: number | undefined;

  constructor(
    private readonly domain: SourceDomain,
    private readonly transport: Transport,
    private readonly options: MigrateOptions,
  ) {
    this.id = options.migrationId ?? randomUUID();
    this.codec = options.codec ?? 'lz4';
    this.collectGarbage = collectorFrom(options.collectGarbage);
    this.policy = options.policy ?? defaultPolicy({ maxRounds: options.maxRounds });
    const d = domain.descriptor;
    this.pageSize = d.pageSize;
    this.sentDigest = new PageDigest(domain.pageCount, d.pageSize);
    this.dirty = dirtyTrackerFor(domain, this.sentDigest.hashes);
    this.calibration = options.calibration ?? calibrationFor(this.codec);
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
        const resumeError = await this.resumeHere();
        await this.undo(await this.explain(error), resumeError);
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
    this.rttMs = performance.now() - helloAt;
    await this.measureRoundTrip();
    if (ready.version === CHANNELS_PROTOCOL_VERSION) await this.openPageChannels(timeoutMs);

    // Round 0 sends all memory; the dirty log, enabled first, catches what changes meanwhile.
    this.setPhase('precopy');
    this.holdingGuest = true;
    this.dirty.start();
    this.dirtyMeter = new DirtyRateMeter({ startMs: performance.now() });
    const pageCount = this.domain.pageCount;
    let pending: Uint32Array = new Uint32Array(pageCount);
    for (let pfn = 0; pfn < pageCount; pfn++) pending[pfn] = pfn;
    let predictedMs = Number.POSITIVE_INFINITY;
    for (;;) {
      const unsent = await this.sendRound(pending, false);
      pending = mergeSorted(unsent, await this.readDirtyLog());
      if (this.options.maxBandwidthBytesPerSec !== undefined) this.wireShare = (await this.sender.wireShare(pending)) ?? this.wireShare;
      this.round++;
      const stats = this.statsFor(pending.length);
      if (this.forced) {
        predictedMs = stats.expectedDowntimeMs;
        this.report.forcedSwitchover = this.forced.error.toJSON();
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
    this.report.predictedDowntimeMs = Number.isFinite(predictedMs) ? roundTo(predictedMs, 3) : undefined;
    this.report.downtimeBudgetMs = this.budgetMs();
    const pauseStart = performance.now();
    this.paused = true;
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
      const model = this.roundTimeModel(s.finalBytes);
      // Not from a last round the link set the pace of: the calibration is for the rest.
      if (model && !this.linkBound()) {
        this.calibration.observe(roundTimeAt(model, s.finalBytes), this.report.downtimeMs - this.rttMs / 2);
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
        roundTripMs: roundTo(this.rttMs, 3),
      };
      this.report.targetDigest = resumed.digest;
    } catch (err) {
      const error = asMigrationError(err);
      if (error.code === 'ERR_PEER_ABORTED') {
        // An explicit abort after "go" means the target could not resume and destroyed its
        // copy: the paused copy here is the only one, so it runs again here.
        await this.undo(error);
        return;
      }
      this.transport.destroy();
      await this.resolveAfterGo(error);
      return;
    }
    await this.transport.close().catch(() => undefined);
    await this.finishOnTarget();
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
      await this.undo(error, await this.resumeHere());
      return;
    }
    this.transport.destroy();
    await this.resolveAfterGo(error);
  }

  /** The guest runs on the target: verify, and retire the paused copy here. */
  private async finishOnTarget(): Promise<void> {
    this.report.outcome = 'completed';
    this.report.guestRunningOn = 'target';
    // The guest runs on the target whatever happens below; a failure here is only reported.
    this.releaseGuest();
    try {
      if ((this.options.verify ?? true) && this.report.targetDigest !== undefined) {
        this.setPhase('verify');
        this.report.sourceDigest = await digestMemory(this.domain.pageCount, this.pageSize, (pfns, dst) => this.domain.readPages(pfns, dst));
        this.report.verified = this.report.sourceDigest === this.report.targetDigest;
      }
      if (this.options.destroySource ?? true) await this.domain.destroy();
    } catch (err) {
      const error = asMigrationError(err);
      this.report.sourceCleanupError = {
        code: error.code,
        message: `the guest runs on the target, but retiring the paused copy here failed: ${error.message}`,
      };
    }
  }

  /**
   * The link failed after "go": the target may or may not have resumed. Ask it over a new
   * connection until it says, keeping the copy here paused meanwhile.
   */
  private async resolveAfterGo(linkError: MigrationError): Promise<void> {
    const ask = this.options.resolveOutcome;
    const deadline = performance.now() + (this.options.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS);
    let lastAnswer = 'no answer';
    const signal = this.options.signal;
    while (ask && performance.now() < deadline && !signal?.aborted) {
      let state: StatusRecord['state'] | undefined;
      try {
        // An agent that takes the question and never answers must not keep this copy paused for ever.
        state = await withDeadline(ask(this.id), deadline - performance.now(), () => new TimeoutError('the target agent did not answer before the deadline'));
      } catch (err) {
        lastAnswer = asMigrationError(err, 'ERR_CONNECT_FAILED').message;
      }
      if (state === 'running') {
        this.report.resolvedAfterLinkFailure = linkError.toJSON();
        this.report.downtimeUpperBoundMs = roundTo(performance.now() - this.pauseTimes!.pauseStart, 3);
        await this.finishOnTarget();
        return;
      }
      if (state === 'discarded' || state === 'unknown') {
        // The target destroyed its copy (or, restarted, holds none): this one is the only one.
        this.report.resolvedAfterLinkFailure = linkError.toJSON();
        await this.undo(
          new MigrationError(linkError.code, `${linkError.message}; the target then reported the migration ${state}, so the guest resumed here`),
        );
        return;
      }
      if (state !== undefined) lastAnswer = `the target still reports "${state}"`;
      await sleep(RESOLVE_RETRY_MS, undefined, { signal }).catch(() => undefined);
    }
    if (signal?.aborted) lastAnswer += '; asking was given up when the migration was cancelled';
    // The copy here stays paused, but whoever resumes it by hand must get it at full speed.
    this.releaseGuest();
    this.report.outcome = 'indeterminate';
    this.report.guestRunningOn = 'unknown';
    this.report.error = {
      code: 'ERR_INDETERMINATE',
      message:
        `the link failed after "go" (${linkError.code}: ${linkError.message}) and the target could not be asked ` +
        `(${ask ? lastAnswer : 'no way to ask it was configured'}). The guest is kept paused here and may be running on the target. ` +
        `Ask the target agent about migration ${this.id} ("livemig status --id ${this.id}"): if it is running there, ` +
        `destroy this paused copy; if it was discarded or is unknown there, resume this one.`,
    };
  }

  /**
   * Undo: resume the guest here, tell the target, and say why in the report. Resuming comes
   * first: before "go" the target never resumes its copy, so the guest need not stay paused
   * while a failing link takes its time to deliver the abort.
   */
  private async undo(error: MigrationError, resumeError?: MigrationError): Promise<void> {
    this.report.outcome = error instanceof CancelledError ? 'cancelled' : 'failed';
    // A target's refusal keeps its own code beside ERR_PEER_ABORTED, for programs to act on.
    this.report.error = error instanceof PeerAbortedError ? { ...error.toJSON(), peerCode: error.peerCode } : error.toJSON();
    const failedToResume = resumeError ?? (await this.resumeHere());
    this.report.guestRunningOn = failedToResume ? 'none' : 'source';
    if (failedToResume) {
      this.report.error = {
        code: error.code,
        message: `${error.message}; resuming the guest on the source then failed too: ${failedToResume.message}`,
      };
    }
    // Best effort: the target discards its copy whether or not the abort arrives.
    await abortPeer(this.transport, error, error.code !== 'ERR_PEER_ABORTED');
  }

  /**
   * Resumes the guest here if it is paused, throttle lifted first; returns why resuming failed,
   * if it did. A throttle or dirty log that cannot be ended does not keep the guest paused: that
   * is reported beside the outcome.
   */
  private async resumeHere(): Promise<MigrationError | undefined> {
    this.releaseGuest();
    if (!this.paused) return undefined;
    try {
      await this.domain.resume();
      this.paused = false;
      return undefined;
    } catch (err) {
      return asMigrationError(err);
    }
  }

  /**
   * Lifts the throttle and ends the dirty log, once whatever the outcome (the backend contract),
   * each tried even if the other fails. A failure changes no outcome: the report says what it was.
   */
  private releaseGuest(): void {
    if (!this.holdingGuest) return;
    this.holdingGuest = false;
    for (const step of [() => this.domain.setThrottle(0), () => this.dirty.stop()]) {
      try {
        step();
      } catch (err) {
        const error = asMigrationError(err);
        this.report.sourceCleanupError ??= { code: error.code, message: `lifting the throttle or ending the dirty log here failed: ${error.message}` };
      }
    }
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
      pauseSoon = this.pauseLikely({ bytes: this.workOf(this.sender.counters.bytesRaw - before.bytesRaw, this.sender.counters.zeroPages - before.zeroPages), ms: performance.now() - started });
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
      this.rttMs = Math.min(this.rttMs, ackMs);
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
   * Whether the decision after the round being sent will likely be the switchover: the pause for
   * what is dirty now fits the budget, the round limit is reached, or a deadline forces it. Only
   * for the "pause-soon" hint; a wrong guess costs a garbage collection on each side.
   */
  private pauseLikely(current: RoundSample): boolean {
    if (this.forced) return true;
    const maxRounds = this.options.maxRounds;
    if (maxRounds !== undefined && this.round + 1 >= maxRounds) return true;
    return this.predictDowntime(this.dirty.peek() * this.pageSize, current) <= this.budgetMs();
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
    const bandwidth = this.bandwidth();
    const dirtyBytes = dirtyPages * this.pageSize;
    // The policy judges a round by what it left dirty: its own rate, not the progress's smoothed one.
    const dirtyRateBytesPerSec = last.durationMs > 0 ? (dirtyBytes * 1000) / last.durationMs : 0;
    this.expectedDowntimeMs = this.predictDowntime(dirtyBytes);
    return {
      round: this.round,
      elapsedMs: performance.now() - this.start,
      dirtyPages,
      dirtyBytes,
      bandwidthBytesPerSec: bandwidth,
      dirtyRateBytesPerSec,
      expectedDowntimeMs: this.expectedDowntimeMs,
      downtimeBudgetMs: this.budgetMs(),
      throttlePercent: this.throttle.percent,
      bytesSent: this.sender.counters.bytesRaw,
      memoryBytes: this.domain.descriptor.memoryBytes,
    };
  }

  private budgetMs(): number {
    return downtimeBudgetAt(performance.now() - this.start, this.options.downtimeBudgetMs ?? DEFAULT_DOWNTIME_BUDGET_MS, this.options.downtimeRamp);
  }

  /**
   * Raw bytes per second the target absorbed over the latest rounds that add up to at least a
   * second (or all rounds so far): a sliding window, so a guest or link that changes pace is
   * followed, and a single short round does not swing it.
   */
  private bandwidth(): number {
    let bytes = 0;
    let ms = 0;
    for (let i = this.rounds.length - 1; i >= 0 && ms < 1000; i--) {
      const r = this.rounds[i]!;
      if (r.stopAndCopy) continue;
      bytes += r.bytesRaw;
      ms += r.durationMs;
    }
    return ms > 0 ? (bytes * 1000) / ms : 0;
  }

  /**
   * The pause if `bytes` were left: a last round as the recent rounds went (see
   * {@link roundTimeModel}), then half a round trip for "go", with the calibration's factor and
   * overhead. The last round starts with nothing queued (the previous round was acknowledged).
   */
  private predictDowntime(bytes: number, current?: RoundSample): number {
    const model = this.roundTimeModel(bytes, current);
    if (!model) return Number.POSITIVE_INFINITY;
    const c = this.calibration;
    const e = estimateDowntime(bytes, model, this.rttMs, c.overheadMs);
    // A link that sets the pace is no faster with the guest paused: the factor is not for it.
    const link = bytes > 0 ? this.linkTime(bytes) : undefined;
    const roundMs = link?.bound ? link.ms : Math.max(c.factorFor(e.roundMs) * e.roundMs, link?.ms ?? 0);
    return e.overheadMs + roundMs + e.handshakeMs;
  }

  /**
   * How long the link alone needs for a last round of `bytes` (dirty pages x page size) under
   * the bandwidth cap: its wire bytes at the cap. `bound` says whether the link set the pace of
   * the latest round (it went at LINK_BOUND_SHARE of the cap or more); then it sets the last
   * round's too, whatever the rounds' time per byte says. Rounds of different pages compress
   * differently, so a round's time per byte under a cap says little about another's: a 1 GiB
   * guest's first pass, 55% of its data on the wire, went at 4.1 ms per MB behind 1 Gbit/s, and
   * its last round, 36%, at 2.2-2.8. (The cap saves up no idle time, so the last round gets no
   * burst from the acknowledgement wait before it.) Undefined without a cap.
   */
  private linkTime(bytes: number): { ms: number; bound: boolean } | undefined {
    const cap = this.options.maxBandwidthBytesPerSec;
    if (cap === undefined) return undefined;
    const last = this.rounds.findLast((r) => !r.stopAndCopy);
    const share = this.wireShare ?? (last && last.bytesRaw > 0 ? last.bytesWire / (last.bytesRaw + last.zeroPages * this.pageSize) : 1);
    return { ms: (bytes * share * 1000) / cap, bound: this.linkBound() };
  }

  /** Whether the latest pre-copy round went at LINK_BOUND_SHARE of the bandwidth cap or more. */
  private linkBound(): boolean {
    const cap = this.options.maxBandwidthBytesPerSec;
    const last = this.rounds.findLast((r) => !r.stopAndCopy);
    return cap !== undefined && last !== undefined && last.durationMs > 0 && (last.bytesWire * 1000) / last.durationMs >= LINK_BOUND_SHARE * cap;
  }

  /**
   * How long a round of `bytes` would take, judged by the pre-copy rounds of the last second (at
   * least one) that were about its size (see {@link paceOfRoundsLike}). Zero pages count for
   * {@link ZERO_PAGE_COST_SHARE} of a data page: they are copied and compared but neither sent
   * nor written.
   */
  private roundTimeModel(bytes: number, current?: RoundSample): RoundTimeModel | undefined {
    const samples: RoundSample[] = current ? [current] : [];
    let ms = current?.ms ?? 0;
    for (let i = this.rounds.length - 1; i >= 0 && ms < 1000; i--) {
      const r = this.rounds[i]!;
      if (r.stopAndCopy) continue;
      // The target's collection before the acknowledgement is not part of what a round costs.
      // (At most the acknowledgement wait it was part of: a target cannot report more than that.)
      samples.push({ bytes: this.workOf(r.bytesRaw, r.zeroPages), ms: r.durationMs - Math.min(r.targetGcMs, r.ackMs) });
      ms += r.durationMs;
    }
    return paceOfRoundsLike(samples, bytes);
  }

  /** What `bytesRaw` of data pages and `zeroPages` zero pages cost to send, in data bytes. */
  private workOf(bytesRaw: number, zeroPages: number): number {
    return bytesRaw + zeroPages * this.pageSize * ZERO_PAGE_COST_SHARE;
  }

  /** A WebSocket ping while the link is quiet: the round trip the switchover pays. */
  private async measureRoundTrip(): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const ms = await this.transport.ping();
      if (ms !== undefined) this.rttMs = Math.min(this.rttMs, ms);
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
      this.expectedDowntimeMs = this.predictDowntime(dirty * this.pageSize);
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
      bandwidthBytesPerSec: this.bandwidth() || (elapsedMs > 0 ? (c.bytesRaw * 1000) / elapsedMs : 0),
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

