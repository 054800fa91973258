/**
 * Shape and behaviour of a simulated guest. The whole configuration travels in the hello record
 * (`DomainDescriptor.config`), and the target rebuilds the same guest from it, so every field is
 * plain data and the target validates it as untrusted input.
 */

import { InvalidArgumentError } from '../../errors.js';
import { PAGE_SIZE_BYTES, type DomainDescriptor } from '../../protocol/records.js';

/**
 * How the vCPUs choose the page each step writes:
 * - `idle`: one of the first 16 pages of the vCPU's memory, 10 steps a second;
 * - `uniform`: any page of the vCPU's memory, equally likely;
 * - `hotset`: a page of a small hot set (`hotSetBytes` over all vCPUs);
 * - `sequential`: every page in turn, wrapping around.
 */
export type Workload = 'idle' | 'uniform' | 'hotset' | 'sequential';

/** The workloads, in the order the CLI lists them. */
export const WORKLOADS: readonly Workload[] = Object.freeze(['idle', 'uniform', 'hotset', 'sequential']);

/** Everything that determines a simulated guest. */
export interface SimGuestConfig {
  /** Guest memory in bytes; a multiple of 4096. */
  memoryBytes: number;
  /** Number of vCPUs, each a worker thread owning an equal share of the memory. */
  vcpus: number;
  /** How vCPUs pick the pages they write. */
  workload: Workload;
  /**
   * Target dirty rate of the whole guest, in bytes per second (one step dirties one page). Each
   * vCPU paces itself to `dirtyRateBytesPerSec / 4096 / vcpus` steps per second. Ignored by
   * `idle`, which runs 10 steps a second per vCPU.
   */
  dirtyRateBytesPerSec: number;
  /** Size of the `hotset` workload's hot set across all vCPUs, in bytes. */
  hotSetBytes: number;
  /** Seed of the initial memory image and of every vCPU's random number generator; a u32. */
  seed: number;
}

/** Largest simulated guest, in bytes. */
export const MAX_SIM_MEMORY_BYTES = 64 * 1024 * 1024 * 1024;

/** Most vCPUs of a simulated guest. */
export const MAX_SIM_VCPUS = 64;

/** Fewest pages each vCPU must own (the `idle` workload writes among 16). */
export const MIN_SIM_PAGES_PER_VCPU = 16;

/** Steps per second of each vCPU under the `idle` workload, whatever the configured rate. */
export const IDLE_STEPS_PER_SECOND = 10;

/** Name given to a simulated domain when none is chosen. */
export const DEFAULT_SIM_NAME = 'sim-guest';

/**
 * A 1 GiB single-vCPU guest dirtying 100 MB/s uniformly, with a 64 MiB hot set should the
 * workload be switched to `hotset`, and seed 1.
 */
export const DEFAULT_SIM_CONFIG: Readonly<SimGuestConfig> = Object.freeze({
  memoryBytes: 1024 * 1024 * 1024,
  vcpus: 1,
  workload: 'uniform',
  dirtyRateBytesPerSec: 100 * 1000 * 1000,
  hotSetBytes: 64 * 1024 * 1024,
  seed: 1,
});

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/**
 * Checks a configuration and returns it. Throws InvalidArgumentError naming the first field
 * that is wrong, what it should be, and what was given.
 */
export function validateSimConfig(config: SimGuestConfig): SimGuestConfig {
  const { memoryBytes, vcpus, workload, dirtyRateBytesPerSec, hotSetBytes, seed } = config;
  if (!(Number.isSafeInteger(memoryBytes) && memoryBytes > 0 && memoryBytes % PAGE_SIZE_BYTES === 0)) {
    throw new InvalidArgumentError(
      `memoryBytes must be a positive multiple of ${PAGE_SIZE_BYTES} bytes, got ${describe(memoryBytes)}`,
    );
  }
  if (memoryBytes > MAX_SIM_MEMORY_BYTES) {
    throw new InvalidArgumentError(
      `memoryBytes of ${memoryBytes} exceeds the simulated guest's maximum of ${MAX_SIM_MEMORY_BYTES} (64 GiB)`,
    );
  }
  if (!(Number.isInteger(vcpus) && vcpus >= 1 && vcpus <= MAX_SIM_VCPUS)) {
    throw new InvalidArgumentError(`vcpus must be an integer from 1 to ${MAX_SIM_VCPUS}, got ${describe(vcpus)}`);
  }
  const pageCount = memoryBytes / PAGE_SIZE_BYTES;
  if (pageCount < vcpus * MIN_SIM_PAGES_PER_VCPU) {
    throw new InvalidArgumentError(
      `${vcpus} vCPUs need at least ${vcpus * MIN_SIM_PAGES_PER_VCPU * PAGE_SIZE_BYTES} bytes of memory ` +
        `(${MIN_SIM_PAGES_PER_VCPU} pages each), got ${memoryBytes}; give more memory or fewer vCPUs`,
    );
  }
  if (typeof workload !== 'string' || !(WORKLOADS as readonly string[]).includes(workload)) {
    throw new InvalidArgumentError(`workload must be one of ${WORKLOADS.join(', ')}, got ${describe(workload)}`);
  }
  if (!(typeof dirtyRateBytesPerSec === 'number' && Number.isFinite(dirtyRateBytesPerSec) && dirtyRateBytesPerSec >= 0)) {
    throw new InvalidArgumentError(
      `dirtyRateBytesPerSec must be a finite number of bytes per second, 0 or more, got ${describe(dirtyRateBytesPerSec)}`,
    );
  }
  if (!(Number.isSafeInteger(hotSetBytes) && hotSetBytes >= 0)) {
    throw new InvalidArgumentError(`hotSetBytes must be a whole number of bytes, 0 or more, got ${describe(hotSetBytes)}`);
  }
  if (hotSetBytes > memoryBytes) {
    throw new InvalidArgumentError(
      `hotSetBytes (${hotSetBytes}) must not exceed memoryBytes (${memoryBytes}); choose a smaller hot set`,
    );
  }
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) {
    throw new InvalidArgumentError(`seed must be an integer from 0 to ${0xffffffff}, got ${describe(seed)}`);
  }
  return config;
}

/** The plain configuration fields, copied, so no extra property of the input travels on. */
function plainConfig(config: SimGuestConfig): SimGuestConfig {
  return {
    memoryBytes: config.memoryBytes,
    vcpus: config.vcpus,
    workload: config.workload,
    dirtyRateBytesPerSec: config.dirtyRateBytesPerSec,
    hotSetBytes: config.hotSetBytes,
    seed: config.seed,
  };
}

/** The descriptor of a simulated guest, as sent in the hello record. Validates `config`. */
export function simDescriptor(config: SimGuestConfig, name: string = DEFAULT_SIM_NAME): DomainDescriptor {
  validateSimConfig(config);
  return {
    kind: 'sim',
    name,
    memoryBytes: config.memoryBytes,
    pageSize: PAGE_SIZE_BYTES,
    vcpus: config.vcpus,
    config: { ...plainConfig(config) },
  };
}

/**
 * The configuration inside a descriptor received from a peer. Checks every field's type and
 * range, and that the descriptor's own shape agrees with it; unknown extra fields are ignored.
 * Throws InvalidArgumentError on anything else.
 */
export function simConfigFromDescriptor(descriptor: DomainDescriptor): SimGuestConfig {
  if (typeof descriptor !== 'object' || descriptor === null) {
    throw new InvalidArgumentError(`domain descriptor must be an object, got ${describe(descriptor)}`);
  }
  if (descriptor.kind !== 'sim') {
    throw new InvalidArgumentError(`domain kind must be "sim" for a simulated guest, got ${describe(descriptor.kind)}`);
  }
  if (descriptor.pageSize !== PAGE_SIZE_BYTES) {
    throw new InvalidArgumentError(`page size must be ${PAGE_SIZE_BYTES}, got ${describe(descriptor.pageSize)}`);
  }
  const raw: unknown = descriptor.config;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidArgumentError(`simulated guest config must be an object, got ${describe(raw)}`);
  }
  const fields = raw as Record<string, unknown>;
  const field = (key: keyof SimGuestConfig): unknown => (Object.hasOwn(fields, key) ? fields[key] : undefined);
  const numberField = (key: keyof SimGuestConfig): number => {
    const value = field(key);
    if (typeof value !== 'number') {
      throw new InvalidArgumentError(`simulated guest config field "${key}" must be a number, got ${describe(value)}`);
    }
    return value;
  };
  const workload = field('workload');
  if (typeof workload !== 'string') {
    throw new InvalidArgumentError(`simulated guest config field "workload" must be a string, got ${describe(workload)}`);
  }
  const config = validateSimConfig({
    memoryBytes: numberField('memoryBytes'),
    vcpus: numberField('vcpus'),
    workload: workload as Workload,
    dirtyRateBytesPerSec: numberField('dirtyRateBytesPerSec'),
    hotSetBytes: numberField('hotSetBytes'),
    seed: numberField('seed'),
  });
  if (descriptor.memoryBytes !== config.memoryBytes) {
    throw new InvalidArgumentError(
      `descriptor announces ${describe(descriptor.memoryBytes)} bytes of memory but its config says ${config.memoryBytes}`,
    );
  }
  if (descriptor.vcpus !== config.vcpus) {
    throw new InvalidArgumentError(
      `descriptor announces ${describe(descriptor.vcpus)} vCPUs but its config says ${config.vcpus}`,
    );
  }
  return config;
}
