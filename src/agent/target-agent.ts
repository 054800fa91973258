/**
 * A target agent: the process on a host that accepts incoming migrations, runs the guests it
 * received, and answers questions about them. It listens on one WebSocket port (`ws://`, or
 * `wss://` with a certificate), and serves connections handed to it over any other `Transport`
 * the same way (`serve`). An agent that holds the pool key first makes every connection prove it
 * holds the key too, and proves itself in return (docs/protocol.md, "Authentication"); only then
 * does it read the record that says what the peer wants (`hello` to migrate in, `query` to ask),
 * and only after that does it allocate anything.
 *
 * Every connection is held to limits: how many are open, how many are still authenticating, how
 * long and how many bytes it may take to say what it wants, how long a migration may go without
 * a record. A peer that breaks one gets an abort with a code (or, past a byte limit, a WebSocket
 * close with code 1009) and is disconnected; the others are not affected.
 */

import { EventEmitter } from 'node:events';
import type { TargetBackend, TargetDomain } from '../domain/backend.js';
import { SimTargetBackend } from '../domain/sim/target-backend.js';
import {
  asMigrationError,
  ConnectionClosedError,
  InvalidArgumentError,
  LimitExceededError,
  PeerAbortedError,
  TimeoutError,
  UnexpectedRecordError,
} from '../errors.js';
import { checkPoolKey } from '../protocol/auth.js';
import { encodeRecord } from '../protocol/codec.js';
import { resolveLimits, type ProtocolLimits } from '../protocol/limits.js';
import { digestMemory } from '../protocol/page-digest.js';
import type { ChannelHelloRecord, HelloRecord, QueryRecord, StatusRecord } from '../protocol/records.js';
import { abortPeer } from '../precopy/abort-peer.js';
import { receiveMigration, type IncomingResult } from '../precopy/incoming.js';
import { ChannelHub } from '../precopy/incoming-channels.js';
import { DeadlineTransport } from '../transport/deadline-transport.js';
import type { Transport } from '../transport/transport.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../transport/ws-options.js';
import { DEFAULT_MAX_CONNECTIONS, listenWebSocket, type WebSocketListener } from '../transport/ws-listener.js';
import { checkTimeoutMs, isDeadline, withDeadline } from '../util/deadline.js';
import { settleOnce } from './admission.js';
import { readHelloOrQuery } from './agent-handshake.js';
import {
  type Admission,
  DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENT_MIGRATIONS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_OUTCOME_MEMORY_MS,
  DEFAULT_RECORD_IDLE_TIMEOUT_MS,
  type TargetAgentOptions,
  isLoopbackHost,
  positiveInteger,
} from './agent-options.js';
import type { AgentEvent, AgentMigration, AgentStats } from './agent-types.js';

export type { AgentEvent, AgentMigration, AgentStats } from './agent-types.js';

export {
  type Admission,
  DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_MAX_CONCURRENT_MIGRATIONS,
  DEFAULT_MAX_PENDING_HANDSHAKES,
  DEFAULT_OUTCOME_MEMORY_MS,
  DEFAULT_RECORD_IDLE_TIMEOUT_MS,
  type TargetAgentOptions,
};


/**
 * How long `close()` waits for connections still being served to settle, in milliseconds. Closing
 * the listener ends their links, but a backend call under way (a guest resuming after "go") runs
 * to its end; a guest it starts later is destroyed as soon as it runs.
 */
const CLOSE_SERVE_GRACE_MS = 5_000;

/** Longest time between two sweeps of the migrations to forget, in milliseconds. */
const FORGET_SWEEP_MAX_MS = 10_000;

/** The agent's events, typed: `agent.on('event', (e) => ...)` gets an {@link AgentEvent}. */
export interface TargetAgent {
  on(event: 'event', listener: (event: AgentEvent) => void): this;
  once(event: 'event', listener: (event: AgentEvent) => void): this;
  off(event: 'event', listener: (event: AgentEvent) => void): this;
}

/** A listening target agent. */
export class TargetAgent extends EventEmitter {
  /** Migrations by id: running ones, and discarded ones for a while. */
  private readonly table = new Map<string, AgentMigration>();
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
  private readonly outcomeMemoryMs: number;
  private readonly admitHook: TargetAgentOptions['admit'];
  /** Entries to forget, each at its time (on the `performance.now()` clock); one timer sweeps them. */
  private readonly forgetAt = new Map<AgentMigration, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private listener: WebSocketListener | undefined;
  private active = 0;
  private pending = 0;
  private peakPending = 0;
  private refused = 0;
  private authFailures = 0;
  /** Connections being served now; `close()` waits for them. */
  private readonly serving = new Set<Promise<void>>();
  /** Their transports; `close()` destroys those still open. */
  private readonly connections = new Set<Transport>();
  /** Set by `close()`: a guest that starts running from then on is destroyed at once. */
  private closing = false;
  /** Where page channels find the migration they belong to. */
  private readonly channelHub = new ChannelHub();

  /**
   * Migrations received, by id: those running here, and discarded ones for a while (see
   * `outcomeMemoryMs`). A view: the agent alone changes it.
   */
  get migrations(): ReadonlyMap<string, Readonly<AgentMigration>> {
    return this.table;
  }

  private constructor(options: TargetAgentOptions) {
    super();
    this.limits = resolveLimits(options.limits);
    // The documented default: the simulated guest, held to the agent's guest-size limit.
    const backends = options.backends ?? [new SimTargetBackend({ maxMemoryBytes: this.limits.maxGuestMemoryBytes })];
    this.backends = new Map(backends.map((b) => [b.kind, b]));
    this.maxConcurrent = positiveInteger('maxConcurrentMigrations', options.maxConcurrentMigrations ?? DEFAULT_MAX_CONCURRENT_MIGRATIONS);
    this.goTimeoutMs = options.goTimeoutMs === undefined ? undefined : checkTimeoutMs('goTimeoutMs', options.goTimeoutMs);
    this.key = options.key === undefined ? undefined : Uint8Array.from(checkPoolKey(options.key));
    this.maxConnections = positiveInteger('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
    this.maxPendingHandshakes = positiveInteger('maxPendingHandshakes', options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES);
    this.handshakeTimeoutMs = checkTimeoutMs('handshakeTimeoutMs', options.handshakeTimeoutMs ?? DEFAULT_AGENT_HANDSHAKE_TIMEOUT_MS);
    this.recordIdleTimeoutMs = checkTimeoutMs('recordIdleTimeoutMs', options.recordIdleTimeoutMs ?? DEFAULT_RECORD_IDLE_TIMEOUT_MS);
    this.outcomeMemoryMs = checkTimeoutMs('outcomeMemoryMs', options.outcomeMemoryMs ?? DEFAULT_OUTCOME_MEMORY_MS);
    this.admitHook = options.admit;
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
        onHttpRequest: options.onHttpRequest,
      },
      (transport, info) => void agent.serve(transport, `${info.remoteAddress}:${info.remotePort}`),
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
    this.stopSweeper();
    await this.listener?.close();
    for (const transport of this.connections) {
      transport.destroy(new ConnectionClosedError('the agent was closed while this connection was open'));
    }
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_SERVE_GRACE_MS)));
    await Promise.race([Promise.allSettled(this.serving), grace]);
    clearTimeout(timer);
    for (const m of this.table.values()) await this.destroyGuest(m);
  }

  /**
   * Hands the guest that migration `migrationId` brought here over to the caller (a host that
   * migrates it onward or stops it): from now on the agent neither inspects nor destroys it, and
   * a query about the migration still answers `running` until `outcomeMemoryMs` has passed.
   * Waits for an inspection of the guest under way. Resolves with the guest, or `undefined` if
   * the agent holds none under that id.
   */
  async release(migrationId: string): Promise<TargetDomain | undefined> {
    const entry = this.table.get(migrationId);
    const domain = entry?.domain;
    if (entry === undefined || domain === undefined) return undefined;
    entry.domain = undefined;
    await this.inspections.get(domain);
    this.forgetLater(entry);
    return domain;
  }

  /**
   * Forgets `entry` after `outcomeMemoryMs`, unless a later try under its id replaced it. One
   * timer sweeps every entry due, so that a busy agent holds one timer, not one per migration.
   */
  private forgetLater(entry: AgentMigration): void {
    if (!isDeadline(this.outcomeMemoryMs) || this.closing) return;
    this.forgetAt.set(entry, performance.now() + this.outcomeMemoryMs);
    if (this.sweeper !== undefined) return;
    const period = Math.min(this.outcomeMemoryMs, FORGET_SWEEP_MAX_MS);
    this.sweeper = setInterval(() => {
      const now = performance.now();
      for (const [due, at] of this.forgetAt) {
        if (at > now) continue;
        this.forgetAt.delete(due);
        if (this.table.get(due.migrationId) === due) this.table.delete(due.migrationId);
      }
      if (this.forgetAt.size === 0) this.stopSweeper();
    }, period);
    this.sweeper.unref();
  }

  private stopSweeper(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Destroys `entry`'s guest, once: the reference goes first, so a second caller finds none. */
  private async destroyGuest(entry: AgentMigration): Promise<void> {
    const domain = entry.domain;
    entry.domain = undefined;
    await domain?.destroy().catch(() => undefined);
  }

  /**
   * Serves one connection, from its first record to its end, exactly as a connection accepted by
   * the agent's own listener: authentication when the agent holds a key, then a migration in or
   * a query. This is how a program that accepts connections its own way (another transport, a
   * multiplexed link, the in-memory pair in tests) hands them to the agent. The agent owns
   * `transport` from now on and closes or destroys it when done; `close()` waits for it and
   * destroys it if it is still open.
   *
   * The byte cap before `hello` (`maxHandshakeBytes`) applies only when `transport` offers
   * `limitIncomingBytes`; the handshake deadline, the pending-handshake bound and every protocol
   * limit apply to any transport.
   *
   * @param transport A connection whose peer is about to authenticate, or to send `hello` or `query`.
   * @param from Who the peer is, for the agent's events, e.g. `address:port`.
   * @returns Settles once the connection is done; never rejects (a refusal is a
   *   `connection-refused` event, a migration's end a `migration-resumed` or
   *   `migration-discarded` one).
   */
  serve(transport: Transport, from: string): Promise<void> {
    if (this.closing) {
      transport.destroy(new ConnectionClosedError('the agent is closing and serves no new connection'));
      return Promise.resolve();
    }
    this.connections.add(transport);
    const served = this.serveConnection(transport, from).finally(() => {
      this.connections.delete(transport);
      this.serving.delete(served);
    });
    this.serving.add(served);
    return served;
  }

  private async serveConnection(transport: Transport, from: string): Promise<void> {
    try {
      const record = await this.handshake(transport);
      if (record.type === 'query') {
        await transport.send(encodeRecord(await this.answer(record)));
        await transport.close();
        return;
      }
      if (record.type === 'channel-hello') {
        await this.channelHub.join(transport, record);
        return;
      }
      if (this.active >= this.maxConcurrent) {
        throw new LimitExceededError(`this agent already receives ${this.active} migrations (the most it accepts at once)`);
      }
      // Only a discarded copy may be tried again under its id: a second hello for a copy that is
      // being received, prepared or running would make queries about it describe the wrong one.
      const known = this.table.get(record.migrationId);
      if (known && known.state !== 'discarded') {
        throw new UnexpectedRecordError(`migration ${record.migrationId} is already known here (${known.state})`);
      }
      // Before anything is allocated for it: the host may refuse the guest, or reserve room for it.
      const admission = this.admitHook?.(record, from);
      await this.receive(transport, record, from, settleOnce(admission));
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

  /** Receives the migration `record` opens, and settles its admission on every path. */
  private async receive(transport: Transport, record: HelloRecord, from: string, admission: Admission): Promise<void> {
    const entry: AgentMigration = {
      migrationId: record.migrationId,
      state: 'receiving',
      domainName: record.domain.name,
      memoryBytes: record.domain.memoryBytes,
      startedAt: new Date().toISOString(),
    };
    this.table.set(record.migrationId, entry);
    this.emitEvent({ type: 'migration-started', migrationId: entry.migrationId, domainName: entry.domainName, memoryBytes: entry.memoryBytes, from });
    this.active++;
    let result: IncomingResult | undefined;
    try {
      const paced = new DeadlineTransport(transport, this.recordIdleTimeoutMs, () => `the next record of migration ${entry.migrationId}`);
      result = await receiveMigration(paced, record, {
        backends: this.backends,
        limits: this.limits,
        goTimeoutMs: this.goTimeoutMs,
        channelHub: this.channelHub,
        onState: (state) => {
          if (state === 'prepared') entry.state = 'prepared';
        },
        // Running from the moment it runs: a source asking after a broken link must hear so
        // even while this connection is still winding down, and the event says when it ran.
        onResumed: (domain, _id, resumed) => {
          entry.state = 'running';
          entry.domain = domain;
          admission.resumed(domain, resumed);
          const log = consoleOf(domain);
          this.emitEvent({
            type: 'migration-resumed',
            migrationId: entry.migrationId,
            pages: resumed.pages,
            bytesWire: resumed.bytesWire,
            digest: resumed.digest,
            ...(log !== undefined ? { console: log } : {}),
          });
        },
      });
    } finally {
      this.active--;
      // Releases the reservation of a copy that never ran; a no-op once it resumed.
      admission.discarded(result?.error);
    }
    entry.endedAt = new Date().toISOString();
    if (result.outcome === 'resumed') {
      entry.state = 'running';
      // While closing, close() may have destroyed this guest already, or passed this entry
      // before the guest ran: either way it must not outlive the agent.
      if (this.closing) await this.destroyGuest(entry);
    } else {
      entry.state = 'discarded';
      entry.error = result.error;
      this.emitEvent({ type: 'migration-discarded', migrationId: entry.migrationId, error: result.error });
      this.forgetLater(entry);
    }
  }

  /**
   * Takes a new connection through authentication to its `hello` or `query`, within the
   * handshake deadline and byte cap, and returns that record. Nothing is allocated for the peer
   * before this returns.
   */
  private async handshake(transport: Transport): Promise<HelloRecord | QueryRecord | ChannelHelloRecord> {
    if (this.pending >= this.maxPendingHandshakes) {
      throw new LimitExceededError(
        `this agent already has ${this.pending} connections that have not finished authenticating (maxPendingHandshakes); try again shortly`,
      );
    }
    this.pending++;
    this.peakPending = Math.max(this.peakPending, this.pending);
    try {
      transport.limitIncomingBytes?.(this.maxHandshakeBytes, 'before its hello or query');
      const record = await withDeadline(
        readHelloOrQuery(transport, this.key, this.limits),
        this.handshakeTimeoutMs,
        () =>
          new TimeoutError(
            `the peer did not ${this.key ? 'authenticate and ' : ''}send its hello or query within ${this.handshakeTimeoutMs} ms of connecting`,
          ),
      );
      transport.limitIncomingBytes?.(undefined);
      return record;
    } finally {
      this.pending--;
    }
  }

  /** Answers a query; with `inspect`, pauses the guest a moment to read its state and digest. */
  private async answer(query: QueryRecord): Promise<StatusRecord> {
    const entry = this.table.get(query.migrationId);
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
      status.domainState = await domain.saveState();
      status.digest = await digestMemory(domain.pageCount, domain.descriptor.pageSize, (pfns, dst) => domain.readPages(pfns, dst));
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

/** The console log path a domain offers (`consolePath`, as a QEMU guest has), if any. */
export function consoleOf(domain: TargetDomain): string | undefined {
  const path: unknown = (domain as { consolePath?: unknown }).consolePath;
  return typeof path === 'string' ? path : undefined;
}
