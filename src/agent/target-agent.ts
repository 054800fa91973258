/**
 * A target agent: the process on a host that accepts incoming migrations, runs the guests it
 * received, and answers questions about them. One WebSocket listener; the first record of each
 * connection says what the peer wants (`hello` to migrate in, `query` to ask).
 */

import { EventEmitter } from 'node:events';
import type { TargetBackend, TargetDomain } from '../domain/backend.js';
import { SimTargetBackend } from '../domain/sim/target-backend.js';
import { asMigrationError, LimitExceededError, UnexpectedRecordError } from '../errors.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import { resolveLimits, type ProtocolLimits } from '../protocol/limits.js';
import { digestMemory } from '../protocol/page-digest.js';
import type { QueryRecord, StatusRecord } from '../protocol/records.js';
import { receiveMigration, type IncomingResult } from '../precopy/incoming.js';
import { listenWebSocket, type WebSocketListener } from '../transport/ws-transport.js';
import type { Transport } from '../transport/transport.js';

/** Incoming migrations one agent receives at once, at most. */
export const DEFAULT_MAX_CONCURRENT_MIGRATIONS = 4;

/** How long an agent remembers what became of a discarded migration, in milliseconds. */
export const DEFAULT_OUTCOME_MEMORY_MS = 10 * 60 * 1000;

/** Options of {@link TargetAgent.start}. */
export interface TargetAgentOptions {
  /** Address to listen on. @default '127.0.0.1' */
  host?: string;
  /** Port to listen on; 0 picks a free one. @default 0 */
  port?: number;
  /** Domain backends. @default [new SimTargetBackend()] */
  backends?: TargetBackend[];
  /** Limits on what sources may send and allocate. */
  limits?: Partial<ProtocolLimits>;
  /** @default DEFAULT_MAX_CONCURRENT_MIGRATIONS */
  maxConcurrentMigrations?: number;
  /** A connection silent this long is dropped, in milliseconds. @default 30000 */
  idleTimeoutMs?: number;
  /** How long a prepared migration waits for "go" before discarding, in ms. @default DEFAULT_GO_TIMEOUT_MS */
  goTimeoutMs?: number;
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
  private readonly limits: ProtocolLimits;
  private readonly maxConcurrent: number;
  private readonly goTimeoutMs: number | undefined;
  private listener: WebSocketListener | undefined;
  private active = 0;

  private constructor(options: TargetAgentOptions) {
    super();
    this.backends = new Map((options.backends ?? [new SimTargetBackend({ maxMemoryBytes: options.limits?.maxGuestMemoryBytes })]).map((b) => [b.kind, b]));
    this.limits = resolveLimits(options.limits);
    this.maxConcurrent = options.maxConcurrentMigrations ?? DEFAULT_MAX_CONCURRENT_MIGRATIONS;
    this.goTimeoutMs = options.goTimeoutMs;
  }

  /** Starts listening; resolves once the port is open. */
  static async start(options: TargetAgentOptions = {}): Promise<TargetAgent> {
    const agent = new TargetAgent(options);
    agent.listener = await listenWebSocket(
      {
        host: options.host ?? '127.0.0.1',
        port: options.port ?? 0,
        maxFrameBytes: agent.limits.maxFrameBytes,
        idleTimeoutMs: options.idleTimeoutMs,
      },
      (transport, info) => {
        void agent.serve(transport, `${info.remoteAddress}:${info.remotePort}`);
      },
    );
    return agent;
  }

  /** The port the agent listens on. */
  get port(): number {
    return this.listener!.port;
  }

  /** The URL sources connect to. */
  get url(): string {
    return this.listener!.url;
  }

  /** Stops listening and destroys every guest running here (the host goes away with them). */
  async close(): Promise<void> {
    await this.listener?.close();
    for (const m of this.migrations.values()) {
      await m.domain?.destroy().catch(() => undefined);
      m.domain = undefined;
    }
  }

  private async serve(transport: Transport, from: string): Promise<void> {
    try {
      const frame = await transport.receive();
      if (frame === undefined) return;
      const record = decodeFrame(frame, this.limits);
      if (record.type === 'query') {
        await transport.send(encodeRecord(await this.answer(record)));
        await transport.close();
        return;
      }
      if (record.type !== 'hello') {
        throw new UnexpectedRecordError(`a connection must start with "hello" or "query", not "${record.type}"`);
      }
      if (this.active >= this.maxConcurrent) {
        throw new LimitExceededError(`this agent already receives ${this.active} migrations (the most it accepts at once)`);
      }
      if (this.migrations.get(record.migrationId)?.state === 'running' || this.migrations.get(record.migrationId)?.state === 'receiving') {
        throw new UnexpectedRecordError(`migration ${record.migrationId} is already known here`);
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
        result = await receiveMigration(transport, record, {
          backends: this.backends,
          limits: this.limits,
          goTimeoutMs: this.goTimeoutMs,
          onState: (state) => {
            if (state === 'prepared') entry.state = 'prepared';
          },
        });
      } finally {
        this.active--;
      }
      entry.endedAt = new Date().toISOString();
      if (result.outcome === 'resumed') {
        entry.state = 'running';
        entry.domain = result.domain;
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
      const error = asMigrationError(err, 'ERR_CONNECTION_CLOSED');
      this.emitEvent({ type: 'connection-refused', from, error: error.toJSON() });
      if (!transport.closed) {
        await transport.send(encodeRecord({ type: 'abort', code: error.code, message: error.message })).catch(() => undefined);
        await transport.close().catch(() => undefined);
      }
      transport.destroy();
    }
  }

  /** Answers a query; with `inspect`, pauses the guest a moment to read its state and digest. */
  private async answer(query: QueryRecord): Promise<StatusRecord> {
    const entry = this.migrations.get(query.migrationId);
    if (!entry) return { type: 'status', migrationId: query.migrationId, state: 'unknown' };
    const status: StatusRecord = { type: 'status', migrationId: entry.migrationId, state: entry.state };
    const domain = entry.domain;
    if (query.inspect && domain && entry.state === 'running') {
      await domain.pause();
      try {
        status.domainState = domain.saveState();
        status.digest = digestMemory(domain.pageCount, domain.descriptor.pageSize, (pfn, dst, off) => domain.copyPage(pfn, dst, off));
      } finally {
        await domain.resume();
      }
    }
    return status;
  }

  private emitEvent(event: AgentEvent): void {
    this.emit('event', event);
  }
}
