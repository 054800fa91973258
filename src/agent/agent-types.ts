/** What a target agent reports: its counters, what it knows of each migration, its events. */

import type { TargetDomain } from '../domain/backend.js';
import type { StatusRecord } from '../protocol/records.js';

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
  | {
      type: 'migration-resumed';
      migrationId: string;
      pages: number;
      bytesWire: number;
      digest?: string;
      /** The guest's console log, a file on the agent's host, where its backend keeps one (QEMU's serial port). */
      console?: string;
    }
  | { type: 'migration-discarded'; migrationId: string; error?: { code: string; message: string } }
  | { type: 'connection-refused'; from: string; error: { code: string; message: string } };
