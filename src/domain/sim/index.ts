/** The simulated guest backend: the pieces the engine, the CLI and tests use. */

export {
  DEFAULT_SIM_CONFIG,
  DEFAULT_SIM_NAME,
  IDLE_STEPS_PER_SECOND,
  MAX_SIM_MEMORY_BYTES,
  MAX_SIM_VCPUS,
  MIN_SIM_PAGES_PER_VCPU,
  WORKLOADS,
  simConfigFromDescriptor,
  simDescriptor,
  validateSimConfig,
  type SimGuestConfig,
  type Workload,
} from './config.js';
export { fillImage, fillPage, pageKind, type PageKind } from './image.js';
export {
  IDLE_PAGES,
  STEP_WRITE_BYTES,
  VCPU_REGISTERS,
  cloneVcpuState,
  initialVcpuState,
  runSteps,
  vcpuPartition,
  vcpuStepsPerSecond,
  workloadParams,
  type VcpuPartition,
  type VcpuState,
  type WorkloadParams,
} from './workload.js';
export { MAX_SIM_STATE_BYTES, SIM_STATE_VERSION, decodeSimState, encodeSimState } from './state-codec.js';
export { MAX_SIM_THROTTLE, SimulatedGuest } from './guest.js';
export { SimTargetBackend, type SimTargetBackendOptions } from './target-backend.js';
export { PREFAULT_MIN_MEMORY_BYTES, Prefault } from './prefault.js';
export { oracleDigest, replay, type OracleDigest, type ReplayResult } from './oracle.js';
