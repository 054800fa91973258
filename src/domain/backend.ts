/**
 * What a hypervisor gives the migration engine. The engine never touches a guest except through
 * these two interfaces, so a Xen (libxenguest, foreign mappings, log-dirty) or KVM (dirty ring or
 * KVM_GET_DIRTY_LOG, userfault) backend slots in beside the simulated guest without changes to
 * `src/precopy`. Every hook is required, so that neither a backend nor a wrapper around one leaves
 * a hook out by accident; where a hypervisor cannot provide what a hook asks for (`vcpuTimeMs`
 * only), the hook's TSDoc says what to return instead.
 *
 * Buffer ownership: the engine owns every buffer it passes in; a backend copies out of or into it
 * before returning and keeps no reference.
 */

import type { DomainDescriptor } from '../protocol/records.js';

/** The source side of a domain: the guest that runs here now and is to move away. */
export interface SourceDomain {
  /** The domain's shape; constant for the domain's life. */
  readonly descriptor: DomainDescriptor;

  /** `memoryBytes / pageSize`. Page numbers run from 0 to `pageCount - 1`. */
  readonly pageCount: number;

  /** True between a resolved `pause()` and the next `resume()`. */
  readonly paused: boolean;

  /**
   * Starts logging dirty pages. Called once, just before round 0 reads any memory; from then on
   * every page the guest writes is reported by `readDirtyLog`. Pages written before the call are
   * covered by round 0, which sends all memory.
   */
  enableDirtyLog(): void;

  /**
   * Stops logging dirty pages. Called once when a migration that enabled the log ends, whatever
   * its outcome (an indeterminate one included, with the domain kept paused).
   */
  disableDirtyLog(): void;

  /**
   * Atomically reads and clears the dirty log. Returns the page numbers written since the
   * previous call (or since `enableDirtyLog`), ascending, each once. Called once per round and
   * once more after the pause. The returned array belongs to the caller.
   */
  readDirtyLog(): Uint32Array;

  /**
   * How many pages the dirty log holds now, without clearing it (Xen's log-dirty "peek"). Called
   * a few times a second for progress and estimates; must be cheap.
   */
  peekDirtyCount(): number;

  /**
   * CPU time the guest's vCPUs have run since it started, in milliseconds, summed over vCPUs (a
   * hypervisor's per-vCPU run time), or `undefined` where the hypervisor does not tell. Called at
   * each round's start and end; the engine reports how many cores the guest kept busy meanwhile,
   * and leaves that out of the reports when this returns `undefined`. Must be cheap.
   */
  vcpuTimeMs(): number | undefined;

  /**
   * Copies one page into `dst` at `dstOffset`. Called for every page sent, from the engine's
   * thread, while the guest may be running: a page torn by a concurrent write is fine because
   * that write also marks the page dirty and it is sent again.
   */
  copyPage(pfn: number, dst: Uint8Array, dstOffset: number): void;

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
   * its outcome, before it resumes a domain it paused.
   */
  setThrottle(fraction: number): void;

  /**
   * Returns the vCPU and device state, as an opaque blob that the target backend of the same kind
   * understands. Called exactly once, while paused, after the last pages are read.
   */
  saveState(): Uint8Array;

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

  /** Writes one received page from `src` at `srcOffset`. Called for every data page received. */
  writePage(pfn: number, src: Uint8Array, srcOffset: number): void;

  /** Fills one page with zeros. Called for pages the source sent as zero pages. */
  zeroPage(pfn: number): void;

  /** Copies one page out, for digests and inspection. The domain must be paused or not yet resumed. */
  copyPage(pfn: number, dst: Uint8Array, dstOffset: number): void;

  /** Loads the blob produced by the source's `saveState`. Called once, before `resume`. */
  loadState(state: Uint8Array): Promise<void>;

  /** Starts the vCPUs. Called once the source has said "go"; resolves when they run. */
  resume(): Promise<void>;

  /** Pauses a running domain at a step boundary (inspection, or before migrating it onward). */
  pause(): Promise<void>;

  /** True when not running (before resume, or after pause). */
  readonly paused: boolean;

  /** Like `SourceDomain.saveState`: the state blob, while paused (inspection, onward migration). */
  saveState(): Uint8Array;

  /** Destroys the domain and frees its memory. Called when the migration is discarded. */
  destroy(): Promise<void>;
}

/** Builds target domains of one kind. A target agent holds one per kind it can run. */
export interface TargetBackend {
  /** The `DomainDescriptor.kind` this backend builds. */
  readonly kind: string;

  /**
   * Allocates an empty, paused domain of the described shape. Called once per incoming
   * migration, after the hello record passed the agent's limits. Rejects with a
   * MigrationError (e.g. ERR_OUT_OF_MEMORY, ERR_INVALID_ARGUMENT) if it cannot.
   */
  create(descriptor: DomainDescriptor): Promise<TargetDomain>;
}
