/**
 * The public API of livemig. Nothing else is public: `package.json` exports only this module.
 * Every option type is here by name, and so is every constant an option names as its default.
 */

export * from './errors.js';
export type { SourceDomain, TargetDomain, TargetBackend, DirtyTracking } from './domain/backend.js';
export type { GuestMemory, PageRunReader } from './util/guest-memory-types.js';
export { openGuestMemory, type GuestMemoryAccess, type OpenGuestMemoryOptions } from './domain/guest-memory.js';
export { SimulatedGuest } from './domain/sim/guest.js';
export { encodeSimState, decodeSimState } from './domain/sim/state-codec.js';
export { SimTargetBackend, type SimTargetBackendOptions } from './domain/sim/target-backend.js';
export { DEFAULT_SIM_CONFIG, WORKLOADS, simDescriptor, validateSimConfig, type SimGuestConfig, type Workload } from './domain/sim/config.js';
export { replay, oracleDigest } from './domain/sim/oracle.js';
export type { VcpuState } from './domain/sim/workload.js';
export { QemuProcess, findQemuBinary, queryQemuIdentity, DEFAULT_QEMU_START_TIMEOUT_MS, QEMU_BINARY, type QemuGuestDefinition, type QemuStartOptions, type QemuIdentity } from './domain/qemu/qemu-process.js';
export { QemuSourceDomain, type QemuSourceOptions } from './domain/qemu/source-domain.js';
export { QemuTargetBackend, QemuTargetDomain, DEFAULT_QEMU_GUEST_DIR, type QemuTargetBackendOptions } from './domain/qemu/target-backend.js';
export { DEFAULT_QEMU_STATE_TIMEOUT_MS, MAX_QEMU_STATE_BYTES } from './domain/qemu/device-state.js';
export { QEMU_KIND, type QemuDomainConfig, type QemuKernelRef } from './domain/qemu/qemu-config.js';
export { buildTestGuest, testGuestSourceHash, testGuestAppend, readTestGuestLog, type TestGuestOptions, type TestGuestLine } from './domain/qemu/test-guest.js';
export type { WriteProtectStatus } from './domain/qemu/write-protect-preload.js';
export { DirtyBitmap } from './dirtylog/dirty-bitmap.js';
export { HashScanner, SCAN_RUN_PAGES } from './dirtylog/hash-scan.js';
export { DirtyRateMeter, DEFAULT_DIRTY_RATE_HALF_LIFE_MS, type DirtyRateMeterOptions } from './dirtylog/dirty-rate.js';
export { CHANNELS_DELTA_PROTOCOL_VERSION, CHANNELS_PROTOCOL_VERSION, DELTA_PROTOCOL_VERSION, PROTOCOL_VERSION, type DomainDescriptor, type MigrationRecord, type StatusRecord } from './protocol/records.js';
export { PAGE_SIZE_BYTES } from './protocol/page-size.js';
export type { PageCodec } from './protocol/page-codecs.js';
export {
  DEFAULT_LIMITS,
  DEFAULT_MAX_CHANNELS,
  DEFAULT_MAX_DATA_PAGES_PER_BATCH,
  DEFAULT_MAX_DEVICE_STATE_BYTES,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_GUEST_MEMORY_BYTES,
  DEFAULT_MAX_HEADER_BYTES,
  DEFAULT_MAX_VCPUS,
  DEFAULT_MAX_ZERO_PAGES_PER_BATCH,
  type ProtocolLimits,
} from './protocol/limits.js';
export type { ReceiverState } from './protocol/receiver-state.js';
export { PageDigest, digestMemory, digestBuffer, DIGEST_CHUNK_PAGES, type ReadPages } from './protocol/page-digest.js';
export { DEFAULT_CLOSE_TIMEOUT_MS, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_FRAMES, type FrameLanding, type Transport } from './transport/transport.js';
export type { WebSocketTransport } from './transport/ws-transport.js';
export { DEFAULT_IDLE_TIMEOUT_MS, type WebSocketTransportOptions } from './transport/ws-options.js';
export { connectWebSocket, DEFAULT_CONNECT_TIMEOUT_MS, type ConnectWebSocketOptions } from './transport/ws-connect.js';
export {
  listenWebSocket,
  DEFAULT_LISTEN_HOST,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_UPGRADE_TIMEOUT_MS,
  type ListenWebSocketOptions,
  type WebSocketListener,
  type RemoteInfo,
} from './transport/ws-listener.js';
export type { PemSource, TlsConnectOptions, TlsListenOptions } from './transport/tls.js';
export { MemoryTransport, createMemoryTransportPair, type MemoryTransportOptions } from './transport/memory-transport.js';
export { migrate } from './precopy/migration.js';
export {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_SWITCHOVER_TIMEOUT_MS,
  DEFAULT_RESOLVE_TIMEOUT_MS,
  DEFAULT_PROGRESS_INTERVAL_MS,
  type MigrateOptions,
} from './precopy/migrate-options.js';
export {
  SwitchoverCalibration,
  calibrationsByCodec,
  DEFAULT_SWITCHOVER_OVERHEAD_MS,
  type CalibrationSample,
} from './precopy/switchover-calibration.js';
export { SwitchoverGate, GATE_RECHECK_MS } from './precopy/switchover-gate.js';
export { DEFAULT_DATA_PAGES_PER_BATCH, DEFAULT_MAX_IN_FLIGHT_BATCHES } from './precopy/page-sender.js';
export { DEFAULT_AUTO_CONVERGE, type AutoConvergeMode } from './precopy/auto-converge.js';
export { AUTO_CODEC_MARGIN, AUTO_CODEC_PROBE_INTERVAL, CODEC_CHOICES, DEFAULT_CODEC, type CodecChoice } from './precopy/codec-choice.js';
export { DEFAULT_DELTA_MODE, DELTA_MODES, type DeltaMode, type DeltaOffReason } from './precopy/delta-plan.js';
export {
  DEFAULT_COMPLETION_TIMEOUT_MS_PER_GIB,
  DEFAULT_STALL_TIMEOUT_MS,
  DEFAULT_TIMEOUT_ACTION,
  type TimeoutAction,
} from './precopy/progress-watchdog.js';
export {
  defaultPolicy,
  DEFAULT_DOWNTIME_BUDGET_MS,
  DEFAULT_MAX_ROUNDS,
  DEFAULT_BUDGET_HEADROOM,
  ESTIMATE_MAX_ROUNDS,
  DEFAULT_SWITCHOVER,
  MIN_PAUSE_SHRINK_SHARE,
  EXTRA_PAUSE_MULTIPLE,
  EXTRA_TIME_SHARE,
  DEADLINE_MARGIN,
  FLOOR_OVER_BUDGET_ROUNDS,
  FLOOR_OVER_BUDGET_MS,
  type DefaultPolicyOptions,
  type DowntimeRamp,
  type SwitchoverMode,
  type StopAndCopy,
  type NoPauseFits,
  type PrecopyPolicy,
  type PrecopyStats,
  type PrecopyDecision,
} from './precopy/policy.js';
export { DEFAULT_SOURCE_MEMORY_SHARE } from './precopy/source-memory.js';
export type { SourceMemoryReport, SourceMemoryPart } from './precopy/source-memory.js';
export type { SwitchoverReason, MigrationReport, MigrationOutcome, RoundReport, MigrationProgress, MigrationPhase, GuestLocation } from './precopy/report.js';
export {
  acceptMigration,
  receiveMigration,
  DEFAULT_GO_TIMEOUT_MS,
  type IncomingOptions,
  type IncomingResult,
} from './precopy/incoming.js';
export {
  estimateMigration,
  DEFAULT_SAMPLE_MS,
  DEFAULT_ASSUMED_LATENCY_MS,
  type EstimateOptions,
  type MigrationEstimate,
  type EstimatedRound,
} from './precopy/preflight.js';
export { TargetAgent } from './agent/target-agent.js';
export { warmUp, WARM_UP_MIGRATIONS, WARM_UP_MEMORY_BYTES, WARM_UP_TIMEOUT_MS, type WarmUpOptions, type WarmUpReport } from './agent/warm-up.js';
export type { AgentEvent, AgentMigration, AgentStats } from './agent/agent-types.js';
export {
  DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENT_MIGRATIONS,
  DEFAULT_OUTCOME_MEMORY_MS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_RECORD_IDLE_TIMEOUT_MS,
  type TargetAgentOptions,
} from './agent/agent-options.js';
export type { Admission } from './agent/admission.js';
export { HostAgent } from './agent/host-agent.js';
export {
  DEFAULT_MIGRATION_HISTORY,
  type HostAgentOptions,
  type EvacuateHook,
  type EvacuationStatusHook,
  type EvacuationCancelHook,
} from './agent/host-options.js';
export { launchSimGuest, type GuestAdopter, type GuestLauncher, type LaunchedGuest } from './agent/guest-launcher.js';
export { adoptQemuGuest, qemuGuestLauncher, MIN_QEMU_GUEST_MEMORY_MIB, type QemuLauncherOptions } from './agent/qemu-guest-launcher.js';
export { GuestRegistry, type HostGuest } from './agent/guest-registry.js';
export { MIGRATION_CHANNEL, type MigrationEvent } from './agent/host-metrics.js';
export { LINK_HISTORY } from './agent/pause-estimator.js';
export { ControlClient, DEFAULT_CONTROL_TIMEOUT_MS, DEFAULT_POLL_INTERVAL_MS, type ControlClientOptions } from './agent/control-client.js';
export { DEFAULT_MAX_CONTROL_BODY_BYTES } from './agent/control-server.js';
export { DEFAULT_CONTROL_CLOCK_SKEW_MS, metricsToken } from './agent/control-auth.js';
export type * from './agent/control-types.js';
export {
  queryAgent,
  connectToAgent,
  authenticateToAgent,
  DEFAULT_AUTH_TIMEOUT_MS,
  DEFAULT_QUERY_TIMEOUT_MS,
  type QueryOptions,
  type ConnectToAgentOptions,
  type AuthenticateOptions,
} from './agent/agent-client.js';
export { readKeyFile, writeKeyFile, generateKey } from './agent/key-file.js';
export { MIN_POOL_KEY_BYTES } from './protocol/auth.js';
export { evacuate, planHostEvacuation } from './pool/evacuation.js';
export { planEvacuation, byEvacuationOrder, type PlanInput } from './pool/evacuation-plan.js';
export { BUSY_PAUSE_SHARE } from './pool/evacuation-order.js';
export {
  DEFAULT_EVACUATION_PARALLEL,
  DEFAULT_EVACUATION_PER_TARGET,
  DEFAULT_EVACUATION_POLL_INTERVAL_MS,
  DEFAULT_MAX_POLL_FAILURES,
  DEFAULT_POOL_CALL_TIMEOUT_MS,
  EVACUATION_ATTEMPTS_PER_GUEST,
  type EvacuateOptions,
} from './pool/evacuation-options.js';
export { EvacuationLedger, LEDGER_VERSION, type LedgerFile, type LedgerMigration } from './pool/evacuation-ledger.js';
export { ControlPoolHosts, DEFAULT_POOL_STATUS_TIMEOUT_MS, type ControlPoolHostsOptions } from './pool/control-pool-hosts.js';
export { HostEvacuations, DEFAULT_PLAN_WAIT_MS, EVACUATION_HISTORY, type EvacuatedHost, type HostEvacuationsOptions } from './pool/host-evacuations.js';
export { FilePoolStore, type PoolMember, type PoolStore } from './pool/pool-store.js';
export type { PoolHosts } from './pool/pool-hosts.js';
export type { EvacuationEvent, EvacuationPlan, EvacuationReport, PlanEntry, PlanTarget } from './pool/pool-types.js';
