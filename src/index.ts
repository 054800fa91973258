/**
 * The public API of livemig. Nothing else is public: `package.json` exports only this module.
 */

export * from './errors.js';
export { PAGE_SIZE_BYTES, type DomainDescriptor, type SourceDomain, type TargetDomain, type TargetBackend } from './domain/backend.js';
export { SimulatedGuest } from './domain/sim/guest.js';
export { encodeSimState, decodeSimState } from './domain/sim/state-codec.js';
export { SimTargetBackend } from './domain/sim/target-backend.js';
export { DEFAULT_SIM_CONFIG, simDescriptor, validateSimConfig, type SimGuestConfig, type Workload } from './domain/sim/config.js';
export { replay, oracleDigest } from './domain/sim/oracle.js';
export type { VcpuState } from './domain/sim/workload.js';
export { DirtyBitmap } from './dirtylog/dirty-bitmap.js';
export { DirtyRateMeter } from './dirtylog/dirty-rate.js';
export { PROTOCOL_VERSION, type MigrationRecord, type PageCodec } from './protocol/records.js';
export { DEFAULT_LIMITS, type ProtocolLimits } from './protocol/limits.js';
export { PageDigest, digestMemory, digestBuffer } from './protocol/page-digest.js';
export type { Transport } from './transport/transport.js';
export {
  connectWebSocket,
  listenWebSocket,
  type WebSocketListener,
  type PemSource,
  type TlsConnectOptions,
  type TlsListenOptions,
} from './transport/ws-transport.js';
export {
  migrate,
  calibrationFor,
  SwitchoverCalibration,
  type CalibrationSample,
  DEFAULT_SWITCHOVER_OVERHEAD_MS,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_SWITCHOVER_TIMEOUT_MS,
  type MigrateOptions,
} from './precopy/migration.js';
export {
  defaultPolicy,
  DEFAULT_DOWNTIME_BUDGET_MS,
  DEFAULT_MAX_ROUNDS,
  DEFAULT_SWITCHOVER,
  MIN_PAUSE_SHRINK_SHARE,
  EXTRA_TIME_SHARE,
  DEADLINE_MARGIN,
  type DefaultPolicyOptions,
  type SwitchoverMode,
  type StopAndCopy,
  type PrecopyPolicy,
  type PrecopyStats,
  type PrecopyDecision,
} from './precopy/policy.js';
export type { SwitchoverReason, MigrationReport, MigrationOutcome, RoundReport, MigrationProgress, MigrationPhase, GuestLocation } from './precopy/report.js';
export { receiveMigration, type IncomingOptions, type IncomingResult } from './precopy/incoming.js';
export {
  TargetAgent,
  DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_RECORD_IDLE_TIMEOUT_MS,
  type TargetAgentOptions,
  type AgentEvent,
  type AgentMigration,
  type AgentStats,
} from './agent/target-agent.js';
export {
  queryAgent,
  connectToAgent,
  authenticateToAgent,
  DEFAULT_AUTH_TIMEOUT_MS,
  type QueryOptions,
  type ConnectToAgentOptions,
  type AuthenticateOptions,
} from './agent/agent-client.js';
export { readKeyFile, writeKeyFile, generateKey } from './agent/key-file.js';
export { MIN_POOL_KEY_BYTES } from './protocol/auth.js';
