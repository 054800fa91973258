/**
 * The replay oracle: what a simulated guest's memory and registers must be after each vCPU ran a
 * given number of steps. It rebuilds the initial image from the seed and runs the very step
 * function the vCPU threads run, so the answer is exact, whatever the timing, pauses, throttling
 * or migrations the real guest went through. Tests compare a paused guest's digest with it.
 */

import { InvalidArgumentError } from '../../errors.js';
import { digestBuffer } from '../../protocol/page-digest.js';
import { PAGE_SIZE_BYTES } from '../../protocol/records.js';
import { validateSimConfig, type SimGuestConfig } from './config.js';
import { fillImage } from './image.js';
import { initialVcpuState, runSteps, vcpuPartition, workloadParams, type VcpuState } from './workload.js';

/** The memory and vCPU states the oracle computed. */
export interface ReplayResult {
  /** The whole guest memory. */
  memory: Uint8Array;
  /** Each vCPU's state, in vCPU order. */
  vcpus: VcpuState[];
}

/** The memory digest and vCPU states the oracle computed. */
export interface OracleDigest {
  /** `digestBuffer` of the memory (16 hex digits), comparable with `digestMemory` of a guest. */
  digest: string;
  /** Each vCPU's state, in vCPU order. */
  vcpus: VcpuState[];
}

const ignoreDirty = (): void => {};

/**
 * Replays a guest of `config` from boot, vCPU `i` running exactly `steps[i]` steps. Allocates
 * the guest's whole memory (not shared) and takes time proportional to it plus the steps.
 */
export function replay(config: SimGuestConfig, steps: readonly number[]): ReplayResult {
  validateSimConfig(config);
  if (steps.length !== config.vcpus) {
    throw new InvalidArgumentError(`replay needs one step count per vCPU (${config.vcpus}), got ${steps.length}`);
  }
  const memory = new Uint8Array(config.memoryBytes);
  fillImage(memory, config.seed);
  const mem32 = new Int32Array(memory.buffer);
  const pageCount = config.memoryBytes / PAGE_SIZE_BYTES;
  const params = workloadParams(config);
  const vcpus = steps.map((count, index) => {
    const state = initialVcpuState(config.seed, index);
    runSteps(mem32, state, vcpuPartition(pageCount, config.vcpus, index), params, count, ignoreDirty);
    return state;
  });
  return { memory, vcpus };
}

/** The digest and vCPU states of {@link replay}. */
export function oracleDigest(config: SimGuestConfig, steps: readonly number[]): OracleDigest {
  const { memory, vcpus } = replay(config, steps);
  return { digest: digestBuffer(memory, PAGE_SIZE_BYTES), vcpus };
}
