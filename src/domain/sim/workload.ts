/**
 * The simulated vCPU: a step function that reads guest memory, folds what it read into its
 * registers and writes 64 bytes derived from them. The vCPU worker and the replay oracle run this
 * same code, so a guest paused after N steps holds exactly the memory and registers the oracle
 * computes for N steps; a page lost or corrupted in migration changes what later steps read and
 * so shows up in the registers and in every page written afterwards.
 *
 * Each vCPU reads and writes only its own contiguous partition of the pages, so the vCPUs never
 * depend on one another and their interleaving in time does not matter to the result.
 */

import { InvalidArgumentError } from '../../errors.js';
import { PAGE_SIZE_BYTES } from '../../protocol/records.js';
import { IDLE_STEPS_PER_SECOND, type SimGuestConfig, type Workload } from './config.js';

const PAGE_WORDS = PAGE_SIZE_BYTES / 4;

/** Bytes one step writes. */
export const STEP_WRITE_BYTES = 64;

/** Pages the `idle` workload writes among, at the start of each partition. */
export const IDLE_PAGES = 16;

/** The architectural state of one vCPU: everything its future steps depend on, besides memory. */
export interface VcpuState {
  /** Steps executed since boot. */
  steps: number;
  /** xoshiro128** generator state, four u32 words, not all zero. */
  rng: [number, number, number, number];
  /** Eight u32 general-purpose registers. */
  regs: number[];
}

/** A vCPU's pages: page numbers from `first` up to, not including, `end`. */
export interface VcpuPartition {
  first: number;
  end: number;
}

/** What the step function needs to know of the configured workload. */
export interface WorkloadParams {
  workload: Workload;
  /** Pages of each vCPU's hot set (the `hotset` workload); at least 1. */
  hotPages: number;
}

/** Registers per vCPU. */
export const VCPU_REGISTERS = 8;

/** A splitmix32 sequence: seeds the generator and registers of a vCPU from the guest seed. */
function splitmix32(state: { x: number }): number {
  state.x = (state.x + 0x9e3779b9) | 0;
  let z = state.x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** The state of vCPU `vcpuIndex` at boot of a guest seeded with `seed`. */
export function initialVcpuState(seed: number, vcpuIndex: number): VcpuState {
  const sequence = { x: (seed ^ Math.imul(vcpuIndex + 1, 0x632be5ab)) | 0 };
  const rng: [number, number, number, number] = [
    splitmix32(sequence),
    splitmix32(sequence),
    splitmix32(sequence),
    splitmix32(sequence),
  ];
  // xoshiro's one forbidden state; splitmix32 all but never yields it, but a seed must not hang.
  if ((rng[0] | rng[1] | rng[2] | rng[3]) === 0) rng[0] = 1;
  const regs: number[] = [];
  for (let i = 0; i < VCPU_REGISTERS; i++) regs.push(splitmix32(sequence));
  return { steps: 0, rng, regs };
}

/**
 * The pages vCPU `index` of `vcpus` owns in a memory of `pageCount` pages: consecutive shares
 * that differ in size by at most one page.
 */
export function vcpuPartition(pageCount: number, vcpus: number, index: number): VcpuPartition {
  return {
    first: Math.floor((index * pageCount) / vcpus),
    end: Math.floor(((index + 1) * pageCount) / vcpus),
  };
}

/** The step function's view of a guest configuration. */
export function workloadParams(config: SimGuestConfig): WorkloadParams {
  return {
    workload: config.workload,
    hotPages: Math.max(1, Math.floor(config.hotSetBytes / PAGE_SIZE_BYTES / config.vcpus)),
  };
}

/**
 * Steps per second one vCPU is paced to: its share of the dirty rate (one step dirties one page),
 * or {@link IDLE_STEPS_PER_SECOND} for `idle`.
 */
export function vcpuStepsPerSecond(config: SimGuestConfig): number {
  if (config.workload === 'idle') return IDLE_STEPS_PER_SECOND;
  return config.dirtyRateBytesPerSec / PAGE_SIZE_BYTES / config.vcpus;
}

/** A copy of a state that shares no arrays with it. */
export function cloneVcpuState(state: VcpuState): VcpuState {
  return { steps: state.steps, rng: [state.rng[0], state.rng[1], state.rng[2], state.rng[3]], regs: state.regs.slice() };
}

/**
 * Runs `count` steps of one vCPU over `mem32` (the whole guest memory as 32-bit words), updating
 * `state` in place. Each step:
 *
 * 1. draws three numbers from the vCPU's xoshiro128** generator;
 * 2. reads a word from a random page of the partition and folds it into the registers;
 * 3. picks the page to write per the workload, and writes 16 words derived from the registers
 *    and the step counter at a random 64-byte-aligned offset of it;
 * 4. calls `markDirty(page)`, only after the write is complete (see `dirty-bitmap.ts` for why
 *    the order matters).
 *
 * The result depends only on `state`, the partition's memory, the partition and `params`, never
 * on time or on how the steps are split between calls.
 */
export function runSteps(
  mem32: Int32Array,
  state: VcpuState,
  partition: VcpuPartition,
  params: WorkloadParams,
  count: number,
  markDirty: (pfn: number) => void,
): void {
  const { first, end } = partition;
  const length = end - first;
  if (!(Number.isInteger(first) && Number.isInteger(end) && first >= 0 && length > 0 && end * PAGE_WORDS <= mem32.length)) {
    throw new InvalidArgumentError(
      `vCPU partition [${first}, ${end}) is empty or lies outside a memory of ${Math.floor(mem32.length / PAGE_WORDS)} pages`,
    );
  }
  if (!(Number.isSafeInteger(count) && count >= 0)) {
    throw new InvalidArgumentError(`step count must be a whole number, 0 or more, got ${count}`);
  }
  const sequential = params.workload === 'sequential';
  let span: number;
  switch (params.workload) {
    case 'uniform':
    case 'sequential':
      span = length;
      break;
    case 'hotset':
      span = Math.min(length, Math.max(1, params.hotPages));
      break;
    case 'idle':
      span = Math.min(length, IDLE_PAGES);
      break;
    default:
      throw new InvalidArgumentError(`unknown workload ${String(params.workload)}`);
  }

  let steps = state.steps;
  let s0 = state.rng[0] | 0;
  let s1 = state.rng[1] | 0;
  let s2 = state.rng[2] | 0;
  let s3 = state.rng[3] | 0;
  const regs = state.regs;
  let r0 = regs[0]! | 0;
  let r1 = regs[1]! | 0;
  let r2 = regs[2]! | 0;
  let r3 = regs[3]! | 0;
  let r4 = regs[4]! | 0;
  let r5 = regs[5]! | 0;
  let r6 = regs[6]! | 0;
  let r7 = regs[7]! | 0;

  for (let i = 0; i < count; i++) {
    // Three xoshiro128** outputs: a, b, c.
    let m = Math.imul(s1, 5);
    const a = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    let t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    m = Math.imul(s1, 5);
    const b = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    m = Math.imul(s1, 5);
    const c = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);

    // Read, and fold into the registers (a shift register with a mixing feedback).
    const readPage = first + ((a >>> 1) % length);
    const word = mem32[readPage * PAGE_WORDS + (b & (PAGE_WORDS - 1))]!;
    const folded = r0 ^ word ^ (steps | 0);
    r0 = r1; r1 = r2; r2 = r3; r3 = r4; r4 = r5; r5 = r6; r6 = r7;
    r7 = (((folded << 13) | (folded >>> 19)) + Math.imul(r3, 0x9e3779b1)) | 0;

    // Write: the whole 64 bytes first, then mark.
    const writePage = sequential ? first + (steps % length) : first + ((c >>> 1) % span);
    const at = writePage * PAGE_WORDS + ((b >>> 10) & 63) * 16;
    const k = Math.imul(steps | 0, 0x85ebca6b);
    mem32[at] = r0 ^ k;
    mem32[at + 1] = r1 ^ k;
    mem32[at + 2] = r2 ^ k;
    mem32[at + 3] = r3 ^ k;
    mem32[at + 4] = r4 ^ k;
    mem32[at + 5] = r5 ^ k;
    mem32[at + 6] = r6 ^ k;
    mem32[at + 7] = r7 ^ k;
    mem32[at + 8] = (r0 + k) | 0;
    mem32[at + 9] = (r1 + k) | 0;
    mem32[at + 10] = (r2 + k) | 0;
    mem32[at + 11] = (r3 + k) | 0;
    mem32[at + 12] = (r4 + k) | 0;
    mem32[at + 13] = (r5 + k) | 0;
    mem32[at + 14] = (r6 + k) | 0;
    mem32[at + 15] = (r7 + k) | 0;
    markDirty(writePage);
    steps++;
  }

  state.steps = steps;
  state.rng[0] = s0 >>> 0;
  state.rng[1] = s1 >>> 0;
  state.rng[2] = s2 >>> 0;
  state.rng[3] = s3 >>> 0;
  regs[0] = r0 >>> 0;
  regs[1] = r1 >>> 0;
  regs[2] = r2 >>> 0;
  regs[3] = r3 >>> 0;
  regs[4] = r4 >>> 0;
  regs[5] = r5 >>> 0;
  regs[6] = r6 >>> 0;
  regs[7] = r7 >>> 0;
}
