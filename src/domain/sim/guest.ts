/**
 * The simulated guest, livemig's default domain backend: guest memory in a SharedArrayBuffer, a
 * seeded initial image, and one worker thread per vCPU stepping a deterministic program over it
 * (see `workload.ts`). Because the program is deterministic, the replay oracle (`oracle.ts`) can
 * say exactly what memory and registers a guest must hold after a given number of steps, on the
 * source or after any number of migrations.
 *
 * The same class serves as source domain (booted from a configuration) and target domain (built
 * empty from a descriptor, filled by the engine, then given the source's vCPU state).
 */

import type { Worker } from 'node:worker_threads';
import { DirtyBitmap } from '../../dirtylog/dirty-bitmap.js';
import { DomainFailedError, InvalidArgumentError } from '../../errors.js';
import { PAGE_SIZE_BYTES, type DomainDescriptor } from '../../protocol/records.js';
import type { DirtyTracking, GuestMemory, SourceDomain, TargetDomain } from '../backend.js';
import { openGuestMemory, type GuestMemoryAccess } from '../guest-memory.js';
import { DEFAULT_SIM_CONFIG, DEFAULT_SIM_NAME, simConfigFromDescriptor, simDescriptor, validateSimConfig, type SimGuestConfig } from './config.js';
import { fillImage } from './image.js';
import { Prefault, PREFAULT_MIN_MEMORY_BYTES, PREFAULT_THREADS } from './prefault.js';
import { decodeSimState, encodeSimState } from './state-codec.js';
import {
  COMMAND_EXIT,
  COMMAND_PAUSE,
  COMMAND_RUN,
  CONTROL_SLOTS,
  CTRL_ACK,
  CTRL_COMMAND,
  CTRL_PHASE,
  CTRL_REQUEST,
  CTRL_THROTTLE,
  PHASE_HELD,
  PHASE_OUTSIDE,
  THROTTLE_SCALE,
  VcpuStateCell,
  type VcpuWorkerData,
} from './vcpu-control.js';
import { cloneVcpuState, initialVcpuState, type VcpuState } from './workload.js';
import { ThreadKind } from '../../util/spare-threads.js';

/** Most throttle a guest accepts: its vCPUs sleep 99% of each second. */
export const MAX_SIM_THROTTLE = 0.99;

/**
 * How long `pause` waits in one go before it looks for a failed worker again, in milliseconds. A
 * failing worker also wakes it at once; this only bounds a missed wake-up.
 */
const ACK_POLL_MS = 20;

/**
 * How long `pause` spins for a vCPU caught inside a slice of steps (about 0.1 ms of work) before
 * it sleeps until the acknowledgement, in milliseconds. Spinning keeps this thread on its CPU: a
 * thread that sleeps here may wait a scheduler slice or more to run again once woken.
 */
const PAUSE_SPIN_MS = 2;

/** How long `destroy` lets a worker exit on its own before terminating it, in milliseconds. */
const EXIT_GRACE_MS = 2000;

interface AtomicsWithWaitAsync {
  waitAsync(
    array: Int32Array,
    index: number,
    value: number,
    timeoutMs?: number,
  ): { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
}

// Part of ES2024, which the configured lib predates; present in every supported Node.
const atomics = Atomics as unknown as AtomicsWithWaitAsync;


/** vCPU threads started when asked for, with no spare. */
export const VCPU_THREADS = new ThreadKind(new URL('./vcpu-worker.js', import.meta.url));

/**
 * Where a guest's threads come from: a target backend that keeps spares passes its own kinds,
 * refilled once the guest they went to no longer needs the host's attention (it runs, or is gone).
 */
export interface SimThreads {
  readonly vcpu: ThreadKind;
  readonly prefault: ThreadKind;
  /** Called when the guest resumes and when it is destroyed (past any pause): a time to start spares. */
  readonly refill?: () => void;
}

const ON_DEMAND_THREADS: SimThreads = { vcpu: VCPU_THREADS, prefault: PREFAULT_THREADS };

/** One vCPU's thread and the shared memory it is steered through. */
interface Vcpu {
  readonly worker: Worker;
  readonly control: Int32Array;
  readonly cell: VcpuStateCell;
  /** Settles when the thread has exited, however it ended. */
  readonly exited: Promise<void>;
}

/** A simulated virtual machine whose vCPUs are worker threads. */
export class SimulatedGuest implements SourceDomain, TargetDomain {
  readonly descriptor: DomainDescriptor;
  readonly config: SimGuestConfig;
  readonly pageCount: number;
  /** The vCPUs mark every page they write in a bitmap the engine reads. */
  readonly dirtyTracking: DirtyTracking = 'log';

  private mem: Uint8Array;
  /** Page I/O over `mem`, in place. */
  private pages: GuestMemoryAccess;
  private readonly dirty: DirtyBitmap;
  private readonly vcpus: Vcpu[] = [];
  private isPaused: boolean;
  private failure: DomainFailedError | undefined;
  private destroying: Promise<void> | undefined;
  /** The walk faulting in a target's fresh memory, if one was started. */
  private prefaultWalk: Prefault | undefined;
  private readonly threads: SimThreads;

  private constructor(config: SimGuestConfig, name: string, startPaused: boolean, threads = ON_DEMAND_THREADS) {
    this.threads = threads;
    this.config = { ...config };
    this.descriptor = simDescriptor(config, name);
    this.pageCount = config.memoryBytes / PAGE_SIZE_BYTES;
    this.mem = new Uint8Array(new SharedArrayBuffer(config.memoryBytes));
    this.pages = openGuestMemory(this.memory(), PAGE_SIZE_BYTES);
    this.dirty = DirtyBitmap.create(this.pageCount);
    this.isPaused = startPaused;
  }

  /**
   * Boots a guest: validates `config` (each field left out takes its value from
   * DEFAULT_SIM_CONFIG), builds the seeded memory image (about 0.6 s per GiB), starts one worker
   * thread per vCPU and resolves once all of them run.
   */
  static async boot(partial: Partial<SimGuestConfig> = {}, name: string = DEFAULT_SIM_NAME): Promise<SimulatedGuest> {
    const config: SimGuestConfig = { ...DEFAULT_SIM_CONFIG, ...partial };
    validateSimConfig(config);
    const guest = new SimulatedGuest(config, name, false);
    fillImage(guest.mem, config.seed);
    await guest.spawnVcpus(COMMAND_RUN);
    return guest;
  }

  /**
   * Builds the empty, paused shell of a migrating guest on a target: zeroed memory and vCPU
   * threads already started but paused, so that `resume` only has to flip a flag. Validates the
   * descriptor (it came from the network). Until `loadState`, the vCPUs hold their boot state.
   * With `prefault`, a memory of at least PREFAULT_MIN_MEMORY_BYTES is faulted in by a thread of
   * its own while pages arrive (see `prefault.ts`); it stops at `loadState`, `resume`, `pause` or
   * `destroy`, whichever comes first.
   */
  static async createEmpty(descriptor: DomainDescriptor, options: { prefault?: boolean; threads?: SimThreads } = {}): Promise<SimulatedGuest> {
    const config = simConfigFromDescriptor(descriptor);
    const name = typeof descriptor.name === 'string' ? descriptor.name : DEFAULT_SIM_NAME;
    const guest = new SimulatedGuest(config, name, true, options.threads);
    if (options.prefault === true && config.memoryBytes >= PREFAULT_MIN_MEMORY_BYTES) {
      try {
        guest.prefaultWalk = Prefault.start(guest.mem.buffer as SharedArrayBuffer, 0, config.memoryBytes, PAGE_SIZE_BYTES, guest.threads.prefault);
      } catch {
        // No thread to spare (a worker refused to start): the engine faults pages in as it writes them.
      }
    }
    try {
      await guest.spawnVcpus(COMMAND_PAUSE);
    } catch (err) {
      await guest.prefaultWalk?.close();
      throw err;
    }
    return guest;
  }

  private async spawnVcpus(initialCommand: number): Promise<void> {
    const memory = this.mem.buffer as SharedArrayBuffer;
    for (let index = 0; index < this.config.vcpus; index++) {
      const control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
      control[CTRL_COMMAND] = initialCommand;
      control[CTRL_REQUEST] = 1;
      const cell = VcpuStateCell.create();
      cell.write(initialVcpuState(this.config.seed, index));
      const input: VcpuWorkerData = {
        index,
        memory,
        dirty: this.dirty.buffer,
        pageCount: this.pageCount,
        control: control.buffer as SharedArrayBuffer,
        state: cell.buffer,
        config: this.config,
      };
      const worker = this.threads.vcpu.start(input);
      // A guest nobody destroyed must not keep the process alive.
      worker.unref();
      worker.on('error', (err) => this.fail(`vCPU ${index} failed: ${err.message}`, err));
      const exited = new Promise<void>((resolve) => {
        worker.once('exit', (code) => {
          if (this.destroying === undefined) this.fail(`vCPU ${index} exited unexpectedly with code ${code}`);
          resolve();
        });
      });
      this.vcpus.push({ worker, control, cell, exited });
    }
    try {
      await this.waitForAcks(this.vcpus.map(() => 1));
    } catch (err) {
      await this.destroy();
      throw err;
    }
  }

  private fail(message: string, cause?: unknown): void {
    if (this.failure === undefined) this.failure = new DomainFailedError(message, { cause });
    // Wake every waiter so it sees the failure now rather than at its next poll.
    for (const vcpu of this.vcpus) Atomics.notify(vcpu.control, CTRL_ACK);
  }

  private checkUsable(action: string): void {
    if (this.destroying !== undefined) throw new DomainFailedError(`cannot ${action}: the simulated guest was destroyed`);
    if (this.failure !== undefined) {
      throw new DomainFailedError(`cannot ${action}: ${this.failure.message}`, { cause: this.failure });
    }
  }

  /** Stores `command` in every control block and wakes the workers; returns their request numbers. */
  private command(command: number): number[] {
    return this.vcpus.map((vcpu) => {
      Atomics.store(vcpu.control, CTRL_COMMAND, command);
      const request = Atomics.add(vcpu.control, CTRL_REQUEST, 1) + 1;
      Atomics.notify(vcpu.control, CTRL_REQUEST);
      return request;
    });
  }

  /**
   * Resolves once every vCPU (or each of `only`, by index) acknowledged its request; rejects if a
   * vCPU thread failed.
   */
  private async waitForAcks(requests: readonly number[], only?: readonly number[]): Promise<void> {
    // Neither a pending Atomics.waitAsync nor an unref'ed worker keeps Node's event loop alive,
    // so a caller awaiting only this promise would see the process exit under it.
    const keepAlive = setInterval(() => {}, 1000);
    try {
      const indices = only ?? this.vcpus.map((_, i) => i);
      await Promise.all(indices.map((i) => this.waitForAck(this.vcpus[i]!, requests[i]!)));
    } finally {
      clearInterval(keepAlive);
    }
  }

  private async waitForAck(vcpu: Vcpu, request: number): Promise<void> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure;
      const ack = Atomics.load(vcpu.control, CTRL_ACK);
      if (ack - request >= 0) return;
      const wait = atomics.waitAsync(vcpu.control, CTRL_ACK, ack, ACK_POLL_MS);
      if (wait.async) await wait.value;
    }
  }

  /** True between a resolved `pause()` and the next `resume()`; true on a target until resumed. */
  get paused(): boolean {
    return this.isPaused;
  }

  /** The pre-fault walk over a target's fresh memory, if one was started. For tests and inspection. */
  get prefault(): Pick<Prefault, 'ended' | 'progress' | 'pageCount'> | undefined {
    return this.prefaultWalk;
  }

  /** The guest memory itself, shared with the vCPU threads. For tests and inspection. */
  get bytes(): Uint8Array {
    return this.mem;
  }

  /** The SharedArrayBuffer the vCPU threads run on: any thread may read and write it. */
  memory(): GuestMemory {
    if (this.destroying !== undefined) return { kind: 'none' };
    return { kind: 'shared', buffer: this.mem.buffer as SharedArrayBuffer, byteOffset: 0, byteLength: this.mem.length };
  }

  /** Clears the dirty log; the vCPUs mark every page they write from then on (they always do). */
  enableDirtyLog(): void {
    this.dirty.clear();
  }

  /** Nothing to stop: the vCPUs keep marking, and the marks are cleared at the next enable. */
  disableDirtyLog(): void {}

  /** Pages in the dirty log now, not clearing it. */
  peekDirtyCount(): number {
    return this.dirty.count();
  }

  /** Pages written since the previous call or `enableDirtyLog`, ascending; cleared by the read. */
  readDirtyLog(): Uint32Array {
    return this.dirty.readAndClear();
  }

  private checkAlive(): void {
    if (this.destroying !== undefined) throw new DomainFailedError('the simulated guest was destroyed');
  }

  /** Copies pages out, runs of consecutive pages in one copy each. Safe while running (see `SourceDomain`). */
  readPages(pfns: Uint32Array, dst: Uint8Array): void {
    this.checkAlive();
    this.pages.readPages(pfns, dst);
  }

  /** Writes received pages. Meant for a paused (target) guest. */
  writePages(pfns: Uint32Array, src: Uint8Array): void {
    this.checkAlive();
    this.pages.writePages(pfns, src);
    if (pfns.length > 0) this.prefaultWalk?.wrote(pfns[pfns.length - 1]! + 1);
  }

  /** Fills pages with zeros, leaving pages never written (which read as zeros) unbacked. */
  zeroPages(pfns: Uint32Array): void {
    this.checkAlive();
    this.pages.zeroPages(pfns);
  }

  /**
   * Stops every vCPU at a step boundary, its state in its cell. A vCPU between slices of steps
   * (nearly always, as the workload sleeps between them) is held where it is, without waiting for
   * its thread; one inside a slice is waited for, spinning at first. Typically well under a
   * millisecond. Idempotent. Rejects with DomainFailedError if a vCPU thread failed.
   */
  async pause(): Promise<void> {
    this.checkUsable('pause');
    // A guest paused for inspection or an onward migration gets no more pre-faulting.
    this.prefaultWalk?.stop();
    if (this.isPaused) return;
    // The command first: a worker that loses the race for a slice then finds it waiting.
    const requests = this.command(COMMAND_PAUSE);
    const spinUntil = performance.now() + PAUSE_SPIN_MS;
    let pending = this.vcpus.map((_, i) => i);
    for (;;) {
      pending = pending.filter((i) => !this.stopped(this.vcpus[i]!, requests[i]!));
      if (pending.length === 0 || performance.now() >= spinUntil) break;
    }
    if (pending.length > 0) await this.waitForAcks(requests, pending);
    this.isPaused = true;
  }

  /** True once `vcpu` acknowledged `request` or is held between slices (see `vcpu-control.ts`). */
  private stopped(vcpu: Vcpu, request: number): boolean {
    if (this.failure !== undefined) throw this.failure;
    if (Atomics.load(vcpu.control, CTRL_ACK) - request >= 0) return true;
    const phase = Atomics.compareExchange(vcpu.control, CTRL_PHASE, PHASE_OUTSIDE, PHASE_HELD);
    return phase === PHASE_OUTSIDE || phase === PHASE_HELD;
  }

  /**
   * Lets the vCPUs run again, from the state in their cells (the loaded one on a target). Only
   * signals the threads and returns; they start within microseconds. Idempotent.
   */
  async resume(): Promise<void> {
    this.checkUsable('resume');
    // Every page has arrived; the walk's thread ends by itself within a fraction of a millisecond.
    this.prefaultWalk?.stop();
    if (!this.isPaused) return;
    // Released before the command, so that a worker acting on it may start a slice.
    for (const vcpu of this.vcpus) Atomics.compareExchange(vcpu.control, CTRL_PHASE, PHASE_HELD, PHASE_OUTSIDE);
    this.command(COMMAND_RUN);
    this.isPaused = false;
    this.threads.refill?.();
  }

  /** The throttle in force, as a fraction of vCPU time taken away (0 = full speed). */
  get throttle(): number {
    const vcpu = this.vcpus[0];
    return vcpu ? Atomics.load(vcpu.control, CTRL_THROTTLE) / THROTTLE_SCALE : 0;
  }

  /**
   * Makes each vCPU sleep `fraction` of the time, 0 (full speed) to 0.99; values between 0.99 and
   * 1 count as 0.99. The paced step rate drops by the same fraction.
   */
  setThrottle(fraction: number): void {
    if (!(Number.isFinite(fraction) && fraction >= 0 && fraction <= 1)) {
      throw new InvalidArgumentError(`throttle must be a fraction from 0 to ${MAX_SIM_THROTTLE}, got ${fraction}`);
    }
    const parts = Math.round(Math.min(fraction, MAX_SIM_THROTTLE) * THROTTLE_SCALE);
    for (const vcpu of this.vcpus) {
      Atomics.store(vcpu.control, CTRL_THROTTLE, parts);
      Atomics.notify(vcpu.control, CTRL_REQUEST);
    }
  }

  /** Every vCPU's state. Only while paused (or not yet resumed), when it is exact. */
  vcpuStates(): VcpuState[] {
    this.checkUsable('read vCPU state');
    if (!this.isPaused) throw new DomainFailedError('vCPU state can only be read while the guest is paused');
    return this.vcpus.map((vcpu) => cloneVcpuState(vcpu.cell.read()));
  }

  /** Milliseconds the vCPU threads have spent running steps, summed (see `SourceDomain.vcpuTimeMs`). */
  vcpuTimeMs(): number {
    let total = 0;
    for (const vcpu of this.vcpus) total += vcpu.cell.readBusyMs();
    return total;
  }

  /** Steps each vCPU has run since boot; exact while paused, a recent count while running. */
  stepCounts(): number[] {
    return this.vcpus.map((vcpu) => vcpu.cell.readSteps());
  }

  /** The vCPU state blob (see `state-codec.ts`); only while paused. */
  saveState(): Uint8Array {
    return encodeSimState(this.vcpuStates());
  }

  /**
   * Loads a state blob from the source into the paused vCPUs; they run from it on `resume`.
   * Rejects with MalformedRecordError on a malformed blob, InvalidArgumentError if its vCPU
   * count differs from this guest's, and DomainFailedError if the guest is running.
   */
  async loadState(state: Uint8Array): Promise<void> {
    this.checkUsable('load vCPU state');
    if (!this.isPaused) throw new DomainFailedError('vCPU state can only be loaded while the guest is paused');
    // Every page of the last round was written before the device state came.
    this.prefaultWalk?.stop();
    const states = decodeSimState(state);
    if (states.length !== this.vcpus.length) {
      throw new InvalidArgumentError(
        `state blob holds ${states.length} vCPUs but this guest has ${this.vcpus.length}`,
      );
    }
    states.forEach((vcpuState, i) => this.vcpus[i]!.cell.write(vcpuState));
  }

  /**
   * Stops the vCPU threads, waits for them to exit, and drops the memory. Safe to call more than
   * once; later calls return the first call's promise.
   */
  destroy(): Promise<void> {
    if (this.destroying === undefined) this.destroying = this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    this.threads.refill?.();
    this.command(COMMAND_EXIT);
    await this.prefaultWalk?.close();
    await Promise.all(
      this.vcpus.map(async (vcpu) => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), EXIT_GRACE_MS);
        });
        const outcome = await Promise.race([vcpu.exited, late]);
        clearTimeout(timer);
        if (outcome === 'late') await vcpu.worker.terminate();
        await vcpu.exited;
      }),
    );
    this.isPaused = true;
    this.mem = new Uint8Array(0);
    this.pages = openGuestMemory({ kind: 'shared', buffer: new SharedArrayBuffer(0), byteOffset: 0, byteLength: 0 }, PAGE_SIZE_BYTES);
  }
}
