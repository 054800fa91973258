/** The options of `migrate()`, and the defaults they name. */

import type { ProtocolLimits } from '../protocol/limits.js';
import type { StatusRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import type { AutoConvergeMode } from './auto-converge.js';
import type { CodecChoice } from './codec-choice.js';
import type { DeltaMode } from './delta-plan.js';
import type { DowntimeRamp, PrecopyPolicy, SwitchoverMode } from './policy.js';
import type { TimeoutAction } from './progress-watchdog.js';
import type { MigrationProgress, MigrationReport } from './report.js';
import type { SwitchoverGate } from './switchover-gate.js';
import type { calibrationsByCodec, SwitchoverCalibration } from './switchover-calibration.js';

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

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /**
   * Payload codec for page batches, or `auto`: lz4 for the batches where it pays (the link, not
   * the CPU, sets the pace, and the pages compress), none for the others. @default DEFAULT_CODEC
   */
  codec?: CodecChoice;
  /** The longest pause to aim for, in milliseconds. @default DEFAULT_DOWNTIME_BUDGET_MS */
  downtimeBudgetMs?: number;
  /** Start with a smaller budget and raise it in steps up to `downtimeBudgetMs`. */
  downtimeRamp?: DowntimeRamp;
  /** Rounds after which the default policy forces the switchover. @default DEFAULT_MAX_ROUNDS (no limit) */
  maxRounds?: number;
  /**
   * When the default policy switches over once the expected pause fits: `best` iterates on while
   * that shortens the pause, within a bound; `first-fit` stops at once (see {@link SwitchoverMode}).
   * @default DEFAULT_SWITCHOVER
   */
  switchover?: SwitchoverMode;
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
  /**
   * Who the guest is in its pool: sent to the target right after `ready` in an optional `guest`
   * record, so that a host keeps the guest under the same id and priority. @default not sent
   */
  guest?: { id: string; priority: number };
  /** Where the transport leads, for the report. @default 'peer' */
  targetName?: string;
  /** @default DEFAULT_HANDSHAKE_TIMEOUT_MS */
  handshakeTimeoutMs?: number;
  /** @default DEFAULT_SWITCHOVER_TIMEOUT_MS */
  switchoverTimeoutMs?: number;
  /**
   * Asks the target, over a new connection, what it did with this migration. Used only when the
   * link fails after "go": with it the source finds out whether to destroy or resume its paused
   * copy; without any way to ask, that outcome is `indeterminate`.
   * @default the transport's own `resolveOutcome` (a transport from `connectToAgent` has one)
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
   * Called once, as soon as the guest runs on the target and was released here: before the paused
   * copy is checked and destroyed, which can take a while longer. The report then holds the
   * outcome (`completed`), `guestRunningOn`, `downtimeMs` and `totalMs` as they will stay;
   * `verified` and `verifyMs` come only with the report `migrate()` resolves with. A host uses it
   * to count the migration done (and free its slot) without waiting for the check. Not called for
   * any other outcome. What it throws is ignored.
   */
  onReleased?: (report: Readonly<MigrationReport>) => void;
  /**
   * A full garbage collection of this process, run when the guest is likely to pause after the
   * round just sent, while it still runs: a collection then costs the guest nothing, one during
   * the pause costs downtime (a few milliseconds, enough to push a pause over its prediction).
   * `null` turns it off. @default the collector of a Node started with
   * `--expose-gc` (the livemig command turns it on), else none
   */
  collectGarbage?: (() => void) | null;
  /**
   * Where this migration reads its pause calibration and records what its switchover cost. A
   * pool agent that keeps one per codec ({@link calibrationsByCodec}) and saves it (`toJSON`,
   * `SwitchoverCalibration.fromJSON`) predicts each pause better than the last, across restarts
   * too. @default a fresh calibration, for this migration alone
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
  /**
   * Send pages again as their changes against the copy the target holds (the `delta` encoding,
   * docs/protocol.md §5): `on`, `off`, or `auto`, on behind a bandwidth cap
   * (`maxBandwidthBytesPerSec`) and off without one. Deltas need a target that takes them
   * (versions 4 and 5) and a cache within the memory bound; `report.delta` says whether they ran
   * and why not. @default DEFAULT_DELTA_MODE
   */
  delta?: DeltaMode;
  /**
   * Bytes of the cache pages sent again are encoded against. A cache that does not fit within a
   * tenth of guest RAM beside everything else the source holds turns deltas off.
   * @default what that bound leaves
   */
  deltaCacheBytes?: number;
  /** Data pages per batch. @default DEFAULT_DATA_PAGES_PER_BATCH */
  dataPagesPerBatch?: number;
  /** Batches in flight. @default DEFAULT_MAX_IN_FLIGHT_BATCHES */
  maxInFlight?: number;
  /**
   * The switchover gate of the host this migration leaves, shared by all its outgoing migrations:
   * while one of them is paused the others hold their page batches back, and only one is paused
   * at a time (it waits for the gate, iterating on, when another is). The pause then has the link
   * to itself, as its prediction assumes. @default none: the migration acts as if alone
   */
  switchoverGate?: SwitchoverGate;
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
