/**
 * The client side of a connection to a target agent: connecting (`ws://` or `wss://`),
 * authenticating with the pool key, and asking what became of a migration.
 *
 * Authentication is mutual (docs/protocol.md, "Authentication"): the client proves it holds the
 * pool key, and a client that holds one accepts only an agent that proves it too. A client
 * without a key still opens with `auth-hello`, so that an agent which demands the key says so
 * before anything else happens.
 */

import {
  asMigrationError,
  AuthFailedError,
  ConnectionClosedError,
  LimitExceededError,
  type MigrationError,
  PeerAbortedError,
  TimeoutError,
  UnexpectedRecordError,
} from '../errors.js';
import { authProof, checkPoolKey, newAuthNonce, verifyAuthProof } from '../protocol/auth.js';
import { abortPeer } from '../precopy/abort-peer.js';
import { decodeFrame, encodeRecord } from '../protocol/codec.js';
import { clientAuthTransition, type ClientAuthState } from '../protocol/receiver-state.js';
import type { AbortRecord, MigrationRecord, StatusRecord } from '../protocol/records.js';
import type { Transport } from '../transport/transport.js';
import { withDeadline } from '../util/deadline.js';
import { connectWebSocket, DEFAULT_CONNECT_TIMEOUT_MS, type ConnectWebSocketOptions } from '../transport/ws-connect.js';

/** How long {@link authenticateToAgent} may take, in milliseconds, when not told. */
export const DEFAULT_AUTH_TIMEOUT_MS = 10_000;

/** Options of {@link authenticateToAgent}. */
export interface AuthenticateOptions {
  /**
   * The pool key (see `readKeyFile`). With a key the client proves it and demands the agent's
   * proof in return; without one it can talk only to an agent that holds no key either.
   * @default no key
   */
  key?: Uint8Array;
  /** Names the agent in error messages, e.g. its URL. @default 'the agent' */
  peer?: string;
  /**
   * Longest the whole exchange may take, in milliseconds, counted from the call: records the
   * agent sends that change nothing do not extend it. Infinity, or anything beyond 2^31-1 ms
   * (about 24.8 days), is no deadline.
   * @default DEFAULT_AUTH_TIMEOUT_MS
   */
  timeoutMs?: number;
}

/** Options of {@link connectToAgent}: those of `connectWebSocket` (including `tls`), and the pool key. */
export interface ConnectToAgentOptions extends ConnectWebSocketOptions {
  /** The pool key; see {@link AuthenticateOptions.key}. @default no key */
  key?: Uint8Array;
}

/** How long {@link queryAgent} waits for the agent's answer once asked, in milliseconds, when not told. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

/** Options of {@link queryAgent}. */
export interface QueryOptions extends ConnectToAgentOptions {
  /** Also pause the guest a moment and return its state and memory digest. @default false */
  inspect?: boolean;
  /**
   * Longest wait for the answer once the question is sent, in milliseconds; records that are not
   * the answer do not extend it. @default DEFAULT_QUERY_TIMEOUT_MS
   */
  answerTimeoutMs?: number;
}

/**
 * Opens a connection to the agent at `url` (`ws://host:port` or `wss://host:port`) and
 * authenticates, returning a transport on which the next record to send is `hello` (hand it to
 * `migrate()`) or `query`. `connectTimeoutMs` bounds connecting and authenticating together.
 *
 * @throws ConnectFailedError if the connection cannot be opened (including a TLS certificate
 *   that does not verify).
 * @throws LimitExceededError if the agent is at its connection limit (HTTP 503): try again later.
 * @throws AuthFailedError if either side cannot prove the pool key: a wrong key, a key on one
 *   side only.
 * @throws TimeoutError if the agent does not answer in time.
 */
export async function connectToAgent(url: string, options: ConnectToAgentOptions = {}): Promise<Transport> {
  const { key, ...connectOptions } = options;
  if (key !== undefined) checkPoolKey(key);
  const budgetMs = options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const started = performance.now();
  const transport = await connectWebSocket(url, connectOptions);
  const leftMs = Math.max(1, Math.round(budgetMs - (performance.now() - started)));
  await authenticateToAgent(transport, { key, peer: url, timeoutMs: leftMs });
  // After a broken link past "go", the engine asks this agent afresh what it did.
  transport.resolveOutcome = async (migrationId) => (await queryAgent(url, migrationId, options)).state;
  return transport;
}

/**
 * Runs the client side of the authentication exchange on a fresh `transport` whose other end is
 * a target agent. Resolves once the agent has accepted (and, with a key, proved itself); the
 * next record to send is then `hello` or `query`. On any failure the agent is told why where
 * that helps, the transport is destroyed, and the error is thrown.
 *
 * @throws InvalidArgumentError for a key of the wrong size, before anything is sent.
 * @throws AuthFailedError, TimeoutError, PeerAbortedError, ConnectionClosedError, or a decoding
 *   error for a malformed answer.
 */
export async function authenticateToAgent(transport: Transport, options: AuthenticateOptions = {}): Promise<void> {
  const key = options.key === undefined ? undefined : checkPoolKey(options.key);
  const peer = options.peer ?? 'the agent';
  const timeoutMs = options.timeoutMs ?? DEFAULT_AUTH_TIMEOUT_MS;
  const until = performance.now() + timeoutMs;
  const clientNonce = newAuthNonce();
  let agentNonce: Uint8Array | undefined;
  let state: ClientAuthState = 'auth-hello-sent';
  let agentAborted = false;
  try {
    await transport.send(encodeRecord({ type: 'auth-hello', nonce: clientNonce }));
    for (;;) {
      const record = await receiveRecord(transport, until, peer, state, timeoutMs);
      if (record.type === 'abort') {
        agentAborted = true;
        throw refusal(peer, record.code, record.message);
      }
      state = clientAuthTransition(state, record.type);
      if (record.type === 'ignored') continue;
      if (record.type === 'auth-challenge') {
        if (key === undefined) {
          throw new AuthFailedError(
            `${peer} accepts only members of its pool; pass the pool key (the key option, or --key-file PATH on the command line)`,
          );
        }
        if (Buffer.compare(record.nonce, clientNonce) === 0) {
          throw new AuthFailedError(`${peer} sent back this client's own nonce as its challenge; it is not a livemig agent of this pool`);
        }
        agentNonce = Uint8Array.from(record.nonce);
        await transport.send(encodeRecord({ type: 'auth-proof', proof: authProof(key, 'client', clientNonce, agentNonce) }));
        continue;
      }
      if (record.type !== 'auth-ok') {
        // The table admits nothing else; this guards against the two disagreeing.
        throw new UnexpectedRecordError(`${peer} answered authentication with "${record.type}"`);
      }
      if (key === undefined) {
        if (record.proof !== undefined) throw new UnexpectedRecordError(`${peer} sent a proof nobody asked for`);
        return;
      }
      if (agentNonce === undefined || record.proof === undefined) {
        throw new AuthFailedError(
          `${peer} holds no pool key, so it cannot prove it belongs to the pool; start it with --key-file, or connect without a key (loopback only)`,
        );
      }
      if (!verifyAuthProof(key, 'agent', clientNonce, agentNonce, record.proof)) {
        throw new AuthFailedError(
          `${peer} answered with a proof that does not match this pool key: it holds a different key, or something between the two altered the exchange`,
        );
      }
      return;
    }
  } catch (err) {
    let error = asMigrationError(err, 'ERR_CONNECTION_CLOSED');
    if (error.code === 'ERR_CONNECTION_CLOSED' && !agentAborted) {
      // An agent that refuses at once (at its limit, say) may close before this side's first
      // record goes out; its reason is then already here, queued behind the failed send.
      const abort = await queuedAbort(transport);
      if (abort) {
        agentAborted = true;
        error = refusal(peer, abort.code, abort.message);
      }
    }
    await abortPeer(transport, error, !agentAborted && error.code !== 'ERR_CONNECTION_CLOSED');
    throw error;
  }
}

/** How long a failed exchange looks for the agent's reason among the records already received, in milliseconds. */
const QUEUED_ABORT_WAIT_MS = 200;

/** The agent's `abort`, if one arrived before the connection closed. */
async function queuedAbort(transport: Transport): Promise<AbortRecord | undefined> {
  const until = performance.now() + QUEUED_ABORT_WAIT_MS;
  try {
    for (;;) {
      const frame = await receiveBefore(transport, until, () => new TimeoutError('no queued record'));
      if (frame === undefined) return undefined;
      const record = decodeFrame(frame);
      if (record.type === 'abort') return record;
    }
  } catch {
    return undefined;
  }
}

/** The error for an agent's refusal: its own code where the client has a class for it. */
function refusal(peer: string, code: string, message: string): MigrationError {
  if (code === 'ERR_AUTH_FAILED') return new AuthFailedError(`${peer} refused this client: ${message}`);
  if (code === 'ERR_LIMIT_EXCEEDED') return new LimitExceededError(`${peer} is at its limit and refused this connection: ${message}; try again shortly`);
  return new PeerAbortedError(code, message);
}

/**
 * Asks the agent at `url` about `migrationId`. Connects and authenticates as
 * {@link connectToAgent} does, with the same options.
 */
export async function queryAgent(url: string, migrationId: string, options: QueryOptions = {}): Promise<StatusRecord> {
  const { inspect, answerTimeoutMs = DEFAULT_QUERY_TIMEOUT_MS, ...connectOptions } = options;
  const transport = await connectToAgent(url, connectOptions);
  try {
    await transport.send(encodeRecord({ type: 'query', migrationId, inspect: inspect ?? false }));
    const until = performance.now() + answerTimeoutMs;
    const timedOut = (): TimeoutError =>
      new TimeoutError(`the agent at ${url} did not answer the query about ${migrationId} within ${answerTimeoutMs} ms`);
    for (;;) {
      const frame = await receiveBefore(transport, until, timedOut);
      if (frame === undefined) throw new ConnectionClosedError(`the agent at ${url} closed the connection without answering`);
      const record = decodeFrame(frame);
      if (record.type === 'ignored') continue;
      if (record.type === 'abort') throw new PeerAbortedError(record.code, record.message);
      if (record.type !== 'status') throw new UnexpectedRecordError(`the agent answered a query with "${record.type}"`);
      return record;
    }
  } finally {
    transport.destroy();
  }
}

/** The next record from the agent, before `until` (on the `performance.now()` clock) of a `timeoutMs` exchange. */
async function receiveRecord(transport: Transport, until: number, peer: string, state: ClientAuthState, timeoutMs: number): Promise<MigrationRecord> {
  const frame = await receiveBefore(
    transport,
    until,
    () => new TimeoutError(`${peer} did not complete authentication within ${timeoutMs} ms (state ${state})`),
  );
  if (frame === undefined) {
    throw new ConnectionClosedError(`${peer} closed the connection during authentication (state ${state})`);
  }
  return decodeFrame(frame);
}

/** The next frame, if it comes before `until` (on the `performance.now()` clock). */
function receiveBefore(transport: Transport, until: number, timedOut: () => Error): Promise<Uint8Array | undefined> {
  const leftMs = until - performance.now();
  // Checked before reading: an agent that keeps frames queued would otherwise win every race
  // against an expired timer.
  if (leftMs <= 0) return Promise.reject(timedOut());
  return withDeadline(transport.receive(), leftMs, timedOut);
}
