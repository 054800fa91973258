/**
 * The shapes of the host agent's control API (docs/api.md): what a pool agent, an operator's
 * command or an evacuation coordinator sends a host and what it answers, as plain JSON. Types
 * only, so that the server, the client and the pool code agree without importing each other.
 */

/** A guest's life on one host. */
export type GuestState =
  /** Running here. */
  | 'running'
  /** Being received from another host; not yet running here. */
  | 'migrating-in'
  /** Running here and being migrated away. */
  | 'migrating-out'
  /** Paused here after a switchover whose outcome is unknown (see the migration's error). */
  | 'paused';

/** One guest as a host reports it. */
export interface GuestInfo {
  /** Pool-wide id; kept across migrations. */
  id: string;
  /** Human name; kept across migrations. */
  name: string;
  /** Backend kind, e.g. `sim` or `qemu`. */
  kind: string;
  memoryBytes: number;
  vcpus: number;
  state: GuestState;
  /** When it started running on this host (ISO 8601). */
  since: string;
  /** Evacuation order: higher moves first. @default 0 */
  priority: number;
  /** The migration moving it in or out, while one does. */
  migrationId?: string;
  /** Its backend configuration (the simulated guest's workload, dirty rate and seed, ...). */
  config?: Record<string, unknown>;
  /** Its serial log on this host, a file path, for a backend that writes one (QEMU). */
  console?: string;
  /** What its host expects a migration of it to cost, alone on the link (docs/api.md, "Pause estimate"). */
  pauseEstimate?: PauseEstimate;
}

/**
 * A host's expectation of one guest's next migration, played forward on paper from the guest's
 * dirty rate and the link the host knows, under the `best` switchover, as if it ran alone.
 * `known` carries the figures; `unknown` says in `reason` what is missing.
 */
export interface PauseEstimate {
  state: 'known' | 'unknown';
  /** The pause the `best` switchover is likely to end with, in milliseconds. */
  bestPauseMs?: number;
  /** The whole migration, first round to resume, in milliseconds. */
  totalMs?: number;
  /** Pre-copy rounds before the pause, the full pass included. */
  rounds?: number;
  /** The budget the estimate was played against (the host's default), in milliseconds. */
  downtimeBudgetMs: number;
  /** True if the pause fits that budget (with the engine's headroom) by iterating alone. */
  fitsBudget?: boolean;
  /** The guest's dirty rate used, bytes per second, and its writable working set, bytes. */
  dirtyRateBytesPerSec?: number;
  workingSetBytes?: number;
  /** `declared`: its backend says what it does (the simulated guest's workload); `measured`: its last migration from this host. */
  dirtySource?: 'declared' | 'measured';
  /** Raw page bytes per second the link absorbs, and where that figure comes from. */
  linkBytesPerSec?: number;
  linkSource?: 'measured' | 'configured';
  /** Why the estimate is unknown. */
  reason?: string;
}

/** What `POST /v1/guests/:id/inspect` answers: the guest paused a moment and read. */
export interface GuestInspection {
  guestId: string;
  /** Digest of its memory (docs/protocol.md, section 6), 16 hex digits. */
  digest: string;
  /** Its backend's state blob (vCPU registers and devices), in base64. */
  domainState: string;
}

/** What a host's own process holds, for watching it over time (leaks of memory, handles, timers). */
export interface ProcessUsage {
  rssBytes: number;
  heapUsedBytes: number;
  /** `process.getActiveResourcesInfo()`, counted by kind (Timeout, TCPSocketWrap, ...). */
  activeResources: Record<string, number>;
}

/** What `POST /v1/guests` starts. */
export interface StartGuestRequest {
  name: string;
  /** Backend kind. @default 'sim' */
  kind?: string;
  memoryBytes: number;
  vcpus?: number;
  /** Backend-specific configuration, e.g. the simulated guest's workload, dirty rate and seed. */
  config?: Record<string, unknown>;
  priority?: number;
  /** Keep this id (a guest restarted from a record); a new one is made otherwise. */
  id?: string;
}

/** How an outgoing or incoming migration stands, as its host reports it. */
export type MigrationState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'indeterminate';

/** One migration as the host that runs its source reports it. */
export interface MigrationInfo {
  migrationId: string;
  guestId: string;
  guestName: string;
  /** Host name of the source and the target. */
  from: string;
  to: string;
  state: MigrationState;
  /** Phase of a running migration (handshake, precopy, ...). */
  phase?: string;
  startedAt: string;
  endedAt?: string;
  /** Bytes still to send, while running. */
  remainingBytes?: number;
  downtimeMs?: number;
  totalMs?: number;
  /** Where the guest runs now. */
  guestRunningOn?: 'source' | 'target' | 'unknown' | 'none';
  error?: { code: string; message: string };
  /** `out` on the host that runs its source, `in` on the host that received it. @default 'out' */
  direction?: 'in' | 'out';
  /** Bytes sent (out) or received (in) on the wire so far. */
  bytesWire?: number;
  /**
   * Out, once completed: the source's memory and device state, read again after the switchover,
   * hash to what the target held when it resumed (the report's `verified`). Absent while
   * `verifying`.
   */
  verified?: boolean;
  /**
   * Out, once completed: true while the source still checks (and then destroys) its paused copy.
   * A completed migration is reported as soon as the guest runs on the target; the check follows
   * (`verified`, `verifyMs`), and this turns false when it has ended.
   */
  verifying?: boolean;
  /** Out: how long the check of the paused copy took, in milliseconds (not part of `totalMs`). */
  verifyMs?: number;
}

/** What `POST /v1/guests/:id/migrate` asks. */
export interface MigrateGuestRequest {
  /** Target host's control URL (`http://` or `https://`), or its name in the pool. */
  to: string;
  /** Engine options a caller may set; the rest are the host's defaults. */
  downtimeBudgetMs?: number;
  maxBandwidthBytesPerSec?: number;
  codec?: 'auto' | 'lz4' | 'none';
}

/** A host as it reports itself. */
export interface HostStatus {
  name: string;
  /** Its control and migration URL. */
  url: string;
  /** Memory it may give to guests, in bytes. */
  capacityBytes: number;
  /** Of which guests running here hold. */
  usedBytes: number;
  /** Of which incoming migrations have reserved (counted from their `hello`). */
  reservedBytes: number;
  /** `capacityBytes - usedBytes - reservedBytes`. */
  freeBytes: number;
  /** In maintenance: no new guests, no incoming migrations (ERR_HOST_IN_MAINTENANCE). */
  maintenance: boolean;
  /**
   * The guest kinds (backend kinds, e.g. `sim`, `qemu`) it receives by migration; a guest of
   * another kind is refused with ERR_UNKNOWN_BACKEND. Planners place guests only where their kind
   * is listed; a host that leaves it out is taken to accept any.
   */
  guestKinds?: string[];
  guests: number;
  migrationsIn: number;
  migrationsOut: number;
  /** The evacuation of this host under way, if any. */
  evacuationId?: string;
  version: string;
  /** The host process's memory and handles, for monitoring. */
  process?: ProcessUsage;
}

/** One guest's place in an evacuation plan. */
export interface PlannedMove {
  guestId: string;
  guestName: string;
  memoryBytes: number;
  priority: number;
  /** Target host name, or absent if it cannot be placed. */
  to?: string;
  /** Why it cannot be placed. */
  reason?: string;
  /** Why, as a code: `ERR_INSUFFICIENT_CAPACITY`, `ERR_HOST_IN_MAINTENANCE`, `ERR_UNKNOWN_BACKEND` (no target takes its kind), `ERR_CONFLICT`. */
  code?: string;
  /** Its host's estimate of its pause and total time alone, in milliseconds, when known. */
  expectedPauseMs?: number;
  expectedTotalMs?: number;
  /** Its expected pause exceeds the evacuation's budget even alone. */
  overBudget?: boolean;
  /** It migrates alone: nothing else runs in the window while it does. */
  alone?: boolean;
  /** Why it starts where it does in the plan, for people. */
  orderReason?: string;
}

/** What `POST /v1/host/evacuate` asks. */
export interface EvacuateRequest {
  /** Hosts to move guests to (names); every other enabled host of the pool when absent. */
  to?: string[];
  /** Migrations at once. @default 2 */
  parallel?: number;
  /** Migrations at once into one target host. @default 1 */
  perTarget?: number;
  /** Plan only. */
  dryRun?: boolean;
  /** Move the guests that fit when some cannot be placed, and report the others. @default false */
  moveWhatFits?: boolean;
  /**
   * Order guests within a priority by their pause estimates, and move busy ones alone
   * (docs/pool.md, "Order"); false keeps priority then size, all sharing the window. @default true
   */
  orderByPause?: boolean;
  /** Engine options of every migration, as in `MigrateGuestRequest`. */
  downtimeBudgetMs?: number;
  maxBandwidthBytesPerSec?: number;
  codec?: 'auto' | 'lz4' | 'none';
}

/** One guest's outcome in an evacuation. */
export interface EvacuatedGuest {
  guestId: string;
  guestName: string;
  /** `pending` and `migrating` while the evacuation runs; one of the others once it has ended for this guest. */
  outcome: 'completed' | 'failed' | 'cancelled' | 'indeterminate' | 'unplaced' | 'pending' | 'migrating';
  /** Host it runs on now. */
  runsOn?: string;
  /** While `pending` or `migrating`: the host it is planned for, or moving to. */
  to?: string;
  /** While `migrating`: the migration's phase and the bytes it has left to send. */
  phase?: string;
  remainingBytes?: number;
  migrationIds: string[];
  downtimeMs?: number;
  /** Of a completed move: until the guest ran on its target (the check of the copy left behind is not counted). */
  totalMs?: number;
  /**
   * Of a completed move, once the source has checked the copy it paused: whether it equals what
   * the target resumed. A `false` comes with the error ERR_DIGEST_MISMATCH; the guest still runs
   * on its target. Absent while the check runs, or when none was made.
   */
  verified?: boolean;
  /** How long that check took, in milliseconds. */
  verifyMs?: number;
  error?: { code: string; message: string };
}

/** An evacuation as its coordinator reports it. */
export interface EvacuationInfo {
  evacuationId: string;
  host: string;
  state: 'planning' | 'running' | 'completed' | 'failed' | 'cancelled';
  startedAt: string;
  endedAt?: string;
  plan: PlannedMove[];
  guests: EvacuatedGuest[];
  /** True once no guest is left on the host. */
  hostEmpty: boolean;
  /** The plan did not fit and nothing was moved; the unplaced guests say why. */
  refused?: boolean;
  /** A plan only (`dryRun`): nothing was claimed or moved. */
  dryRun?: boolean;
  /** A cancel was asked for; the evacuation ends once its migrations in flight have. */
  cancelRequested?: boolean;
  /** Why the coordinator itself stopped (a host it could not reach, ...), when it did. */
  error?: { code: string; message: string };
}

/** Every error answer: a stable code and words for people. */
export interface ErrorBody {
  error: { code: string; message: string };
}
