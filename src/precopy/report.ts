/**
 * What a migration reports: to the embedding program as an object, to machines as JSON, and to
 * people through the CLI. Every figure says its unit in its name.
 */

import type { DeltaMode, DeltaOffReason } from './delta-plan.js';
import type { SourceMemoryReport } from './source-memory.js';

/** How a migration ended. */
export type MigrationOutcome =
  /** The guest runs on the target; the source copy is destroyed. */
  | 'completed'
  /** The migration failed before "go"; the guest runs on the source. */
  | 'failed'
  /** The caller cancelled before "go"; the guest runs on the source. */
  | 'cancelled'
  /**
   * The link broke after "go" and whether the target resumed is unknown; the source keeps its
   * copy paused, so the guest runs on at most one host. See `error.message` for what to check.
   */
  | 'indeterminate';

/** Where the guest runs once `migrate()` has returned. */
export type GuestLocation = 'source' | 'target' | 'unknown' | 'none';

/**
 * Why the engine paused the guest when it did.
 * - `fits-and-stopped-shrinking`: the expected pause fitted the budget and the last round no
 *   longer cut it by a meaningful share (the `best` switchover);
 * - `bound-reached`: it fitted, and a further round would have spent more extra time than the
 *   `best` switchover allows;
 * - `deadline-near`: it fitted, and a further round would have come near a deadline;
 * - `first-fit`: the first round whose expected pause fitted (the `first-fit` switchover);
 * - `nothing-dirty`: nothing was left to send but the device state;
 * - `max-rounds`: the round limit was reached, fitting or not;
 * - `forced-by-deadline`: a deadline passed with the `force-switchover` action (see
 *   `forcedSwitchover`);
 * - `policy`: a policy of the caller's chose, without saying why.
 */
export type SwitchoverReason =
  | 'fits-and-stopped-shrinking'
  | 'bound-reached'
  | 'deadline-near'
  | 'first-fit'
  | 'nothing-dirty'
  | 'max-rounds'
  | 'forced-by-deadline'
  | 'policy';

/** One pre-copy round. Round 0 is the full pass; the last round is the stop-and-copy. */
export interface RoundReport {
  round: number;
  /** True for the round sent while the guest was paused. */
  stopAndCopy: boolean;
  /** Pages sent in the round, data and zero. */
  pages: number;
  /** Of which sent as page numbers only. */
  zeroPages: number;
  /** Data bytes before compression. */
  bytesRaw: number;
  /** Frame bytes on the wire. */
  bytesWire: number;
  /** Wall time of the round, in milliseconds. */
  durationMs: number;
  /** Bytes per second the guest dirtied while the round was sent (0 for the stop-and-copy round). */
  dirtyRateBytesPerSec: number;
  /**
   * CPU the guest's vCPUs used during the round, in cores (their run time over the round's
   * duration); absent when the backend does not report vCPU time.
   */
  guestCpuCores?: number;
  /** Raw bytes per second the round moved, acknowledgement included. */
  bandwidthBytesPerSec: number;
  /** Of `durationMs`: handing the round's batches to the link. */
  sendMs: number;
  /**
   * Of `sendMs`: batches held back while another migration of the host was paused (its
   * switchover gate); absent without a gate.
   */
  heldMs?: number;
  /** Of `durationMs`: waiting for the target to acknowledge the round after its last batch (0 for the stop-and-copy round). */
  ackMs: number;
  /**
   * Collecting this process's garbage after the round was acknowledged, when the pause was likely
   * to follow: while the guest still ran, not part of `durationMs`.
   */
  gcMs: number;
  /** Of `ackMs`: the target collecting its garbage before it acknowledged (it was told the pause was likely). */
  targetGcMs: number;
  /** vCPU throttle while the round was sent, in percent (auto-converge). */
  throttlePercent: number;
}

/**
 * The phases a migration goes through, in order. `verify` comes after the guest runs on the
 * target and was released here (the end of `totalMs`): the paused copy is checked, then destroyed.
 */
export type MigrationPhase = 'handshake' | 'precopy' | 'stop-and-copy' | 'switchover' | 'verify' | 'done';

/** A periodic progress sample. */
export interface MigrationProgress {
  migrationId: string;
  phase: MigrationPhase;
  round: number;
  /** Pages of the current round already sent. */
  roundPagesSent: number;
  /** Pages the current round has to send. */
  roundPages: number;
  /** Raw bytes sent so far. */
  bytesRaw: number;
  /** Frame bytes sent so far. */
  bytesWire: number;
  /** Bytes still to send: the rest of this round plus what the guest dirtied since. */
  remainingBytes: number;
  /** Raw bytes per second the target absorbs (sliding window over recent rounds). */
  bandwidthBytesPerSec: number;
  /**
   * Bytes per second the guest dirties: distinct pages newly found dirty, measured at every
   * progress tick and every read of the dirty log, weighted over about a second (half-life).
   */
  dirtyRateBytesPerSec: number;
  /** The same rate in pages per second. */
  dirtyPagesPerSec: number;
  /** The pause if the source stopped now, in milliseconds; absent until it can be estimated. */
  expectedDowntimeMs?: number;
  /** The downtime budget in force, in milliseconds. */
  downtimeBudgetMs: number;
  /** vCPU throttle in force, in percent: what auto-converge asks for. */
  throttlePercent: number;
  /** Set while a throttle is asked for that the domain cannot apply: why (see the report's). */
  throttleUnavailable?: string;
  /** Milliseconds since the migration started. */
  elapsedMs: number;
}

/** The final report of `migrate()`. */
export interface MigrationReport {
  migrationId: string;
  outcome: MigrationOutcome;
  /** Where the guest runs now. */
  guestRunningOn: GuestLocation;
  /** Why it did not complete; for ERR_PEER_ABORTED, `peerCode` is the code the target gave. */
  error?: { code: string; message: string; peerCode?: string };
  /** ISO 8601 start time. */
  startedAt: string;
  domain: { name: string; kind: string; memoryBytes: number; vcpus: number };
  /** Target URL or description. */
  target: string;
  codec: string;
  /**
   * Page channels the pages travelled on (docs/protocol.md §15); absent when they travelled on the
   * control connection, as with `channels` 1 or a target that speaks version 2 only.
   */
  channels?: number;
  memoryBytes: number;
  /**
   * Pause to resume: from the source pausing the guest until the target's vCPUs run, on the
   * source's clock (see docs/protocol.md, "Measuring downtime"). Absent if the guest never paused
   * or the switchover did not complete.
   */
  downtimeMs?: number;
  /** Source pause until the target's "resumed" arrived: an upper bound of `downtimeMs`. */
  downtimeUpperBoundMs?: number;
  /** The downtime the engine predicted when it decided to stop iterating. */
  predictedDowntimeMs?: number;
  /** Why pre-copy ended when it did; absent if it never did (the migration failed before). */
  switchoverReason?: SwitchoverReason;
  /** The downtime budget in force at the switchover (after any ramp), in milliseconds. */
  downtimeBudgetMs: number;
  /** The highest vCPU throttle auto-converge applied, in percent (0: none). */
  maxThrottlePercent: number;
  /**
   * Set when auto-converge asked for a throttle (`maxThrottlePercent` > 0) that the domain could
   * not apply: why (the domain's `throttleUnavailable`). The guest then ran at full speed.
   */
  throttleUnavailable?: string;
  /** Set when a deadline passed and the timeout action forced the switchover. */
  forcedSwitchover?: { code: string; message: string };
  /**
   * Set when the link failed after "go" and the source learnt the outcome by asking the target
   * afresh; `downtimeMs` is then unknown and only `downtimeUpperBoundMs` is given.
   */
  resolvedAfterLinkFailure?: { code: string; message: string };
  /**
   * Set when cleaning up here failed without changing the outcome: the guest runs on the target
   * but verifying or destroying the paused copy here failed (the copy may need to be removed by
   * hand), or lifting the throttle or ending the dirty log failed (the guest runs, or is kept
   * paused, here all the same).
   */
  sourceCleanupError?: { code: string; message: string };
  /**
   * Whole migration, in milliseconds: from the handshake until the guest ran on the target and
   * the source released it (dirty log ended, throttle lifted, link closed); or, when it did not
   * complete, until the report. The check of the paused copy and its destruction come after and
   * are not counted (see `verifyMs`).
   */
  totalMs: number;
  /** Data bytes before compression, all rounds. */
  bytesRaw: number;
  /** Frame bytes on the wire, all records. */
  bytesWire: number;
  rounds: RoundReport[];
  /** Breakdown of the pause, in milliseconds. */
  switchover?: {
    /** Time for the vCPUs to stop. */
    pauseMs: number;
    /** Pages sent while paused. */
    finalPages: number;
    /** Size of the device-state blob, in bytes. */
    deviceStateBytes: number;
    /** Paused until the final pages, the device state and "complete" were handed to the link. */
    sendMs: number;
    /**
     * Of `sendMs`, finding the last dirty pages: a scan of all memory for a scan-tracked guest
     * (the device state is saved meanwhile, and each chunk's pages are sent while the next
     * chunks are scanned), next to nothing for a dirty log.
     */
    findDirtyMs: number;
    /** "complete" sent until "prepared" received. */
    prepareMs: number;
    /** Target's time from "go" to running vCPUs. */
    targetResumeMs: number;
    /** Round trip of go/resumed less the target's resume time. */
    goRoundTripMs: number;
    /** Shortest round trip the source measured on the link before the pause (hello, pings, acknowledgements). */
    roundTripMs: number;
  };
  /**
   * Digest of the source's memory at pause. For a `log` backend the paused copy is read again
   * after the switchover (src/precopy/copy-verification.ts); for a `scan` backend it is the
   * digest of what was sent, which the scan in the pause made equal to the memory.
   */
  sourceDigest?: string;
  /** Digest of the target's memory at resume, kept page by page as pages were written. */
  targetDigest?: string;
  /** Both digests exist and match: the target holds what the source's memory held at pause. */
  verified: boolean;
  /**
   * Time the check of the paused copy took (`sourceDigest` against `targetDigest`), in
   * milliseconds; after `totalMs`, and before the copy was destroyed. Absent when no check ran
   * (`verify: false`, or the target's digest never arrived).
   */
  verifyMs?: number;
  /**
   * Set when the check failed: pages whose memory at pause differs from what was last sent, i.e.
   * writes the dirty tracking missed. 0 means the memory was sent whole and the target's copy is
   * what differs.
   */
  missedPages?: number;
  /**
   * The extra memory the source held for this migration beyond the guest itself (page hashes,
   * dirty log or scan table, page lists, send and channel buffers, delta cache): its peak, each
   * part at the peak, and the bound the defaults keep within (a tenth of guest RAM).
   */
  memory?: SourceMemoryReport;
  /**
   * Pages sent again as deltas against the copy the target held (docs/protocol.md §5): whether
   * they ran (`why` not, when off), the cache's bytes (counted in `memory`), and what went:
   * `batches` with the encoding, `pages` sent as deltas and their `bytesRaw` before encoding,
   * `wholePages` of those batches that went whole (not cached yet, or changed too much).
   */
  delta?: {
    mode: DeltaMode;
    on: boolean;
    why?: DeltaOffReason;
    cacheBytes: number;
    batches: number;
    pages: number;
    bytesRaw: number;
    wholePages: number;
  };
}
