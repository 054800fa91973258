/**
 * Asking a target agent what became of a migration, over a fresh connection.
 */

import { UnexpectedRecordError, ConnectionClosedError, PeerAbortedError } from '../errors.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import type { StatusRecord } from '../protocol/records.js';
import { connectWebSocket } from '../transport/ws-transport.js';

/** Options of {@link queryAgent}. */
export interface QueryOptions {
  /** Also pause the guest a moment and return its state and memory digest. @default false */
  inspect?: boolean;
  /** @default 10000 */
  connectTimeoutMs?: number;
}

/** Asks the agent at `url` about `migrationId`. */
export async function queryAgent(url: string, migrationId: string, options: QueryOptions = {}): Promise<StatusRecord> {
  const transport = await connectWebSocket(url, { connectTimeoutMs: options.connectTimeoutMs ?? 10_000 });
  try {
    await transport.send(encodeRecord({ type: 'query', migrationId, inspect: options.inspect ?? false }));
    const frame = await transport.receive();
    if (frame === undefined) throw new ConnectionClosedError(`the agent at ${url} closed the connection without answering`);
    const record = decodeFrame(frame);
    if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
    if (record.type !== 'status') throw new UnexpectedRecordError(`the agent answered a query with "${record.type}"`);
    return record;
  } finally {
    transport.destroy();
  }
}
