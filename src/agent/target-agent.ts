/**
 * A target agent: the process on a host that accepts incoming migrations, runs the guests it
 * received, and answers questions about them. One WebSocket listener (`ws://`, or `wss://` with
 * a certificate). An agent that holds the pool key first makes every connection prove it holds
 * the key too, and proves itself in return (docs/protocol.md, "Authentication"); only then does
 * it read the record that says what the peer wants (`hello` to migrate in, `query` to ask), and
 * only after that does it allocate anything.
 *
 * Every connection is held to limits: how many are open, how many are still authenticating, how
 * long and how many bytes it may take to say what it wants, how long a migration may go without
 * a record. A peer that breaks one gets an abort with a code (or, past a byte limit, a WebSocket
 * close with code 1009) and is disconnected; the others are not affected.
 */

import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { TargetBackend, TargetDomain } from '../domain/backend.js';
import { SimTargetBackend } from '../domain/sim/target-backend.js';
import {
  asMigrationError,
  AuthFailedError,
  ConnectionClosedError,
  InvalidArgumentError,
  LimitExceededError,
  type MigrationError,
  PeerAbortedError,
  TimeoutError,
  UnexpectedRecordError,
} from '../errors.js';
import { authProof, checkPoolKey, newAuthNonce, verifyAuthProof } from '../protocol/auth.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import { resolveLimits, type ProtocolLimits } from '../protocol/limits.js';
import { digestMemory } from '../protocol/page-digest.js';
import { initialReceiverState, receiverTransition } from '../protocol/receiver-state.js';
import type { HelloRecord, QueryRecord, StatusRecord } from '../protocol/records.js';
import { abortPeer } from '../precopy/abort-peer.js';
import { receiveMigration, type IncomingResult } from '../precopy/incoming.js';
import { DeadlineTransport } from '../transport/deadline-transport.js';
import type { TlsListenOptions } from '../transport/tls.js';
import type { Transport } from '../transport/transport.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../transport/ws-options.js';
import { DEFAULT_MAX_CONNECTIONS, listenWebSocket, type WebSocketListener } from '../transport/ws-listener.js';
import type { WebSocketTransport } from '../transport/ws-transport.js';
import { checkTimeoutMs, withDeadline } from '../util/deadline.js';

/** Incoming migrations one agent receives at once, at most. */
export const DEFAULT_MAX_CONCURRENT_MIGRATIONS = 4;

/** How long an agent remembers what became of a discarded migration, in milliseconds. */
export const DEFAULT_OUTCOME_MEMORY_MS = 10 * 60 * 1000;

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
 * How long `close()` waits for connections still being served to settle, in milliseconds. Closing
 * the listener ends their links, but a backend call under way (a guest resuming after "go") runs
 * to its end; a guest it starts later is destroyed as soon as it runs.
 */
const CLOSE_SERVE_GRACE_MS = 5_000;

/** Options of {@link TargetAgent.start}. */
export interface TargetAgentOptions {
  /**
   * Address to listen on. Anything but a loopback address (127.0.0.0/8, ::1, `localhost`) needs
   * `key`, or `insecure`.
   * @default '127.0.0.1'
   */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /** Domain backends. @default [new SimTargetBackend()] */
  backends?: TargetBackend[];
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

/** Counters of an agent's connections, for monitoring and tests. */
export interface AgentStats {
  /** WebSocket connections open now. */
  connections: number;
  /** Upgrade requests refused so far because `maxConnections` were open (HTTP 503). */
  refusedAtConnectionLimit: number;
  /** Connections that have not yet authenticated and sent their `hello` or `query`. */
  pendingHandshakes: number;
  /** The most connections pending at once so far. */
  peakPendingHandshakes: number;
  /** Connections refused so far once open (each also a `connection-refused` event). */
  refusedConnections: number;
  /** Of those, the ones that could not prove the pool key. */
  authFailures: number;
  /** Migrations being received now. */
  activeMigrations: number;
}

/** What the agent knows about one migration. */
export interface AgentMigration {
  migrationId: string;
  state: StatusRecord['state'];
  domainName: string;
  memoryBytes: number;
  startedAt: string;
  endedAt?: string;
  error?: { code: string; message: string };
  /** The running guest, once resumed. */
  domain?: TargetDomain;
}

/** Events an agent emits, as `agent.on('event', e => ...)`. */
export type AgentEvent =
  | { type: 'migration-started'; migrationId: string; domainName: string; memoryBytes: number; from: string }
  | { type: 'migration-resumed'; migrationId: string; pages: number; bytesWire: number; digest?: string }
  | { type: 'migration-discarded'; migrationId: string; error?: { code: string; message: string } }
  | { type: 'connection-refused'; from: string; error: { code: string; message: string } };

/** A listening target agent. */
export class TargetAgent extends EventEmitter {
  /** Migrations by id: running ones, and discarded ones for a while. */
  readonly migrations = new Map<string, AgentMigration>();
  private readonly backends: Map<string, TargetBackend>;
  /** Per guest, the last inspection queued: each waits for the one before it. */
  private readonly inspections = new WeakMap<TargetDomain, Promise<unknown>>();
  private readonly limits: ProtocolLimits;
  private readonly maxConcurrent: number;
  private readonly goTimeoutMs: number | undefined;
  private readonly key: Uint8Array | undefined;
  private readonly maxConnections: number;
  private readonly maxPendingHandshakes: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxHandshakeBytes: number;
  private readonly recordIdleTimeoutMs: number;
  private listener: WebSocketListener | undefined;
  private active = 0;
  private pending = 0;
  private peakPending = 0;
  private refused = 0;
  private authFailures = 0;
  /** Connections being served now; `close()` waits for them. */
  private readonly serving = new Set<Promise<void>>();
  /** Set by `close()`: a guest that starts running from then on is destroyed at once. */
  private closing = false;

  private constructor(options: TargetAgentOptions) {
    super();
    this.backends = new Map((options.backends ?? [new SimTargetBackend({ maxMemoryBytes: options.limits?.maxGuestMemoryBytes })]).map((b) => [b.kind, b]));
    this.limits = resolveLimits(options.limits);
    this.maxConcurrent = positiveInteger('maxConcurrentMigrations', options.maxConcurrentMigrations ?? DEFAULT_MAX_CONCURRENT_MIGRATIONS);
    this.goTimeoutMs = options.goTimeoutMs === undefined ? undefined : checkTimeoutMs('goTimeoutMs', options.goTimeoutMs);
    this.key = options.key === undefined ? undefined : Uint8Array.from(checkPoolKey(options.key));
    this.maxConnections = positiveInteger('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.maxPendingHandshakes = positiveInteger('maxPendingHandshakes', options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES);
    this.handshakeTimeoutMs = checkTimeoutMs('handshakeTimeoutMs', options.handshakeTimeoutMs ?? DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS);
    this.recordIdleTimeoutMs = checkTimeoutMs('recordIdleTimeoutMs', options.recordIdleTimeoutMs ?? DEFAULT_RECORD_IDLE_TIMEOUT_MS);
    this.maxHandshakeBytes = positiveInteger('maxHandshakeBytes', options.maxHandshakeBytes ?? 2 * this.limits.maxHeaderBytes);
    const smallestHandshake = this.limits.maxHeaderBytes + 1024;
    if (this.maxHandshakeBytes < smallestHandshake) {
      throw new InvalidArgumentError(
        `maxHandshakeBytes (${this.maxHandshakeBytes}) must be at least maxHeaderBytes plus 1 KiB (${smallestHandshake}), or a legal hello could not get through`,
      );
    }
    const host = options.host ?? '127.0.0.1';
    if (this.key === undefined && options.insecure !== true && !isLoopbackHost(host)) {
      throw new InvalidArgumentError(
        `refusing to listen on ${host} without a pool key: anyone who can reach it could send this host guests and inspect the guests running here. ` +
          'Give the pool key (the key option, or --key-file PATH; make one with "livemig keygen PATH"), listen on a loopback address, ' +
          'or, on a trusted and isolated network only, pass insecure (--insecure)',
      );
    }
  }

  /**
   * Starts listening; resolves once the port is open.
   *
   * @throws InvalidArgumentError for an option out of range, a key shorter than 32 bytes, a TLS
   *   certificate or key that cannot be read, or a non-loopback `host` without `key` or
   *   `insecure`.
   * @throws ConnectFailedError if the address cannot be bound.
   */
  static async start(options: TargetAgentOptions = {}): Promise<TargetAgent> {
    const agent = new TargetAgent(options);
    agent.listener = await listenWebSocket(
      {
        host: options.host ?? '127.0.0.1',
        port: options.port ?? 0,
        maxFrameBytes: agent.limits.maxFrameBytes,
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        maxConnections: agent.maxConnections,
        upgradeTimeoutMs: agent.handshakeTimeoutMs,
        tls: options.tls,
      },
      (transport, info) => {
        const served = agent.serve(transport, `${info.remoteAddress}:${info.remotePort}`);
        agent.serving.add(served);
        void served.finally(() => agent.serving.delete(served));
      },
    );
    return agent;
  }

  /** Whether peers must prove they hold the pool key. */
  get requiresKey(): boolean {
    return this.key !== undefined;
  }

  /** Counters of connections and refusals so far. */
  get stats(): AgentStats {
    return {
      connections: this.listener?.connections ?? 0,
      refusedAtConnectionLimit: this.listener?.refusedConnections ?? 0,
      pendingHandshakes: this.pending,
      peakPendingHandshakes: this.peakPending,
      refusedConnections: this.refused,
      authFailures: this.authFailures,
      activeMigrations: this.active,
    };
  }

  /** The port the agent listens on. */
  get port(): number {
    return this.listener!.port;
  }

  /** The URL sources connect to. */
  get url(): string {
    return this.listener!.url;
  }

  /**
   * Stops listening and destroys every guest running here (the host goes away with them),
   * including one that a migration resumes while the agent closes.
   */
  async close(): Promise<void> {
    this.closing = true;
    await this.listener?.close();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_SERVE_GRACE_MS)));
    await Promise.race([Promise.allSettled(this.serving), grace]);
    clearTimeout(timer);
    for (const m of this.migrations.values()) await this.destroyGuest(m);
  }

  /** Destroys `entry`'s guest, once: the reference goes first, so a second caller finds none. */
  private async destroyGuest(entry: AgentMigration): Promise<void> {
    const domain = entry.domain;
    entry.domain = undefined;
    await domain?.destroy().catch(() => undefined);
  }

  private async serve(transport: WebSocketTransport, from: string): Promise<void> {
    try {
      const record = await this.admit(transport);
      if (record.type === 'query') {
        await transport.send(encodeRecord(await this.answer(record)));
        await transport.close();
        return;
      }
      if (this.active >= this.maxConcurrent) {
        throw new LimitExceededError(`this agent already receives ${this.active} migrations (the most it accepts at once)`);
      }
      // Only a discarded copy may be tried again under its id: a second hello for a copy that is
      // being received, prepared or running would make queries about it describe the wrong one.
      const known = this.migrations.get(record.migrationId);
      if (known && known.state !== 'discarded') {
        throw new UnexpectedRecordError(`migration ${record.migrationId} is already known here (${known.state})`);
      }
      const entry: AgentMigration = {
        migrationId: record.migrationId,
        state: 'receiving',
        domainName: record.domain.name,
        memoryBytes: record.domain.memoryBytes,
        startedAt: new Date().toISOString(),
      };
      this.migrations.set(record.migrationId, entry);
      this.emitEvent({ type: 'migration-started', migrationId: entry.migrationId, domainName: entry.domainName, memoryBytes: entry.memoryBytes, from });
      this.active++;
      let result: IncomingResult;
      try {
        const paced = new DeadlineTransport(transport, this.recordIdleTimeoutMs, () => `the next record of migration ${entry.migrationId}`);
        result = await receiveMigration(paced, record, {
          backends: this.backends,
          limits: this.limits,
          goTimeoutMs: this.goTimeoutMs,
          onState: (state) => {
            if (state === 'prepared') entry.state = 'prepared';
          },
          // Running from the moment it runs: a source asking after a broken link must hear so
          // even while this connection is still winding down.
          onResumed: (domain) => {
            entry.state = 'running';
            entry.domain = domain;
          },
        });
      } finally {
        this.active--;
      }
      entry.endedAt = new Date().toISOString();
      if (result.outcome === 'resumed') {
        entry.state = 'running';
        // While closing, close() may have destroyed this guest already, or passed this entry
        // before the guest ran: either way it must not outlive the agent.
        if (this.closing) await this.destroyGuest(entry);
        else entry.domain = result.domain;
        this.emitEvent({ type: 'migration-resumed', migrationId: entry.migrationId, pages: result.pages, bytesWire: result.bytesWire, digest: result.digest });
      } else {
        entry.state = 'discarded';
        entry.error = result.error;
        this.emitEvent({ type: 'migration-discarded', migrationId: entry.migrationId, error: result.error });
        setTimeout(() => {
          if (this.migrations.get(entry.migrationId) === entry) this.migrations.delete(entry.migrationId);
        }, DEFAULT_OUTCOME_MEMORY_MS).unref();
      }
    } catch (err) {
      // Link and record failures arrive as coded errors already; anything else came from a
      // backend (an inspection's pause, say), which the protocol reports as ERR_DOMAIN_FAILED.
      const error = asMigrationError(err, 'ERR_DOMAIN_FAILED');
      this.refused++;
      if (error.code === 'ERR_AUTH_FAILED' || (error instanceof PeerAbortedError && error.peerCode === 'ERR_AUTH_FAILED')) this.authFailures++;
      this.emitEvent({ type: 'connection-refused', from, error: error.toJSON() });
      // Neither a peer's own abort nor a closed connection is news to send back (protocol.md §10).
      await abortPeer(transport, error, error.code !== 'ERR_PEER_ABORTED' && error.code !== 'ERR_CONNECTION_CLOSED');
    }
  }

  /**
   * Takes a new connection through authentication to its `hello` or `query`, within the
   * handshake deadline and byte cap, and returns that record. Nothing is allocated for the peer
   * before this returns.
   */
  private async admit(transport: WebSocketTransport): Promise<HelloRecord | QueryRecord> {
    if (this.pending >= this.maxPendingHandshakes) {
      throw new LimitExceededError(
        `this agent already has ${this.pending} connections that have not finished authenticating (maxPendingHandshakes); try again shortly`,
      );
    }
    this.pending++;
    this.peakPending = Math.max(this.peakPending, this.pending);
    try {
      transport.limitIncomingBytes(this.maxHandshakeBytes, 'before its hello or query');
      const record = await withDeadline(
        this.handshake(transport),
        this.handshakeTimeoutMs,
        () =>
          new TimeoutError(
            `the peer did not ${this.key ? 'authenticate and ' : ''}send its hello or query within ${this.handshakeTimeoutMs} ms of connecting`,
          ),
      );
      transport.limitIncomingBytes(undefined);
      return record;
    } finally {
      this.pending--;
    }
  }

  /** The records before `hello` or `query`, as the receiver state machine allows them. */
  private async handshake(transport: Transport): Promise<HelloRecord | QueryRecord> {
    const key = this.key;
    let state = initialReceiverState(key !== undefined);
    let clientNonce: Uint8Array | undefined;
    let agentNonce: Uint8Array | undefined;
    for (;;) {
      const frame = await transport.receive();
      if (frame === undefined) throw new ConnectionClosedError(`the peer closed the connection in state ${state}, before its hello or query`);
      const record = decodeFrame(frame, this.limits);
      if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
      // An unknown record its sender marked optional is skipped, as everywhere; the handshake's
      // deadline and byte cap still bound how many a stranger may send.
      if (record.type === 'ignored') continue;
      if (state === 'await-auth' && (record.type === 'hello' || record.type === 'query')) {
        throw new AuthFailedError(
          `this agent serves only members of its pool, and the connection began with "${record.type}" without proving the pool key; ` +
            'pass the pool key (the key option of connectToAgent, or --key-file PATH)',
        );
      }
      state = receiverTransition(state, record.type);
      switch (record.type) {
        case 'auth-hello':
          clientNonce = Uint8Array.from(record.nonce);
          if (key === undefined) {
            await transport.send(encodeRecord({ type: 'auth-ok' }));
          } else {
            agentNonce = newAuthNonce();
            await transport.send(encodeRecord({ type: 'auth-challenge', nonce: agentNonce }));
          }
          break;
        case 'auth-proof':
          // The state machine admits a proof only after this agent's challenge: the key and both nonces exist.
          if (!verifyAuthProof(key!, 'client', clientNonce!, agentNonce!, record.proof)) {
            throw new AuthFailedError(
              "the proof does not match this agent's pool key: the peer holds a different key, or replays an old exchange; " +
                'check that both sides use the same key file',
            );
          }
          await transport.send(encodeRecord({ type: 'auth-ok', proof: authProof(key!, 'agent', clientNonce!, agentNonce!) }));
          break;
        case 'hello':
        case 'query':
          return record;
        default:
          // The state machine admits nothing else here; this guards against the two disagreeing.
          throw new UnexpectedRecordError(`record "${record.type}" is not handled before a hello`);
      }
    }
  }

  /** Answers a query; with `inspect`, pauses the guest a moment to read its state and digest. */
  private async answer(query: QueryRecord): Promise<StatusRecord> {
    const entry = this.migrations.get(query.migrationId);
    if (!entry) return { type: 'status', migrationId: query.migrationId, state: 'unknown' };
    if (query.inspect && entry.domain && entry.state === 'running') {
      // One inspection of a guest at a time: the first to resume it would otherwise leave a second
      // reading it while it runs.
      const domain = entry.domain;
      const turn = (this.inspections.get(domain) ?? Promise.resolve()).then(() => this.inspect(entry, domain));
      this.inspections.set(domain, turn.catch(() => undefined));
      return await turn;
    }
    return { type: 'status', migrationId: entry.migrationId, state: entry.state };
  }

  /** Pauses `domain`, reads its state and digest, and resumes it, if it still runs as `entry`. */
  private async inspect(entry: AgentMigration, domain: TargetDomain): Promise<StatusRecord> {
    const status: StatusRecord = { type: 'status', migrationId: entry.migrationId, state: entry.state };
    if (entry.domain !== domain || entry.state !== 'running') return status;
    try {
      await domain.pause();
      status.domainState = domain.saveState();
      status.digest = digestMemory(domain.pageCount, domain.descriptor.pageSize, (pfn, dst, off) => domain.copyPage(pfn, dst, off));
    } finally {
      // Also after a failed pause, which may have stopped some vCPUs: an inspection must never
      // leave the guest paused.
      await domain.resume();
    }
    return status;
  }

  private emitEvent(event: AgentEvent): void {
    try {
      this.emit('event', event);
    } catch {
      // A listener that throws must not change what happens to a migration.
    }
  }
}

/** True for literal loopback addresses (127.0.0.0/8, ::1, IPv4-mapped 127/8) and `localhost`. */
function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const lower = bare.toLowerCase();
  if (lower === 'localhost') return true;
  const family = isIP(bare);
  if (family === 4) return bare.startsWith('127.');
  if (family === 6) return lower === '::1' || /^(0{1,4}:){7}0{0,3}1$/.test(lower) || /^::ffff:127\./.test(lower);
  return false;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  return value;
}
