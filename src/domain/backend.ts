/**
 * What a hypervisor gives the migration engine. The engine never touches a guest except through
 * these two interfaces, so a backend whose guest lives in another process (QEMU with its RAM in a
 * shared file, Xen with foreign mappings, KVM) slots in beside the simulated guest without changes
 * to `src/precopy`. Every hook is required, so that neither a backend nor a wrapper around one
 * leaves a hook out by accident; where a hypervisor cannot provide what a hook asks for, the
 * hook's TSDoc says what to return instead. docs/backends.md tells the same contract as a story.
 *
 * Threads: the engine calls every hook from the thread that runs the migration (the main thread
 * of the source or target process). Other threads reach guest memory only through the plain
 * description `memory()` returns, each with its own accessor (src/domain/guest-memory.ts).
 *
 * Page I/O is batched and may be asynchronous: a hook returns `void` when it finished before
 * returning (memory in this process) or a promise when it waits on I/O. The engine awaits only a
 * promise, so a synchronous backend costs no extra turn of the event loop per batch. Page batches
 * are at most a few thousand pages; page numbers in a batch may be in any order, though they
 * usually ascend in runs, which a backend may move in one call each.
 *
 * Buffer ownership: the engine owns every buffer and page list it passes in; a backend copies out
 * of or into it before the hook returns (or its promise settles) and keeps no reference. A
 * buffer a hook returns belongs to the caller.
 */

import type { DomainDescriptor } from '../protocol/records.js';
import type { GuestMemory } from '../util/guest-memory-types.js';

export type { DomainDescriptor } from '../protocol/records.js';
export type { GuestMemory } from '../util/guest-memory-types.js';

/**
 * How the source finds the pages the guest changed between rounds.
 *
 * - `log`: the backend keeps a dirty log (a bitmap the hypervisor fills, like KVM's or Xen's
 *   log-dirty, or page-table write-protection read from outside the hypervisor, as the QEMU
 *   backend does) and the engine reads it with `readDirtyLog` and `peekDirtyCount`.
 * - `scan`: the backend keeps none. The engine finds changed pages itself, by comparing each
 *   page's hash with the hash of what it last sent, reading the memory `memory()` describes
 *   (which must then be `shared` or `file`). The four dirty-log hooks are never called.
 */
export type DirtyTracking = 'log' | 'scan';

/** The source side of a domain: the guest that runs here now and is to move away. */
export interface SourceDomain {
  /** The domain's shape; constant for the domain's life. */
  readonly descriptor: DomainDescriptor;

  /** `memoryBytes / pageSize`. Page numbers run from 0 to `pageCount - 1`. */
  readonly pageCount: number;

  /** True between a resolved `pause()` and the next `resume()`. */
  readonly paused: boolean;

  /** How dirty pages are found; constant for the domain's life (see {@link DirtyTracking}). */
  readonly dirtyTracking: DirtyTracking;

  /**
   * Where the guest's memory lives, for threads that read it directly: the dirty-page scan of a
   * `scan` backend, and page workers. Called at the start of a migration and whenever a thread
   * needs the description; must be cheap and return the same memory each time. The description
   * stays valid until `destroy`. A backend whose memory no other thread can reach returns
   * `{ kind: 'none' }`, and must then track dirty pages with a `log`.
   */
  memory(): GuestMemory;

  /**
   * Starts logging dirty pages (`log` tracking only). Called once, just before round 0 reads any
   * memory; from then on every page the guest writes is reported by `readDirtyLog`. Pages written
   * before the call are covered by round 0, which sends all memory. A backend whose log lives in
   * another process returns a promise, and the engine reads no memory before it settles. A `scan`
   * backend does nothing.
   */
  enableDirtyLog(): void | Promise<void>;

  /**
   * Stops logging dirty pages (`log` tracking only). Called once when a migration that enabled
   * the log ends, whatever its outcome (an indeterminate one included, with the domain kept
   * paused). A `scan` backend does nothing.
   */
  disableDirtyLog(): void;

  /**
   * Atomically reads and clears the dirty log (`log` tracking only): per page, a write after the
   * page was read out of the log is reported by the next call. Returns the page numbers written
   * since the previous call (or since `enableDirtyLog`), ascending, each once, or a promise of
   * them where the log lives in another process. Called once per round and once more after the
   * pause, never while another call is pending. The returned array belongs to the caller. A
   * `scan` backend returns an empty array.
   */
  readDirtyLog(): Uint32Array | Promise<Uint32Array>;

  /**
   * How many pages the dirty log holds now, without clearing it (Xen's log-dirty "peek"; `log`
   * tracking only), or a promise of it where the log lives in another process. Called a few times
   * a second for progress and estimates; must be cheap. The engine keeps at most one promise
   * pending and uses the latest count it has meanwhile. A `scan` backend returns 0.
   */
  peekDirtyCount(): number | Promise<number>;

  /**
   * CPU time the guest's vCPUs have run since it started, in milliseconds, summed over vCPUs (a
   * hypervisor's per-vCPU run time), or `undefined` where the hypervisor does not tell. Called at
   * each round's start and end; the engine reports how many cores the guest kept busy meanwhile,
   * and leaves that out of the reports when this returns `undefined`. Must be cheap.
   */
  vcpuTimeMs(): number | undefined;

  /**
   * Copies the pages `pfns` into `dst`, in the order listed, back to back from offset 0
   * (`pfns.length * pageSize` bytes). Called for every batch sent (many times a round), by
   * estimates and by the verification pass after the switchover, while the guest may be running:
   * a page torn by a concurrent write is fine, because that write also dirties the page and it
   * is sent again. Rejects (or throws) PageOutOfRangeError for a page beyond `pageCount` and
   * DomainFailedError if the memory cannot be read. The engine issues one call at a time.
   */
  readPages(pfns: Uint32Array, dst: Uint8Array): void | Promise<void>;

  /**
   * Pauses every vCPU at an instruction (step) boundary and resolves once none runs. Called once
   * at stop-and-copy, and by tooling that inspects a guest. Idempotent.
   */
  pause(): Promise<void>;

  /**
   * Resumes a paused domain. Called when a migration fails or is cancelled after the pause, and
   * on a target after the final handshake. Idempotent.
   */
  resume(): Promise<void>;

  /**
   * Slows the guest's vCPUs: `fraction` of each second they sleep (0 = full speed, 0.99 = the
   * most). Used by auto-converge; the engine lifts it (sets 0) when the migration ends, whatever
   * its outcome, before it resumes a domain it paused. A hypervisor that cannot throttle ignores it.
   */
  setThrottle(fraction: number): void;

  /**
   * Why `setThrottle` could not slow the vCPUs, once it tried and could not (the guest then runs
   * at full speed whatever auto-converge asks); undefined where it throttles or was never asked.
   * The engine reports it beside the throttle it asked for. Optional: a backend that always
   * throttles leaves it out.
   */
  readonly throttleUnavailable?: string;

  /**
   * Returns the vCPU and device state, as an opaque blob that the target backend of the same kind
   * understands (for QEMU, its own migration stream without RAM). Called exactly once per
   * migration, right after `pause`, while the engine finds, reads and sends the last pages: a
   * backend must not rely on those reads being over, nor on `readPages` waiting for the save.
   * May take its time (the pause lasts until it settles); after a failure the engine lets it
   * settle before it calls `resume`. The blob belongs to the caller.
   */
  saveState(): Uint8Array | Promise<Uint8Array>;

  /**
   * Destroys the domain and frees its memory. Called on the source only after the target has
   * confirmed it resumed the guest. Never called on a failed migration.
   */
  destroy(): Promise<void>;
}

/** The target side of a domain: an empty shell that fills with memory and then runs. */
export interface TargetDomain {
  /** The shape announced by the source. */
  readonly descriptor: DomainDescriptor;

  /** `memoryBytes / pageSize`. */
  readonly pageCount: number;

  /**
   * Where the guest's memory lives, for threads that write received pages straight into it (see
   * `SourceDomain.memory`). A target whose memory no other thread can reach returns
   * `{ kind: 'none' }`. Memory of kind `shared` must be fresh, all zeros, when `create` resolves:
   * the engine leaves the zero pages of round 0 unwritten there. Valid until `destroy`.
   */
  memory(): GuestMemory;

  /**
   * Writes `pfns.length` received pages, back to back from offset 0 of `src`, to the pages
   * `pfns`. Called once for every batch of data pages received, in the order the batches were
   * sent, before the domain ever runs; the page numbers were checked against `pageCount`. The
   * engine issues one call at a time and does not reuse `src` before it returns (or settles).
   */
  writePages(pfns: Uint32Array, src: Uint8Array): void | Promise<void>;

  /**
   * Fills the pages `pfns` with zeros. Called once for every batch that holds pages the source
   * sent as zero pages, after that batch's `writePages`. Memory not yet touched may already read
   * as zeros; a backend that can tell should leave such pages alone rather than back them.
   */
  zeroPages(pfns: Uint32Array): void | Promise<void>;

  /**
   * Copies pages out, as `SourceDomain.readPages` does: for digests, inspection and onward
   * migration. The domain must be paused or not yet resumed.
   */
  readPages(pfns: Uint32Array, dst: Uint8Array): void | Promise<void>;

  /**
   * Loads the blob produced by the source's `saveState`. Called once, when the `device-state`
   * record arrives: after every page of the last round was written (`writePages`, `zeroPages`)
   * and before the target answers `prepared`, so a hypervisor that reads guest memory while
   * loading (QEMU's virtio rings) sees all of it. A rejection discards the migration and the
   * guest runs on at the source.
   */
  loadState(state: Uint8Array): Promise<void>;

  /** Starts the vCPUs. Called once the source has said "go"; resolves when they run. */
  resume(): Promise<void>;

  /** Pauses a running domain at a step boundary (inspection, or before migrating it onward). */
  pause(): Promise<void>;

  /** True when not running (before resume, or after pause). */
  readonly paused: boolean;

  /** Like `SourceDomain.saveState`: the state blob, while paused (inspection, onward migration). */
  saveState(): Uint8Array | Promise<Uint8Array>;

  /** Destroys the domain and frees its memory. Called when the migration is discarded. */
  destroy(): Promise<void>;
}

/** Builds target domains of one kind. A target agent holds one per kind it can run. */
export interface TargetBackend {
  /** The `DomainDescriptor.kind` this backend builds. */
  readonly kind: string;

  /**
   * Allocates an empty, paused domain of the described shape. Called once per incoming
   * migration, after the hello record passed the agent's limits and before the target answers
   * "ready"; whatever a backend needs ready before pages and state arrive (a hypervisor process
   * waiting for incoming state, its RAM file) it prepares here. Rejects with a MigrationError
   * (e.g. ERR_OUT_OF_MEMORY, ERR_INVALID_ARGUMENT) if it cannot.
   */
  create(descriptor: DomainDescriptor): Promise<TargetDomain>;
}
