/**
 * Every error livemig raises, in one place. Each failure has its own class and a stable `code`
 * string that callers, logs and the wire (abort records) can rely on; messages are for people
 * and may change.
 */

/** Stable error codes. Never renumber or reuse one: they travel in abort records. */
export type MigrationErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_MALFORMED_RECORD'
  | 'ERR_UNEXPECTED_RECORD'
  | 'ERR_UNSUPPORTED_VERSION'
  | 'ERR_LIMIT_EXCEEDED'
  | 'ERR_PAGE_OUT_OF_RANGE'
  | 'ERR_CHECKSUM_MISMATCH'
  | 'ERR_DELTA_BASE_MISMATCH'
  | 'ERR_DIGEST_MISMATCH'
  | 'ERR_CONNECT_FAILED'
  | 'ERR_CONNECTION_CLOSED'
  | 'ERR_TIMEOUT'
  | 'ERR_PEER_ABORTED'
  | 'ERR_DOMAIN_FAILED'
  | 'ERR_UNKNOWN_BACKEND'
  | 'ERR_OUT_OF_MEMORY'
  | 'ERR_POLICY_ABORT'
  | 'ERR_NO_PROGRESS'
  | 'ERR_COMPLETION_TIMEOUT'
  | 'ERR_CANCELLED'
  | 'ERR_INDETERMINATE'
  | 'ERR_AUTH_FAILED'
  | 'ERR_UNSETTLED'
  | 'ERR_HOST_IN_MAINTENANCE'
  | 'ERR_INSUFFICIENT_CAPACITY'
  | 'ERR_NOT_FOUND'
  | 'ERR_CONFLICT'
  | 'ERR_INCOMPATIBLE_DOMAIN';

/** Base class of every error livemig raises on purpose. */
export class MigrationError extends Error {
  readonly code: MigrationErrorCode;

  constructor(code: MigrationErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** A plain object for JSON reports and abort records. */
  toJSON(): { code: MigrationErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** A user-supplied option or CLI value is not acceptable. */
export class InvalidArgumentError extends MigrationError {
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/** A frame could not be decoded, or a record lacks a field or has one of the wrong type. */
export class MalformedRecordError extends MigrationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MALFORMED_RECORD', message, options);
  }
}

/** A well-formed record arrived in a state where it is not legal. */
export class UnexpectedRecordError extends MigrationError {
  constructor(message: string) {
    super('ERR_UNEXPECTED_RECORD', message);
  }
}

/** The peer speaks a protocol version this side does not. */
export class UnsupportedVersionError extends MigrationError {
  constructor(message: string) {
    super('ERR_UNSUPPORTED_VERSION', message);
  }
}

/** A record, payload, allocation or count went past a configured limit. */
export class LimitExceededError extends MigrationError {
  constructor(message: string) {
    super('ERR_LIMIT_EXCEEDED', message);
  }
}

/** A page number lies outside the memory announced in the hello record. */
export class PageOutOfRangeError extends MigrationError {
  constructor(message: string) {
    super('ERR_PAGE_OUT_OF_RANGE', message);
  }
}

/** A page batch's checksum does not match its decompressed contents. */
export class ChecksumMismatchError extends MigrationError {
  constructor(message: string) {
    super('ERR_CHECKSUM_MISMATCH', message);
  }
}

/** A page sent as a delta names a base the receiver does not hold: it lacks the page or holds other contents. */
export class DeltaBaseMismatchError extends MigrationError {
  constructor(message: string) {
    super('ERR_DELTA_BASE_MISMATCH', message);
  }
}

/** The memory digests of source and target differ. */
export class DigestMismatchError extends MigrationError {
  constructor(message: string) {
    super('ERR_DIGEST_MISMATCH', message);
  }
}

/** The connection to the peer could not be opened. */
export class ConnectFailedError extends MigrationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONNECT_FAILED', message, options);
  }
}

/** The connection closed (or was cut) while the migration still needed it. */
export class ConnectionClosedError extends MigrationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONNECTION_CLOSED', message, options);
  }
}

/** The peer did not answer within a deadline. */
export class TimeoutError extends MigrationError {
  constructor(message: string) {
    super('ERR_TIMEOUT', message);
  }
}

/** The peer sent an abort record; `peerCode` is the code it gave. */
export class PeerAbortedError extends MigrationError {
  readonly peerCode: string;

  constructor(peerCode: string, peerMessage: string) {
    super('ERR_PEER_ABORTED', `peer aborted the migration: ${peerCode}: ${peerMessage}`);
    this.peerCode = peerCode;
  }
}

/** The domain backend failed (pause, resume, state save or load, memory access). */
export class DomainFailedError extends MigrationError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DOMAIN_FAILED', message, options);
  }
}

/**
 * QEMU answered a QMP command with an error. `qmpClass` is QEMU's error class (`GenericError`,
 * `CommandNotFound`, `DeviceNotFound`, ...); the code is that of any domain failure.
 */
export class QmpCommandError extends DomainFailedError {
  readonly command: string;
  readonly qmpClass: string;

  constructor(command: string, qmpClass: string, description: string) {
    super(`QEMU refused QMP command "${command}": ${qmpClass}: ${description}`);
    this.command = command;
    this.qmpClass = qmpClass;
  }
}

/** The target has no backend for the domain kind the source announced. */
export class UnknownBackendError extends MigrationError {
  constructor(kind: string, known: readonly string[]) {
    super('ERR_UNKNOWN_BACKEND', `no domain backend for kind "${kind}" on this host (known: ${known.join(', ') || 'none'})`);
  }
}

/**
 * The target cannot run the domain as the source describes it: a hypervisor older than the
 * source's, a machine type or memory layout it does not have, a guest built from other sources.
 * Refused at `hello`, before any page moves.
 */
export class IncompatibleDomainError extends MigrationError {
  constructor(message: string) {
    super('ERR_INCOMPATIBLE_DOMAIN', message);
  }
}

/** The target refuses a domain larger than it may allocate. */
export class OutOfMemoryError extends MigrationError {
  constructor(message: string) {
    super('ERR_OUT_OF_MEMORY', message);
  }
}

/** The pre-copy policy decided to give up. */
export class PolicyAbortError extends MigrationError {
  constructor(message: string) {
    super('ERR_POLICY_ABORT', message);
  }
}

/** Pre-copy stopped getting closer to the end: remaining bytes set no new low for too long. */
export class NoProgressError extends MigrationError {
  constructor(message: string) {
    super('ERR_NO_PROGRESS', message);
  }
}

/** The migration ran past its completion deadline (scaled by guest memory). */
export class CompletionTimeoutError extends MigrationError {
  constructor(message: string) {
    super('ERR_COMPLETION_TIMEOUT', message);
  }
}

/** The caller cancelled the migration. */
export class CancelledError extends MigrationError {
  constructor(message = 'migration cancelled') {
    super('ERR_CANCELLED', message);
  }
}

/**
 * The peer could not prove it holds the pool key, or this side could not prove it: a wrong
 * key, a key on one side only, a replayed or reflected exchange.
 */
export class AuthFailedError extends MigrationError {
  constructor(message: string) {
    super('ERR_AUTH_FAILED', message);
  }
}

/**
 * The process ran out of work while a migration still waited: something it awaited could never
 * settle (a bug). The migration ends by the usual rules rather than with the process.
 */
export class UnsettledError extends MigrationError {
  constructor(message: string) {
    super('ERR_UNSETTLED', message);
  }
}

/** The host is in maintenance: it takes no new guests and no incoming migrations. */
export class HostInMaintenanceError extends MigrationError {
  constructor(message: string) {
    super('ERR_HOST_IN_MAINTENANCE', message);
  }
}

/** The host cannot hold the guest: its free memory, after reservations, is too small. */
export class InsufficientCapacityError extends MigrationError {
  constructor(message: string) {
    super('ERR_INSUFFICIENT_CAPACITY', message);
  }
}

/** No guest, migration, evacuation or host by that id or name. */
export class NotFoundError extends MigrationError {
  constructor(message: string) {
    super('ERR_NOT_FOUND', message);
  }
}

/**
 * The request conflicts with what the host is doing: a guest already migrating, a second
 * evacuation of the same host, a guest id already in use.
 */
export class ConflictError extends MigrationError {
  constructor(message: string) {
    super('ERR_CONFLICT', message);
  }
}

/** Wraps anything thrown into a MigrationError, keeping livemig's own errors as they are. */
export function asMigrationError(err: unknown, fallback: MigrationErrorCode = 'ERR_DOMAIN_FAILED'): MigrationError {
  if (err instanceof MigrationError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new MigrationError(fallback, message, { cause: err });
}
