/**
 * What a target agent can be told, and the defaults of its limits. `TargetAgent.start` checks
 * them; a listening agent needs `key` (or `insecure`) anywhere but on a loopback address.
 */

import { isIP } from 'node:net';
import type { TargetBackend } from '../domain/backend.js';
import { InvalidArgumentError } from '../errors.js';
import type { ProtocolLimits } from '../protocol/limits.js';
import type { HelloRecord } from '../protocol/records.js';
import type { TlsListenOptions } from '../transport/tls.js';
import type { HttpRequestHandler } from '../transport/ws-listener.js';
import type { Admission } from './admission.js';

export type { Admission } from './admission.js';

/** Incoming migrations one agent receives at once, at most. */
export const DEFAULT_MAX_CONCURRENT_MIGRATIONS = 4;

/**
 * Connections that may be authenticating (or, on an agent without a key, not yet have sent their
 * `hello` or `query`) at once. Kept below `DEFAULT_MAX_CONNECTIONS`, so that peers who never
 * authenticate cannot take every connection and shut the pool out.
 */
export const DEFAULT_MAX_PENDING_HANDSHAKES = 8;

/**
 * Time a connection has, from being accepted, to authenticate and send its `hello` or `query`,
 * in milliseconds.
 */
export const DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Longest wait for the next record of a migration in progress, in milliseconds. The WebSocket
 * idle timeout is kept alive by pings alone; this one is not, so a source that holds a domain
 * allocated here and sends nothing is dropped.
 */
export const DEFAULT_RECORD_IDLE_TIMEOUT_MS = 60_000;

/**
 * How long an agent remembers what became of a discarded migration, in milliseconds: long enough
 * for a source whose link failed after "go" to ask (it keeps asking for DEFAULT_RESOLVE_TIMEOUT_MS).
 */
export const DEFAULT_OUTCOME_MEMORY_MS = 10 * 60 * 1000;

/** Options of `TargetAgent.start`. */
export interface TargetAgentOptions {
  /**
   * Address to listen on. Anything but a loopback address (127.0.0.0/8, ::1, `localhost`) needs
   * `key`, or `insecure`.
   * @default '127.0.0.1'
   */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /**
   * The domain backends this agent receives guests into, one per `DomainDescriptor.kind`. A
   * migration whose kind has none here is refused with ERR_UNKNOWN_BACKEND, naming the kinds
   * there are. Giving this list replaces the default: a host that runs real guests lists its own
   * backend, and the simulator beside it only if it should take simulated guests too.
   * @default [new SimTargetBackend({ maxMemoryBytes: limits.maxGuestMemoryBytes })], the
   *   simulated guest only (what `livemig listen` serves)
   */
  backends?: TargetBackend[];
  /**
   * Asked about every `hello`, after authentication and the agent's own checks and before a
   * backend allocates anything: throw a MigrationError to refuse the migration with its code
   * (a host in maintenance, a guest it cannot hold), or return an {@link Admission} to hear how
   * it ends (to release a reservation on every path, say).
   * @default every migration within the limits is admitted
   */
  admit?: (hello: HelloRecord, from: string) => Admission | void;
  /**
   * Serves the plain HTTP requests that reach the agent's port (a control API beside the
   * migrations), within the listener's connection limits and deadlines.
   * @default they are answered 426 Upgrade Required
   */
  onHttpRequest?: HttpRequestHandler;
  /** Limits on what sources may send and allocate. */
  limits?: Partial<ProtocolLimits>;
  /**
   * The pool key, at least 32 random bytes (see `readKeyFile`). With it, every connection must
   * prove it holds the same key before the agent reads anything else, and the agent proves it in
   * return; a peer that cannot is refused with ERR_AUTH_FAILED.
   * @default no key: any peer that can reach the agent is served
   */
  key?: Uint8Array;
  /** Serve `wss://` with this certificate and private key. @default plain `ws://` */
  tls?: TlsListenOptions;
  /**
   * Allow listening on a non-loopback address without `key`, which lets anyone who can reach the
   * port send this host guests and inspect the guests running here. For trusted, isolated
   * networks only.
   * @default false
   */
  insecure?: boolean;
  /** @default DEFAULT_MAX_CONCURRENT_MIGRATIONS */
  maxConcurrentMigrations?: number;
  /**
   * How long a discarded migration is remembered, in milliseconds: until then a query about it
   * answers `discarded`, after it `unknown`. Infinity, or anything beyond 2^31-1 ms (about 24.8
   * days), remembers it for as long as the agent runs.
   * @default DEFAULT_OUTCOME_MEMORY_MS (10 min)
   */
  outcomeMemoryMs?: number;
  /**
   * Connections open at once; beyond it the WebSocket upgrade is refused with HTTP 503.
   * @default DEFAULT_MAX_CONNECTIONS (16)
   */
  maxConnections?: number;
  /**
   * Connections still authenticating at once; beyond it a new one is refused with
   * ERR_LIMIT_EXCEEDED.
   * @default DEFAULT_MAX_PENDING_HANDSHAKES (8)
   */
  maxPendingHandshakes?: number;
  /**
   * Time a connection has to authenticate and send its `hello` or `query`, in milliseconds;
   * beyond it, ERR_TIMEOUT. Also bounds the TLS handshake and HTTP upgrade before it. Infinity,
   * or anything beyond 2^31-1 ms (about 24.8 days), is no deadline.
   * @default DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS (10 s)
   */
  handshakeTimeoutMs?: number;
  /**
   * Bytes a connection may send before its `hello` or `query` has been read, counted on the wire
   * as they arrive; beyond it the connection is closed with code 1009 (ERR_LIMIT_EXCEEDED). Keeps
   * peers that have not authenticated from making the agent buffer whole frames of
   * `maxFrameBytes`. At least `limits.maxHeaderBytes` plus 1 KiB, so that any legal hello fits.
   * @default twice `limits.maxHeaderBytes` (1 MiB with the default limits)
   */
  maxHandshakeBytes?: number;
  /**
   * Longest wait for the next record of a migration in progress, in milliseconds; beyond it,
   * ERR_TIMEOUT and the copy here is discarded. Infinity, or anything beyond 2^31-1 ms
   * (about 24.8 days), is no deadline.
   * @default DEFAULT_RECORD_IDLE_TIMEOUT_MS (60 s)
   */
  recordIdleTimeoutMs?: number;
  /**
   * A connection silent this long (no frame, ping or pong) is dropped, in milliseconds. 0 or
   * Infinity turns this off.
   * @default DEFAULT_IDLE_TIMEOUT_MS (30 s)
   */
  idleTimeoutMs?: number;
  /**
   * How long a prepared migration waits for "go" before discarding, in milliseconds. Infinity, or
   * anything beyond 2^31-1 ms (about 24.8 days), is no deadline.
   * @default DEFAULT_GO_TIMEOUT_MS
   */
  goTimeoutMs?: number;
}

/** True for literal loopback addresses (127.0.0.0/8, ::1, IPv4-mapped 127/8) and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const lower = bare.toLowerCase();
  if (lower === 'localhost') return true;
  const family = isIP(bare);
  if (family === 4) return bare.startsWith('127.');
  if (family === 6) return lower === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(lower) || /^::ffff:127\./.test(lower);
  return false;
}

/** `value`, checked to be a positive safe integer. */
export function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return value;
}
