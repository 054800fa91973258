/**
 * Entry point of one simulated vCPU's worker thread. It runs the step function over the shared
 * guest memory, paced to its share of the configured dirty rate, and obeys the commands in its
 * control block (see `vcpu-control.ts`) at step boundaries.
 *
 * Pacing decides only when steps run, never what they do, so it cannot affect the memory and
 * registers a given number of steps produces.
 */

import { DirtyBitmap } from '../../dirtylog/dirty-bitmap.js';
import {
  COMMAND_EXIT,
  COMMAND_PAUSE,
  CTRL_ACK,
  CTRL_COMMAND,
  CTRL_PHASE,
  CTRL_REQUEST,
  CTRL_THROTTLE,
  PHASE_OUTSIDE,
  PHASE_STEPPING,
  THROTTLE_SCALE,
  VcpuStateCell,
  type VcpuWorkerData,
} from './vcpu-control.js';
import { runSteps, vcpuPartition, vcpuStepsPerSecond, workloadParams, type VcpuState } from './workload.js';
import { threadInput } from '../../util/spare-threads.js';

/** Most steps between two looks at the control block: about 0.1 ms of work. */
const SLICE_STEPS = 2048;

/**
 * Shortest sleep between batches of paced steps, in milliseconds. Steps that fall due meanwhile
 * run together on waking; sleeping less would cost more in wake-ups than the steps themselves.
 */
const MIN_SLEEP_MS = 2;

/** Longest sleep before looking at the clock and the throttle again, in milliseconds. */
const MAX_SLEEP_MS = 100;

/**
 * Most steps a vCPU may owe, in milliseconds of its rate. A vCPU that fell further behind (its
 * thread was descheduled, or the rate exceeds what it can do) forgets the rest instead of
 * bursting to catch up.
 */
const MAX_BACKLOG_MS = 20;

/** Throttle sleep owed before the worker actually sleeps it off, in milliseconds. */
const MIN_THROTTLE_SLEEP_MS = 1;

function main(data: VcpuWorkerData): void {
  const control = new Int32Array(data.control);
  const cell = new VcpuStateCell(data.state);
  const mem32 = new Int32Array(data.memory);
  const bitmap = DirtyBitmap.attach(data.dirty, data.pageCount);
  const markDirty = (pfn: number): void => bitmap.mark(pfn);
  const partition = vcpuPartition(data.pageCount, data.config.vcpus, data.index);
  const params = workloadParams(data.config);
  const fullRate = vcpuStepsPerSecond(data.config);

  let handled = 0;
  let running = false;
  let state: VcpuState = cell.read();

  // The pacing clock: `clockSteps` steps have run since `clockStartMs`.
  let clockStartMs = 0;
  let clockSteps = 0;
  let throttleParts = -1;
  let rate = fullRate;
  let throttleDebtMs = 0;
  // Time spent running steps, for the guest's CPU use (the host's view of a vCPU's run time).
  let busyMs = 0;

  const acknowledge = (request: number): void => {
    Atomics.store(control, CTRL_ACK, request);
    Atomics.notify(control, CTRL_ACK);
  };

  for (;;) {
    const request = Atomics.load(control, CTRL_REQUEST);
    if (request !== handled) {
      handled = request;
      const command = Atomics.load(control, CTRL_COMMAND);
      if (command === COMMAND_EXIT || command === COMMAND_PAUSE) {
        if (running) {
          cell.write(state);
          running = false;
        }
        if (command === COMMAND_EXIT) {
          acknowledge(request);
          return;
        }
        acknowledge(request);
      } else {
        if (!running) {
          // On a target the state was loaded from the network while paused: take it from the cell.
          state = cell.read();
          running = true;
        }
        // Start pacing afresh, so time spent paused is not made up for with a burst. A resume that
        // finds this thread running follows a pause the guest made by holding it between slices,
        // which this thread never saw as a command: that pause must not be made up for either.
        clockStartMs = performance.now();
        clockSteps = 0;
        throttleDebtMs = 0;
        acknowledge(request);
      }
      continue;
    }

    if (!running) {
      Atomics.wait(control, CTRL_REQUEST, handled);
      continue;
    }

    let now = performance.now();
    const parts = Atomics.load(control, CTRL_THROTTLE);
    if (parts !== throttleParts) {
      throttleParts = parts;
      rate = fullRate * (1 - parts / THROTTLE_SCALE);
      clockStartMs = now;
      clockSteps = 0;
    }

    const due = Math.floor(((now - clockStartMs) * rate) / 1000) - clockSteps;
    if (due > Math.max(SLICE_STEPS, (rate * MAX_BACKLOG_MS) / 1000)) {
      clockStartMs = now;
      clockSteps = 0;
      continue;
    }
    if (due > 0) {
      // Held by the guest between slices: it counts this vCPU paused, and its command follows.
      if (Atomics.compareExchange(control, CTRL_PHASE, PHASE_OUTSIDE, PHASE_STEPPING) !== PHASE_OUTSIDE) continue;
      const count = Math.min(due, SLICE_STEPS);
      runSteps(mem32, state, partition, params, count, markDirty);
      clockSteps += count;
      // The cell holds the exact state whenever no slice runs: the guest may hold the vCPU then.
      cell.write(state);
      Atomics.store(control, CTRL_PHASE, PHASE_OUTSIDE);
      const workedMs = performance.now() - now;
      busyMs += workedMs;
      cell.writeBusyMs(busyMs);
      if (throttleParts > 0) {
        // A vCPU that cannot keep up with its pacing still sleeps its throttled share.
        const fraction = throttleParts / THROTTLE_SCALE;
        throttleDebtMs += (workedMs * fraction) / (1 - fraction);
        if (throttleDebtMs >= MIN_THROTTLE_SLEEP_MS) {
          Atomics.wait(control, CTRL_REQUEST, handled, throttleDebtMs);
          throttleDebtMs = 0;
        }
      }
      continue;
    }

    now = performance.now();
    const nextDueMs = rate > 0 ? clockStartMs + ((clockSteps + 1) * 1000) / rate : Infinity;
    const sleepMs = Math.min(MAX_SLEEP_MS, Math.max(MIN_SLEEP_MS, nextDueMs - now));
    Atomics.wait(control, CTRL_REQUEST, handled, sleepMs);
  }
}

main(await threadInput<VcpuWorkerData>());
