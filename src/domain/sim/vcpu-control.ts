/**
 * The shared memory between a simulated guest and one of its vCPU worker threads: a control
 * block of Int32 slots and a state cell holding the vCPU's registers.
 *
 * Commands use a request/acknowledge pair of sequence numbers. The guest stores the command, then
 * bumps `REQUEST` and notifies it; the worker, at a step boundary, reads `REQUEST`, acts on the
 * command current at that moment, and stores the request number it handled in `ACK` (and
 * notifies). A waiter knows its command took effect once `ACK` reaches its request number, which
 * stays true even when a later command overtook it (a resume immediately followed by a pause
 * leaves a worker that never ran, and its state cell untouched).
 *
 * A paused vCPU that is not running steps needs no thread to wake: `PHASE` says whether the
 * worker is inside a slice of steps. Between slices its state cell already holds its exact state,
 * and the guest may move `PHASE` from `OUTSIDE` to `HELD` (compare-and-exchange) and count it
 * paused at once; the worker moves it from `OUTSIDE` to `STEPPING` the same way before each slice,
 * so exactly one of the two wins. This is how a hypervisor pauses a vCPU that is not on a CPU: it
 * marks it, and waits only for one that is running. A woken thread can take a millisecond or more
 * to get a CPU on a busy host; the pause then no longer waits for it.
 *
 * The state cell is written by the worker after every slice and when it pauses, and read by it
 * when it resumes; the Atomics operations on the control block order those plain reads and writes
 * with the guest's.
 */

import type { SimGuestConfig } from './config.js';
import type { VcpuState } from './workload.js';

/** Slot of the command the guest wants: one of the `COMMAND_*` values. */
export const CTRL_COMMAND = 0;
/** Slot the guest bumps (and notifies) for every command; the worker sleeps on it. */
export const CTRL_REQUEST = 1;
/** Slot of the last request number the worker acted on; the guest waits on it. */
export const CTRL_ACK = 2;
/** Slot of the throttle, in parts per {@link THROTTLE_SCALE} of each second spent asleep. */
export const CTRL_THROTTLE = 3;
/** Slot of where the worker is: one of the `PHASE_*` values. */
export const CTRL_PHASE = 4;
/** Int32 slots in a control block. */
export const CONTROL_SLOTS = 5;

/** Phase: the worker runs no steps, and the state cell holds its state. */
export const PHASE_OUTSIDE = 0;
/** Phase: the worker is running a slice of steps. */
export const PHASE_STEPPING = 1;
/** Phase: the guest holds the vCPU paused; the worker starts no slice until it is released. */
export const PHASE_HELD = 2;

/** Command: run steps, paced. */
export const COMMAND_RUN = 1;
/** Command: store the state in the cell and stop at the next step boundary. */
export const COMMAND_PAUSE = 2;
/** Command: store the state and end the thread. */
export const COMMAND_EXIT = 3;

/** Throttle fractions travel as integers: parts per this many. */
export const THROTTLE_SCALE = 10000;

/**
 * Bytes of a state cell: steps as a float64, the generator's 4 and the registers' 8 u32s, then the
 * vCPU's busy time as a float64.
 */
export const STATE_CELL_BYTES = 64;

/** What a vCPU worker is started with (its first message). */
export interface VcpuWorkerData {
  /** Index of this vCPU, from 0. */
  index: number;
  /** The guest memory. */
  memory: SharedArrayBuffer;
  /** The dirty bitmap's buffer. */
  dirty: SharedArrayBuffer;
  /** Pages of guest memory. */
  pageCount: number;
  /** The control block, {@link CONTROL_SLOTS} Int32 slots. */
  control: SharedArrayBuffer;
  /** The state cell, {@link STATE_CELL_BYTES} bytes. */
  state: SharedArrayBuffer;
  /** The guest configuration. */
  config: SimGuestConfig;
}

/** A typed view of one vCPU's state cell. */
export class VcpuStateCell {
  /** The shared memory of the cell. */
  readonly buffer: SharedArrayBuffer;
  private readonly stepsSlot: Float64Array;
  private readonly words: Uint32Array;
  private readonly busySlot: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.buffer = buffer;
    this.stepsSlot = new Float64Array(buffer, 0, 1);
    this.words = new Uint32Array(buffer, 8, 12);
    this.busySlot = new Float64Array(buffer, 56, 1);
  }

  /** A cell of its own shared memory. */
  static create(): VcpuStateCell {
    return new VcpuStateCell(new SharedArrayBuffer(STATE_CELL_BYTES));
  }

  /** The whole state. Consistent only while the worker runs no slice: paused, held, or not yet started. */
  read(): VcpuState {
    const w = this.words;
    return {
      steps: this.stepsSlot[0]!,
      rng: [w[0]!, w[1]!, w[2]!, w[3]!],
      regs: [w[4]!, w[5]!, w[6]!, w[7]!, w[8]!, w[9]!, w[10]!, w[11]!],
    };
  }

  /** Stores the whole state. */
  write(state: VcpuState): void {
    const w = this.words;
    for (let i = 0; i < 4; i++) w[i] = state.rng[i]!;
    for (let i = 0; i < 8; i++) w[4 + i] = state.regs[i]!;
    this.stepsSlot[0] = state.steps;
  }

  /** The step count, which a running worker publishes with its state after every slice of steps. */
  readSteps(): number {
    return this.stepsSlot[0]!;
  }

  /** Milliseconds the vCPU spent running steps since its thread started, published after every slice. */
  readBusyMs(): number {
    return this.busySlot[0]!;
  }

  /** Publishes the busy time; only the vCPU's own thread writes it. */
  writeBusyMs(ms: number): void {
    this.busySlot[0] = ms;
  }
}
