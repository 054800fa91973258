/**
 * The target-side factory of simulated guests: builds the empty shell a migrating simulated guest
 * is received into, after checking it fits this host's allowance.
 */

import { OutOfMemoryError } from '../../errors.js';
import { DEFAULT_MAX_GUEST_MEMORY_BYTES } from '../../protocol/limits.js';
import type { DomainDescriptor } from '../../protocol/records.js';
import type { TargetBackend, TargetDomain } from '../backend.js';
import { simConfigFromDescriptor } from './config.js';
import { SimulatedGuest, VCPU_THREADS, type SimThreads } from './guest.js';
import { PREFAULT_THREADS } from './prefault.js';
import type { ThreadKind } from '../../util/spare-threads.js';

/**
 * vCPU threads a backend with `spareThreads` keeps started: enough for a guest of two vCPUs, or
 * for two guests of one (the default) arriving together, so that building them starts no vCPU
 * thread and the source hears "ready" sooner (docs/bench/README.md, "vCPU spares").
 */
export const SPARE_VCPU_THREADS = 2;

/**
 * How long after a guest resumed (or was destroyed) its backend starts new spares, in
 * milliseconds: past the switchover's last messages, so that starting threads does not slow them.
 */
export const SPARE_REFILL_DELAY_MS = 250;

/** Options of a {@link SimTargetBackend}. */
export interface SimTargetBackendOptions {
  /**
   * Largest guest this backend builds, in bytes; bigger ones are refused with ERR_OUT_OF_MEMORY
   * before any memory is allocated.
   * @default DEFAULT_MAX_GUEST_MEMORY_BYTES
   */
  maxMemoryBytes?: number;
  /**
   * Fault in each new guest's memory from a thread of its own while round 0 arrives, so that the
   * engine's thread writes pages already backed (see `prefault.ts`): a faster first pass, even on
   * two cores shared with the source (docs/bench/README.md, "Pre-faulting the target's memory").
   * It backs zero pages too: the guest's whole memory becomes resident at once, as a hypervisor
   * that reserves a guest's memory when it builds the guest would have it. Guests smaller than
   * PREFAULT_MIN_MEMORY_BYTES are never pre-faulted.
   * @default true
   */
  prefault?: boolean;
  /**
   * Keep threads started for the next guest: one pre-fault thread and SPARE_VCPU_THREADS vCPU
   * threads, started with the backend and again shortly after the guests being received have
   * all resumed or been destroyed. A guest is then built without waiting for threads to start,
   * and its walk starts with it instead of competing with the first pages for the cores. The
   * spares keep no process alive; `close()` ends them. The `livemig listen` and `host` commands
   * turn this on.
   * @default false
   */
  spareThreads?: boolean;
}

/** Builds empty, paused simulated guests (kind `"sim"`) for incoming migrations. */
export class SimTargetBackend implements TargetBackend {
  readonly kind = 'sim';
  /** Largest guest accepted, in bytes. */
  readonly maxMemoryBytes: number;
  /** Whether new guests' memory is pre-faulted. */
  readonly prefault: boolean;

  /** The kinds of thread spares are kept of, with `spareThreads`. */
  readonly #spares: { vcpu: ThreadKind; prefault: ThreadKind } | undefined;
  /** Guests built and still being received: spares are started again only once there are none. */
  #receiving = 0;

  constructor(options: SimTargetBackendOptions = {}) {
    this.maxMemoryBytes = options.maxMemoryBytes ?? DEFAULT_MAX_GUEST_MEMORY_BYTES;
    this.prefault = options.prefault ?? true;
    if (options.spareThreads === true) {
      this.#spares = { vcpu: VCPU_THREADS.withSpares(SPARE_VCPU_THREADS), prefault: PREFAULT_THREADS.withSpares(this.prefault ? 1 : 0) };
      this.#fill();
    }
  }

  #fill(): void {
    this.#spares?.vcpu.fill();
    this.#spares?.prefault.fill();
  }

  /**
   * Where a new guest's threads come from: the spares, and a hook its guest calls once it no
   * longer needs the host (resumed or destroyed). Spares are started again a moment after the last
   * guest being received got there, never while another one is arriving: starting threads takes
   * cores that a migration in its pause would wait for.
   */
  #threadsForGuest(): SimThreads | undefined {
    const spares = this.#spares;
    if (spares === undefined) return undefined;
    this.#receiving++;
    let settled = false;
    const refill = (): void => {
      if (settled) return;
      settled = true;
      this.#receiving--;
      setTimeout(() => {
        if (this.#receiving === 0) this.#fill();
      }, SPARE_REFILL_DELAY_MS).unref();
    };
    return { ...spares, refill };
  }

  /** vCPU and pre-fault threads started and waiting for a guest (0 without `spareThreads`). */
  get spareThreads(): number {
    return (this.#spares?.vcpu.spares ?? 0) + (this.#spares?.prefault.spares ?? 0);
  }

  /** Ends the spare threads; guests already built keep theirs. Idempotent. */
  async close(): Promise<void> {
    await Promise.all([this.#spares?.vcpu.close(), this.#spares?.prefault.close()]);
  }

  /**
   * Checks the announced size against `maxMemoryBytes` (ERR_OUT_OF_MEMORY), validates the
   * descriptor (ERR_INVALID_ARGUMENT), then allocates the guest. An allocation the host cannot
   * satisfy is also reported as ERR_OUT_OF_MEMORY.
   */
  async create(descriptor: DomainDescriptor): Promise<TargetDomain> {
    const announced: unknown = (descriptor as { memoryBytes?: unknown } | null)?.memoryBytes;
    if (typeof announced === 'number' && announced > this.maxMemoryBytes) {
      throw new OutOfMemoryError(
        `refusing a guest of ${announced} bytes: this target accepts at most ${this.maxMemoryBytes} bytes ` +
          `(raise maxMemoryBytes to allow it)`,
      );
    }
    const config = simConfigFromDescriptor(descriptor);
    if (config.memoryBytes > this.maxMemoryBytes) {
      throw new OutOfMemoryError(
        `refusing a guest of ${config.memoryBytes} bytes: this target accepts at most ${this.maxMemoryBytes} bytes`,
      );
    }
    const threads = this.#threadsForGuest();
    try {
      return await SimulatedGuest.createEmpty(descriptor, { prefault: this.prefault, threads });
    } catch (err) {
      threads?.refill?.();
      if (err instanceof RangeError) {
        throw new OutOfMemoryError(`could not allocate ${config.memoryBytes} bytes of guest memory: ${err.message}`);
      }
      throw err;
    }
  }
}
